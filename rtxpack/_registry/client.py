"""A small OCI distribution client on urllib3: manifests, blobs, auth, retries, resume.

Blobs stream in both directions: uploads read the file in ``CHUNK_BYTES`` blocks (one
monolithic ``PUT`` after ``POST /blobs/uploads/``), downloads are written to the caller's file
while their sha256 is computed, and resume with a ``Range`` request when the connection drops.
Everything the registry sends is bounded: manifests by ``MAX_MANIFEST_BYTES``, blobs by the size
their descriptor names, token answers and error bodies by ``MAX_SMALL_BODY_BYTES``, retries by
``MAX_ATTEMPTS``, redirects by ``MAX_REDIRECTS``, and a 401 challenge is answered once per request.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import re
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import IO, Any, BinaryIO

import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import SSLError as _Urllib3SSLError

from .. import _constants, _version
from .._exceptions import (
    BlobIntegrityError,
    RegistryAuthError,
    RegistryConnectionError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
)
from .auth import Challenge, Credentials, find_credentials, parse_challenge
from .reference import Reference, is_loopback

__all__ = ["Body", "RegistryClient", "sha256_digest"]

#: A request body: bytes, or a function that opens a fresh stream (called again on a retry).
Body = bytes | Callable[[], IO[bytes]] | None

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_AUTO: Any = object()
#: Downloaded chunks waiting to be hashed and written (bounded memory: this many chunks).
_SINK_DEPTH = 8


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _printable(text: str, limit: int = 200) -> str:
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean if len(clean) <= limit else clean[:limit] + "..."


class RegistryClient:
    """One registry (``host[:port]``), with its connection pool, scheme and auth state.

    ``insecure`` allows plain HTTP to a host that is not loopback (loopback hosts fall back to
    plain HTTP when they do not speak TLS); ``ca_file`` adds a PEM bundle of trusted CAs;
    ``credentials`` (default: looked up when a registry first asks) answer Basic and Bearer
    challenges. ``sleep`` is what waits between retries.
    """

    def __init__(
        self,
        registry: str,
        *,
        insecure: bool = False,
        ca_file: str | None = None,
        credentials: Credentials | None = _AUTO,
        attempts: int = _constants.REGISTRY_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.registry = registry
        host = urllib.parse.urlsplit(f"//{registry}").hostname or registry
        self._plain_allowed = insecure or is_loopback(host)
        self._credentials = credentials
        self._attempts = max(1, attempts)
        self._sleep = sleep
        self._scheme: str | None = None
        self._basic: str | None = None
        self._tokens: dict[str, str] = {}
        if ca_file is None:
            ca_file = os.environ.get(_constants.REGISTRY_CA_FILE_ENV) or None
        self._pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=4,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_file,
            timeout=urllib3.Timeout(
                connect=_constants.REGISTRY_CONNECT_TIMEOUT_S,
                read=_constants.REGISTRY_READ_TIMEOUT_S,
            ),
            retries=False,
            blocksize=_constants.REGISTRY_CHUNK_BYTES,
            headers={"User-Agent": f"rtxpack/{_version.__version__}"},
        )

    @classmethod
    def for_reference(
        cls, ref: Reference, *, insecure: bool = False, ca_file: str | None = None
    ) -> RegistryClient:
        return cls(ref.registry, insecure=insecure, ca_file=ca_file)

    def close(self) -> None:
        self._pool.clear()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------------

    def _base(self) -> str:
        if self._scheme is None:
            self._scheme = "https"
            if self._plain_allowed:
                try:
                    resp = self._pool.request(
                        "GET", f"https://{self.registry}/v2/", preload_content=False
                    )
                    self._discard(resp)
                except _Urllib3SSLError as exc:
                    # a TLS server whose certificate fails stays HTTPS (the real request says
                    # why); a server that answers the handshake in plain text is HTTP
                    if "CERTIFICATE_VERIFY_FAILED" not in str(exc):
                        self._scheme = "http"
                except _Urllib3Error:
                    pass  # the first real request reports what is wrong
        return f"{self._scheme}://{self.registry}"

    def _where(self) -> str:
        return f"the registry {self.registry}"

    @staticmethod
    def _discard(resp: urllib3.BaseHTTPResponse) -> None:
        """Read a little of an unwanted body so the connection can be reused, else drop it."""
        try:
            data = resp.read(_constants.REGISTRY_MAX_SMALL_BYTES // 16, decode_content=False)
            if data and resp.read(1, decode_content=False):
                resp.close()
                return
            resp.release_conn()
        except _Urllib3Error:
            resp.close()

    def _error_detail(self, resp: urllib3.BaseHTTPResponse) -> str:
        """The registry's own error codes and messages, shortened and made printable."""
        try:
            raw = resp.read(_constants.REGISTRY_MAX_SMALL_BYTES // 16, decode_content=False)
            resp.close()
            errors = json.loads(raw).get("errors")
            parts = [
                f"{e.get('code', '?')}: {e.get('message', '')}"
                for e in errors[:3]
                if isinstance(e, dict)
            ]
            return _printable("; ".join(parts)) if parts else ""
        except (ValueError, AttributeError, TypeError, _Urllib3Error):
            return ""

    def status_error(self, resp: urllib3.BaseHTTPResponse, what: str) -> RegistryError:
        """The error for an unexpected status while doing ``what``."""
        status = resp.status
        detail = self._error_detail(resp)
        said = f" ({detail})" if detail else ""
        if status == 404:
            return RegistryNotFoundError(f"{self._where()} has no {what}{said}")
        if status in (401, 403):
            return RegistryAuthError(
                f"{self._where()} refused access to {what} (HTTP {status}){said}; check the "
                f"credentials (docker/podman login, or {_constants.REGISTRY_USERNAME_ENV} and "
                f"{_constants.REGISTRY_PASSWORD_ENV}) and their permissions"
            )
        return RegistryProtocolError(
            f"{self._where()} answered HTTP {status} to a request for {what}{said}"
        )

    def _backoff(self, attempt: int, resp: urllib3.BaseHTTPResponse | None = None) -> None:
        delay = min(
            _constants.REGISTRY_BACKOFF_FIRST_S * 2 ** (attempt - 1),
            _constants.REGISTRY_BACKOFF_MAX_S,
        )
        if resp is not None:
            after = resp.headers.get("Retry-After", "")
            if after.isdigit():
                delay = min(float(after), _constants.REGISTRY_RETRY_AFTER_MAX_S)
        self._sleep(delay)

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        scope: str,
        headers: dict[str, str] | None = None,
        body: Body = None,
        follow_redirects: bool = False,
    ) -> urllib3.BaseHTTPResponse:
        """Send one request with auth, bounded retries (5xx, 429, dropped connections) and
        bounded redirects; return the response, body unread, whatever its status."""
        url = path_or_url if "://" in path_or_url else self._base() + path_or_url
        origin = urllib.parse.urlsplit(self._base()).netloc
        attempt = auth_rounds = redirects = 0
        while True:
            same_host = urllib.parse.urlsplit(url).netloc == origin
            sent = dict(headers or {})
            authorization = self._authorization(scope) if same_host else None
            if authorization:
                sent["Authorization"] = authorization
            try:
                resp = self._pool.request(
                    method,
                    url,
                    headers=sent,
                    body=body() if callable(body) else body,
                    preload_content=False,
                    redirect=False,
                    retries=False,
                    decode_content=False,
                )
            except _Urllib3Error as exc:
                attempt += 1
                if attempt >= self._attempts:
                    raise RegistryConnectionError(
                        f"could not reach {self._where()} after {attempt} attempts "
                        f"({type(exc).__name__}: {_printable(str(exc))}); check that it runs "
                        "and that the address, port, CA file and network are right"
                    ) from None
                self._backoff(attempt)
                continue
            if resp.status == 401 and same_host:
                challenge = parse_challenge(resp.headers.get("WWW-Authenticate"))
                self._discard(resp)
                auth_rounds += 1
                if challenge is None or auth_rounds > 1:
                    raise RegistryAuthError(
                        f"{self._where()} refused the credentials it asked for "
                        f"({method} {urllib.parse.urlsplit(url).path}); check the username and "
                        "password or token, and that they may access this repository"
                    )
                self._answer(challenge, scope)
                continue
            if resp.status in _RETRY_STATUSES:
                attempt += 1
                if attempt >= self._attempts:
                    raise RegistryConnectionError(
                        f"{self._where()} answered HTTP {resp.status} {attempt} times in a row "
                        f"to {method} {urllib.parse.urlsplit(url).path}; try again later"
                    )
                self._discard(resp)
                self._backoff(attempt, resp)
                continue
            if follow_redirects and resp.status in _REDIRECTS:
                location = resp.headers.get("Location")
                self._discard(resp)
                redirects += 1
                if not location or redirects > _constants.REGISTRY_MAX_REDIRECTS:
                    raise RegistryProtocolError(
                        f"{self._where()} redirected {method} "
                        f"{urllib.parse.urlsplit(url).path} more than "
                        f"{_constants.REGISTRY_MAX_REDIRECTS} times, or without a Location"
                    )
                url = self._checked_url(urllib.parse.urljoin(url, location))
                continue
            return resp

    def _checked_url(self, url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme == "https" or (
            parts.scheme == "http" and (self._plain_allowed and host == self._host_of_base())
        ):
            return url
        if parts.scheme == "http" and is_loopback(host):
            return url
        raise RegistryProtocolError(
            f"{self._where()} pointed at {_printable(parts.scheme)}://{_printable(host)}, "
            "which is not HTTPS; rtxpack follows plain HTTP only to loopback hosts or to the "
            "registry itself when --insecure is given"
        )

    def _host_of_base(self) -> str:
        return urllib.parse.urlsplit(self._base()).hostname or ""

    # -- auth ------------------------------------------------------------------------------

    def _authorization(self, scope: str) -> str | None:
        found = self._tokens.get(scope)
        if found is None and scope.endswith(":pull"):  # a push token also grants pull
            found = self._tokens.get(scope + ",push")
        return found or self._basic

    def _creds(self) -> Credentials | None:
        if self._credentials is _AUTO:
            self._credentials = find_credentials(self.registry)
        return self._credentials

    def _answer(self, challenge: Challenge, scope: str) -> None:
        creds = self._creds()
        if challenge.scheme == "basic":
            if creds is None:
                raise RegistryAuthError(
                    f"{self._where()} asks for a username and password and none were found; "
                    f"log in with 'docker login' or 'podman login', or set "
                    f"{_constants.REGISTRY_USERNAME_ENV} and {_constants.REGISTRY_PASSWORD_ENV}"
                )
            self._basic = creds.basic_header()
            return
        realm = challenge.params.get("realm", "")
        try:
            realm = self._checked_url(realm)
        except RegistryProtocolError:
            raise RegistryAuthError(
                f"{self._where()} sent a token realm that is not an HTTPS URL; refusing to send "
                "credentials there"
            ) from None
        scopes = {s for s in challenge.params.get("scope", "").split(" ") if s}
        scopes.add(scope)
        query = [("scope", s) for s in sorted(scopes)]
        if "service" in challenge.params:
            query.insert(0, ("service", challenge.params["service"]))
        sep = "&" if urllib.parse.urlsplit(realm).query else "?"
        url = realm + sep + urllib.parse.urlencode(query)
        headers = {"Authorization": creds.basic_header()} if creds is not None else {}
        try:
            resp = self._pool.request(
                "GET",
                url,
                headers=headers,
                preload_content=False,
                redirect=False,
                retries=False,
            )
        except _Urllib3Error as exc:
            raise RegistryAuthError(
                f"could not reach the token service of {self._where()} "
                f"({type(exc).__name__}); check the network and CA file"
            ) from None
        if resp.status != 200:
            self._discard(resp)
            hint = "" if creds is not None else "; no credentials were found for it"
            raise RegistryAuthError(
                f"the token service of {self._where()} refused a token (HTTP {resp.status})"
                f"{hint}; log in with 'docker login' or 'podman login', or set "
                f"{_constants.REGISTRY_USERNAME_ENV} and {_constants.REGISTRY_PASSWORD_ENV}"
            )
        raw = read_bounded(
            resp, _constants.REGISTRY_MAX_SMALL_BYTES, "a token answer", self.registry
        )
        try:
            answer = json.loads(raw)
            token = answer.get("token") or answer.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token or not token.isprintable():
            raise RegistryAuthError(
                f"the token service of {self._where()} answered without a usable token"
            )
        self._tokens[scope] = f"Bearer {token}"

    # -- the distribution API ---------------------------------------------------------------

    def get_manifest(self, repository: str, ref: str, accept: str) -> tuple[bytes, str, str]:
        """``(bytes, media type, sha256 digest)`` of a manifest, at most MAX_MANIFEST_BYTES."""
        resp = self._request(
            "GET",
            f"/v2/{repository}/manifests/{ref}",
            scope=pull_scope(repository),
            headers={"Accept": accept},
        )
        what = f"manifest {repository}:{ref}" if ":" not in ref else f"{repository}@{ref}"
        if resp.status != 200:
            raise self.status_error(resp, what)
        data = read_bounded(
            resp, _constants.REGISTRY_MAX_MANIFEST_BYTES, f"the {what}", self.registry
        )
        digest = sha256_digest(data)
        if ref.startswith("sha256:") and digest != ref:
            raise BlobIntegrityError(
                f"{self._where()} served bytes for {what} whose digest is {digest}; the registry "
                "or something between it and you changed them"
            )
        media_type = resp.headers.get("Content-Type", "").split(";")[0].strip()
        return data, media_type, digest

    def put_manifest(self, repository: str, ref: str, data: bytes, media_type: str) -> str:
        resp = self._request(
            "PUT",
            f"/v2/{repository}/manifests/{ref}",
            scope=push_scope(repository),
            headers={"Content-Type": media_type},
            body=data,
        )
        if resp.status not in (200, 201):
            raise self.status_error(resp, f"upload of the manifest {repository}:{ref}")
        self._discard(resp)
        return sha256_digest(data)

    def blob_exists(self, repository: str, digest: str) -> bool:
        resp = self._request(
            "HEAD", f"/v2/{repository}/blobs/{digest}", scope=push_scope(repository)
        )
        if resp.status in (200, 404):
            self._discard(resp)
            return resp.status == 200
        raise self.status_error(resp, f"blob {digest} in {repository}")

    def mount_blob(self, repository: str, digest: str, from_repository: str) -> bool:
        """Ask the registry to link ``digest`` from ``from_repository``; False if it would not
        (the upload it opened instead is abandoned; the registry expires it)."""
        query = urllib.parse.urlencode({"mount": digest, "from": from_repository})
        resp = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/?{query}",
            scope=push_scope(repository),
            headers={"Content-Length": "0"},
        )
        self._discard(resp)
        if resp.status == 201:
            return True
        if resp.status == 202:
            return False
        raise self.status_error(resp, f"a mount of {digest} from {from_repository}")

    def upload_blob(
        self, repository: str, digest: str, size: int, open_body: Callable[[], IO[bytes]]
    ) -> None:
        """Upload ``size`` bytes (streamed from ``open_body()``) as ``digest``."""
        resp = self._request(
            "POST",
            f"/v2/{repository}/blobs/uploads/",
            scope=push_scope(repository),
            headers={"Content-Length": "0"},
        )
        location = resp.headers.get("Location")
        if resp.status != 202 or not location:
            raise self.status_error(resp, f"an upload session in {repository}")
        self._discard(resp)
        url = self._checked_url(urllib.parse.urljoin(self._base() + "/", location))
        sep = "&" if urllib.parse.urlsplit(url).query else "?"
        url += sep + urllib.parse.urlencode({"digest": digest})
        resp = self._request(
            "PUT",
            url,
            scope=push_scope(repository),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
            body=open_body,
        )
        if resp.status != 201:
            raise self.status_error(resp, f"the upload of blob {digest} to {repository}")
        self._discard(resp)

    def fetch_blob(
        self,
        repository: str,
        digest: str,
        size: int,
        out: BinaryIO,
        *,
        written: int = 0,
        hasher: Any = None,
    ) -> None:
        """Stream blob ``digest`` (exactly ``size`` bytes) into ``out``, checking its sha256.

        ``out`` already holds ``written`` bytes whose hash is in ``hasher`` (a resumed download);
        a dropped connection resumes with a Range request, at most MAX_ATTEMPTS times.
        """
        if not digest.startswith("sha256:"):
            raise RegistryProtocolError(f"rtxpack only fetches sha256 blobs, not {digest!r}")
        sink = _Sink(out, hasher if hasher is not None else hashlib.sha256())
        try:
            self._fetch_into(repository, digest, size, sink, written)
            got = "sha256:" + sink.hexdigest()
        finally:
            sink.close()
        if got != digest:
            raise BlobIntegrityError(
                f"the {size} bytes {self._where()} served as blob {digest} have the digest "
                f"{got}; the registry's copy is damaged or was replaced"
            )

    def _fetch_into(
        self, repository: str, digest: str, size: int, sink: _Sink, written: int
    ) -> None:
        drops = 0
        path = f"/v2/{repository}/blobs/{digest}"
        while written < size:
            headers = {"Range": f"bytes={written}-"} if written else {}
            resp = self._request(
                "GET", path, scope=pull_scope(repository), headers=headers, follow_redirects=True
            )
            if resp.status == 206 and written:
                match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
                if not match or int(match.group(1)) != written:
                    self._discard(resp)
                    raise RegistryProtocolError(
                        f"{self._where()} answered a range request for {digest} with another "
                        "range than the one asked for"
                    )
            elif resp.status == 200:
                if written:
                    sink.restart()
                    written = 0
            else:
                raise self.status_error(resp, f"blob {digest} in {repository}")
            length = resp.headers.get("Content-Length")
            if length is not None and length.isdigit() and written + int(length) != size:
                resp.close()
                raise BlobIntegrityError(
                    f"{self._where()} serves blob {digest} with {written + int(length)} bytes; "
                    f"its descriptor says {size}; refusing to download it"
                )
            try:
                while chunk := _read_into(resp, sink.buffer()):
                    if written + len(chunk) > size:
                        resp.close()
                        raise BlobIntegrityError(
                            f"{self._where()} sent more than the {size} bytes blob {digest} "
                            "has; refusing the rest"
                        )
                    sink.put(chunk)
                    written += len(chunk)
                resp.release_conn()
            except _Urllib3Error as exc:
                resp.close()
                drops += 1
                if drops >= self._attempts:
                    raise RegistryConnectionError(
                        f"the download of blob {digest} from {self._where()} broke off "
                        f"{drops} times ({type(exc).__name__}); {written} of {size} bytes "
                        "arrived; try again (the download resumes)"
                    ) from None
                self._backoff(drops)
                continue
            if written < size:
                drops += 1
                if drops >= self._attempts:
                    raise RegistryConnectionError(
                        f"{self._where()} kept ending blob {digest} early ({written} of {size} "
                        "bytes); try again later"
                    )
                self._backoff(drops)


