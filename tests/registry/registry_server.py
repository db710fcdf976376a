"""A real CNCF distribution registry (Debian's ``docker-registry``) on 127.0.0.1, for tests;
its fixtures are loaded by tests/conftest.py as a plugin.

Each server gets a temporary storage folder and config, a free port, and optionally htpasswd
basic auth, token auth (with the small token service below, whose JWTs the registry verifies
against a certificate we generate) and TLS with a self-signed CA generated here. The registry's
access log (its stdout) has the bytes of every response, so tests can count what moved.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

BINARY = shutil.which("docker-registry")
USER, PASSWORD = "fleet", "s3cret-Passw0rd"
_LOG_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3}) (?P<bytes>\d+|-)'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Pki:
    """A CA and one certificate signed by it for 127.0.0.1/localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def make_pki(folder: Path, name: str) -> Pki:
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"rtxpack test CA {name}")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (folder / f"{name}-{s}.pem" for s in ("ca", "cert", "key"))
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Pki(ca_file, cert_file, key_file, key, cert)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenService:
    """A minimal distribution token service: checks basic auth, grants what is asked, signs an
    ES256 JWT whose x5c chain the registry verifies. ``broken`` makes it sign with a key the
    registry does not trust (so every token is refused: a 401 loop)."""

    def __init__(self, folder: Path) -> None:
        self.pki = make_pki(folder, "token")
        self.port = free_port()
        self.issued = 0
        self.broken = False
        self._untrusted = make_pki(folder / "untrusted", "token")
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                header = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if header != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"token": service.token(query.get("scope", []))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def token(self, scopes: list[str]) -> str:
        self.issued += 1
        pki = self._untrusted if self.broken else self.pki
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(pki.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": "rtxpack-test-issuer",
            "sub": USER,
            "aud": "rtxpack-test-registry",
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": f"t{self.issued}",
            "access": access,
        }
        signing = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = pki.key.sign(signing.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class RegistryServer:
    """One running registry. ``auth`` is None, ``"htpasswd"`` or ``"token"``."""

    folder: Path
    auth: str | None = None
    tls: bool = False
    port: int = field(default_factory=free_port)
    pki: Pki | None = None
    tokens: TokenService | None = None
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def storage(self) -> Path:
        return self.folder / "storage"

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.folder / "access.log"

    @property
    def ca_file(self) -> str | None:
        return str(self.pki.ca_file) if self.pki else None

    def ref(self, repo_tag: str) -> str:
        return f"oci://{self.registry}/{repo_tag}"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log: {level: info, formatter: text}",
            "storage:",
            f"  filesystem: {{rootdirectory: {self.storage}}}",
            "  delete: {enabled: true}",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
        ]
        if self.tls:
            self.pki = self.pki or make_pki(self.folder, "registry")
            lines += [
                "  tls:",
                f"    certificate: {self.pki.cert_file}",
                f"    key: {self.pki.key_file}",
            ]
        if self.auth == "htpasswd":
            htpasswd = self.folder / "htpasswd"
            out = subprocess.run(
                ["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True
            ).stdout
            htpasswd.write_bytes(out)
            lines += ["auth:", "  htpasswd:", "    realm: rtxpack-test", f"    path: {htpasswd}"]
        elif self.auth == "token":
            self.tokens = self.tokens or TokenService(self.folder)
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.tokens.realm}",
                "    service: rtxpack-test-registry",
                "    issuer: rtxpack-test-issuer",
                f"    rootcertbundle: {self.tokens.pki.ca_file}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        assert BINARY, "docker-registry is not installed"
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "config.yml"
        config.write_text(self._config())
        with open(self.access_log, "ab") as out, open(self.folder / "registry.log", "ab") as err:
            self._proc = subprocess.Popen([BINARY, "serve", str(config)], stdout=out, stderr=err)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._answers():
                return self
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            "the test registry did not start: " + (self.folder / "registry.log").read_text()[-2000:]
        )

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                if self.tls:
                    ctx = ssl.create_default_context(cafile=self.ca_file)
                    with ctx.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
                        tls.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                        return tls.recv(12).startswith(b"HTTP/1.")
                sock.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
                return sock.recv(12).startswith(b"HTTP/1.")
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        if self.tokens is not None:
            self.tokens.stop()

    def log_mark(self) -> int:
        """A position in the access log; ``requests(since=mark)`` lists what came after."""
        time.sleep(0.05)  # the registry writes its log line just after the response
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def requests(self, since: int = 0) -> list[tuple[str, str, int, int]]:
        """``(method, path, status, bytes sent)`` for each response after ``since``."""
        time.sleep(0.05)
        with open(self.access_log, "rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", "replace")
        found = []
        for match in _LOG_LINE.finditer(text):
            sent = match.group("bytes")
            found.append(
                (
                    match.group("method"),
                    match.group("path"),
                    int(match.group("status")),
                    0 if sent == "-" else int(sent),
                )
            )
        return found

    def bytes_sent(self, since: int = 0) -> int:
        return sum(r[3] for r in self.requests(since))

    def blob_file(self, digest: str) -> Path:
        hexdigest = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexdigest[:2] / hexdigest / "data"


class CuttingProxy:
    """A TCP proxy to a registry that drops the first ``cuts`` connections once ``cut_after``
    bytes of response went through: a connection that breaks mid-download, on demand."""

    def __init__(self, upstream_port: int, *, cut_after: int, cuts: int = 1) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def registry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, response: bool) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if response and self.cuts_left > 0 and sent + len(data) > self.cut_after:
                    self.cuts_left -= 1
                    dst.sendall(data[: self.cut_after - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


# -- fixtures (imported by the test modules of this folder) ----------------------------------

needs_registry = pytest.mark.skipif(
    BINARY is None, reason="docker-registry is not installed (apt-get install docker-registry)"
)


@pytest.fixture
def private_store_and_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache root (so a private content store) and no credentials but those the test
    sets; the registry test modules use it for every test (``pytestmark``)."""
    store = tmp_path / "cache"
    monkeypatch.setenv("RTXPACK_CACHE_DIR", str(store))
    monkeypatch.setenv("RTXPACK_REGISTRY_AUTH_FILE", str(tmp_path / "no-auth-file.json"))
    monkeypatch.delenv("RTXPACK_REGISTRY_USERNAME", raising=False)
    monkeypatch.delenv("RTXPACK_REGISTRY_PASSWORD", raising=False)
    return store


def _serve(folder: Path, **kw: object) -> Iterator[RegistryServer]:
    server = RegistryServer(folder, **kw).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """An anonymous plain-HTTP registry."""
    yield from _serve(tmp_path / "registry")


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with htpasswd basic auth over TLS (self-signed CA)."""
    yield from _serve(tmp_path / "registry", auth="htpasswd", tls=True)


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """An anonymous registry over TLS with a CA generated for the test."""
    yield from _serve(tmp_path / "registry", tls=True)


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """A registry with bearer-token auth (a token service that checks basic credentials)."""
    yield from _serve(tmp_path / "registry", auth="token")
