"""Registry credentials and the distribution auth challenge.

Credentials come, in this order, from ``RTXPACK_REGISTRY_USERNAME``/``_PASSWORD``, from the auth
file named by ``RTXPACK_REGISTRY_AUTH_FILE``, or from the Docker and Podman auth files (their
``auths`` entries with a base64 ``auth`` field; credential helpers are not run). They are sent
only in answer to a registry's 401 challenge, never printed, and never part of an error message.
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .. import _constants
from .._exceptions import RegistryAuthError

__all__ = ["Challenge", "Credentials", "auth_files", "find_credentials", "parse_challenge"]


@dataclass(frozen=True)
class Credentials:
    """A username and a secret (password or token); the secret never appears in ``repr``."""

    username: str
    password: str = field(repr=False)
    origin: str = ""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: ``scheme`` is ``basic`` or ``bearer``."""

    scheme: str
    params: dict[str, str]


_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse the first challenge of a ``WWW-Authenticate`` header (None if absent or unusable)."""
    if not header or len(header) > 8192:
        return None
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("basic", "bearer"):
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if not match or match.end() == pos:
            break
        value = match.group(2) if match.group(2) is not None else match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = match.end()
    return Challenge(scheme, params)


def auth_files() -> list[Path]:
    """The auth files looked at, in order (those that do not exist are skipped)."""
    explicit = os.environ.get(_constants.REGISTRY_AUTH_FILE_ENV)
    if explicit:
        return [Path(explicit)]
    files: list[Path] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path.home()
    files.append(home / ".config" / "containers" / "auth.json")
    docker = os.environ.get("DOCKER_CONFIG")
    files.append((Path(docker) if docker else home / ".docker") / "config.json")
    return files


def _registry_keys(registry: str) -> set[str]:
    return {registry, f"https://{registry}", f"http://{registry}", f"https://{registry}/v1/"}


def _from_file(path: Path, registry: str) -> Credentials | None:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_constants.REGISTRY_MAX_SMALL_BYTES + 1)
    except OSError:
        return None
    if len(raw) > _constants.REGISTRY_MAX_SMALL_BYTES:
        raise RegistryAuthError(
            f"the auth file {path} is larger than {_constants.REGISTRY_MAX_SMALL_BYTES} bytes; "
            "an auth file holds a few entries: check that it is the right file"
        )
    try:
        data = json.loads(raw)
    except ValueError:
        raise RegistryAuthError(
            f"the auth file {path} is not valid JSON; fix it or point "
            f"{_constants.REGISTRY_AUTH_FILE_ENV} at another file"
        ) from None
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return None
    keys = _registry_keys(registry)
    for key, entry in auths.items():
        if key not in keys or not isinstance(entry, dict):
            continue
        encoded = entry.get("auth")
        if not isinstance(encoded, str) or not encoded:
            continue
        try:
            username, sep, password = (
                base64.b64decode(encoded, validate=True).decode().partition(":")
            )
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep or not username:
            raise RegistryAuthError(
                f"the entry for {registry} in {path} has an 'auth' field that is not "
                "base64 of 'user:password'; log in again to rewrite it"
            )
        return Credentials(username, password, origin=str(path))
    return None


def find_credentials(registry: str) -> Credentials | None:
    """Credentials for ``registry`` (``host[:port]``), or None for anonymous access."""
    username = os.environ.get(_constants.REGISTRY_USERNAME_ENV)
    password = os.environ.get(_constants.REGISTRY_PASSWORD_ENV)
    if username and password is not None:
        return Credentials(username, password, origin="environment")
    for path in auth_files():
        found = _from_file(path, registry)
        if found is not None:
            return found
    return None