def _read_into(resp: urllib3.BaseHTTPResponse, buffer: memoryview) -> memoryview:
    """The next bytes of ``resp``'s body (at most ``len(buffer)``), read into ``buffer``.

    urllib3's ``read(amt)`` hands back a new ``bytes`` per chunk (http.client allocates a zeroed
    buffer, reads into it, then copies it): two passes over every byte that ``curl`` does not make.
    With no content decoding (blobs are fetched as stored) the body is read straight from the
    underlying ``http.client`` response into a reused buffer instead; anything else falls back to
    ``read``. A broken connection is a urllib3 ``ProtocolError`` either way (a drop, resumed)."""
    fp = getattr(resp, "_fp", None)
    if isinstance(fp, http.client.HTTPResponse) and not resp.headers.get("Content-Encoding"):
        try:
            return buffer[: fp.readinto(buffer)]
        except (http.client.HTTPException, OSError) as exc:
            raise urllib3.exceptions.ProtocolError(f"connection broken: {exc!r}", exc) from exc
    return memoryview(resp.read(len(buffer), decode_content=False))


class _Sink:
    """Writes downloaded chunks and hashes them on a worker thread, so sha256 (which releases
    the GIL) runs on another core while the next chunk arrives and is written. The queue holds
    at most ``_SINK_DEPTH`` chunks, read into ``_SINK_DEPTH + 2`` reused buffers: memory stays
    bounded whatever the blob size, and no buffer is refilled while queued or being hashed."""

    def __init__(self, out: BinaryIO, hasher: Any) -> None:
        self._out, self._hasher = out, hasher
        self._buffers = [
            memoryview(bytearray(_constants.REGISTRY_CHUNK_BYTES)) for _ in range(_SINK_DEPTH + 2)
        ]
        self._next = 0
        self._queue: queue.Queue[memoryview | None] = queue.Queue(maxsize=_SINK_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="rtxpack-blob-sink", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._hasher.update(chunk)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._error = exc

    def buffer(self) -> memoryview:
        """A buffer to read the next chunk into: with the queue at most ``_SINK_DEPTH`` long and
        one chunk being hashed, the one after those is free."""
        buffer = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        return buffer

    def put(self, chunk: memoryview) -> None:
        """Write ``chunk`` (in the caller's thread) and queue it for hashing."""
        if self._error is not None:
            raise self._error
        self._out.write(chunk)
        self._queue.put(chunk)

    def _drain(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def restart(self) -> None:
        """Forget what was written (the server sent the whole blob again)."""
        self._drain()
        self._out.seek(0)
        self._out.truncate()
        self._hasher = hashlib.sha256()
        self._thread = threading.Thread(target=self._work, name="rtxpack-blob-sink", daemon=True)
        self._thread.start()

    def hexdigest(self) -> str:
        self._drain()
        self._thread = None  # type: ignore[assignment]
        return str(self._hasher.hexdigest())

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def read_bounded(resp: urllib3.BaseHTTPResponse, limit: int, what: str, registry: str) -> bytes:
    """The whole body, or RegistryProtocolError if it is longer than ``limit`` bytes."""
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        resp.close()
        raise RegistryProtocolError(
            f"the registry {registry} sent {what} of {int(length)} bytes; rtxpack reads at most "
            f"{limit}"
        )
    parts: list[bytes] = []
    total = 0
    try:
        while True:
            chunk = resp.read(min(65536, limit + 1 - total), decode_content=False)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > limit:
                resp.close()
                raise RegistryProtocolError(
                    f"the registry {registry} sent {what} of more than {limit} bytes; rtxpack "
                    "reads at most that"
                )
    except _Urllib3Error as exc:
        resp.close()
        raise RegistryConnectionError(
            f"the connection to the registry {registry} broke while reading {what} "
            f"({type(exc).__name__}); try again"
        ) from None
    resp.release_conn()
    return b"".join(parts)
