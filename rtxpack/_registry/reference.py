"""Parsing ``oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`` references, strictly.

The grammar is the one of the distribution spec (repository path components, tags, digests),
with an explicit registry host: there is no default registry, so a reference can never
silently point at a host the user did not name.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from .._exceptions import InvalidReferenceError

__all__ = ["Reference", "is_loopback", "parse_reference"]

SCHEME = "oci://"
#: The longest reference text accepted (host + repository + tag + digest fit well within it).
MAX_REFERENCE_CHARS = 1024
#: The distribution spec's limit on a repository name (path components and slashes).
MAX_REPOSITORY_CHARS = 255
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOSTNAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)


@dataclass(frozen=True)
class Reference:
    """One artifact in one repository of one registry.

    ``host`` is a DNS name, an IPv4 address or an IPv6 address (without brackets); ``tag`` is
    set unless the reference names only a digest; ``digest`` pins the exact manifest.
    """

    host: str
    port: int | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        """``host[:port]`` as it appears in URLs and in Docker config files."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def ref(self) -> str:
        """What goes into ``/v2/<repo>/manifests/<ref>``: the digest if pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        assert self.tag is not None
        return self.tag

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.host, self.port, self.repository, tag, None)

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.host, self.port, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = f"{SCHEME}{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bad(text: str, why: str) -> InvalidReferenceError:
    shown = text if len(text) <= 200 else text[:200] + "..."
    return InvalidReferenceError(
        f"{shown!r} is not a valid registry reference: {why}; expected "
        f"oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:DIGEST], for example "
        f"oci://registry.example.com/team/model:1.0"
    )


def _parse_host(text: str, hostport: str) -> tuple[str, int | None]:
    port: int | None = None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _bad(text, "an IPv6 address has no closing ']'")
        host, rest = hostport[1:end], hostport[end + 1 :]
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError(host)
        except ValueError:
            raise _bad(text, f"{host!r} in brackets is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise _bad(text, "unexpected text after the IPv6 address")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text_ = hostport.partition(":")
        port_text = port_text_ if sep else None
        if not _HOSTNAME.fullmatch(host) or len(host) > 253:
            raise _bad(text, f"{host!r} is not a host name or address")
    if port_text is not None:
        if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
            raise _bad(text, f"the port {port_text!r} is not a number")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise _bad(text, f"the port {port} is outside 1-65535")
    return host, port


def parse_reference(text: str) -> Reference:
    """Parse ``oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]``; the tag defaults to ``latest``
    when there is no digest. Raises ``InvalidReferenceError`` on anything else."""
    if not isinstance(text, str):
        raise InvalidReferenceError(f"a registry reference is a string, not {type(text).__name__}")
    if len(text) > MAX_REFERENCE_CHARS:
        raise _bad(text, f"it is longer than {MAX_REFERENCE_CHARS} characters")
    if not text.isascii() or not text.isprintable():
        raise _bad(text, "it holds non-ASCII or control characters")
    if not text.startswith(SCHEME):
        raise _bad(text, f"it does not start with {SCHEME}")
    rest = text[len(SCHEME) :]
    hostport, slash, path = rest.partition("/")
    if not slash or not hostport or not path:
        raise _bad(text, "it names no registry host and repository")
    host, port = _parse_host(text, hostport)
    digest: str | None = None
    if "@" in path:
        path, _, digest = path.partition("@")
        if not _DIGEST.fullmatch(digest):
            raise _bad(text, f"{digest!r} is not a digest (sha256: and 64 lowercase hex digits)")
    tag: str | None = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, _, tag = path.rpartition(":")
        if not _TAG.fullmatch(tag):
            raise _bad(text, f"{tag!r} is not a tag (letters, digits, '_', '.', '-', at most 128)")
    if len(path) > MAX_REPOSITORY_CHARS:
        raise _bad(text, f"the repository name is longer than {MAX_REPOSITORY_CHARS} characters")
    if not _REPOSITORY.fullmatch(path):
        raise _bad(
            text,
            f"{path!r} is not a repository name (lowercase letters, digits, '.', '_', '-' "
            "between them, components separated by '/')",
        )
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(host=host, port=port, repository=path, tag=tag, digest=digest)
