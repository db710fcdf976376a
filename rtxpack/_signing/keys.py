"""Signing keys: Ed25519 and ECDSA P-256 in PEM files, through ``cryptography``.

A key is named by its *key id*: the SHA-256 (lowercase hex) of the DER SubjectPublicKeyInfo of
its public half. The key id is what a DSSE signature carries in ``keyid`` and what a trust policy
looks keys up by; it is a hint only: trust comes from verifying the signature with the trusted key.

Signatures: Ed25519 signs the message itself (RFC 8032, 64 bytes); ECDSA P-256 signs its SHA-256
and is DER-encoded (as cosign and cloud KMS keys produce).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .._exceptions import InvalidArgumentError, OutputError

__all__ = [
    "ALGORITHMS",
    "PrivateKey",
    "PublicKey",
    "generate_key",
    "key_id",
]

#: Key types rtxpack signs and verifies with.
ALGORITHMS = ("ed25519", "ecdsa-p256")
#: A key file larger than this is not a key (PEM keys of these types are a few hundred bytes).
MAX_KEY_FILE = 64 * 1024

_Public = Union[ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey]  # noqa: UP007 (py3.10 alias)
_Private = Union[ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey]  # noqa: UP007


def key_id(public: _Public) -> str:
    """SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex."""
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _algorithm(key: Any, where: str) -> str:
    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        if isinstance(key.curve, ec.SECP256R1):
            return "ecdsa-p256"
        found = f"an ECDSA key on curve {key.curve.name}"
    else:
        found = f"a {type(key).__name__.lstrip('_')}"
    raise InvalidArgumentError(
        f"{where} is {found}; rtxpack signs with Ed25519 or ECDSA P-256 keys "
        "(make one with `rtxpack keygen`)"
    )


def _read_key_file(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except FileNotFoundError:
        raise InvalidArgumentError(f"no such key file: {p}") from None
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read key file {p}: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise InvalidArgumentError(
            f"{p} is larger than {MAX_KEY_FILE} bytes; expected a PEM key file"
        )
    return data


@dataclass(frozen=True)
class PublicKey:
    """A public key that verifies signatures. Compare and hash by ``key_id``."""

    algorithm: str
    key_id: str
    _key: _Public = field(repr=False, compare=False)

    @classmethod
    def from_pem(cls, data: bytes | str, where: str = "the public key") -> PublicKey:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if len(raw) > MAX_KEY_FILE:
            raise InvalidArgumentError(f"{where} is larger than {MAX_KEY_FILE} bytes")
        if b"PRIVATE KEY" in raw:
            raise InvalidArgumentError(
                f"{where} is a private key; give the public key (the .pub file `rtxpack keygen` "
                "wrote beside it) — a private key never needs to leave the signing machine"
            )
        try:
            key = serialization.load_pem_public_key(raw)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise InvalidArgumentError(
                f"{where} is not a PEM public key ({exc}); expected a file that starts with "
                "'-----BEGIN PUBLIC KEY-----'"
            ) from None
        algorithm = _algorithm(key, where)
        return cls(algorithm, key_id(key), key)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PublicKey:
        return cls.from_pem(_read_key_file(path), str(path))

    def to_pem(self) -> bytes:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True if ``signature`` is this key's signature of ``message``."""
        try:
            if isinstance(self._key, ed25519.Ed25519PublicKey):
                self._key.verify(signature, message)
            else:
                self._key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    @property
    def short_id(self) -> str:
        return self.key_id[:16]

    def __str__(self) -> str:
        return f"{self.algorithm} key {self.short_id}"


@dataclass(frozen=True)
class PrivateKey:
    """A private key that signs. Its repr and str never show key material."""

    algorithm: str
    key_id: str
    _key: _Private = field(repr=False, compare=False)

    @classmethod
    def generate(cls, algorithm: str = "ed25519") -> PrivateKey:
        if algorithm == "ed25519":
            key: _Private = ed25519.Ed25519PrivateKey.generate()
        elif algorithm == "ecdsa-p256":
            key = ec.generate_private_key(ec.SECP256R1())
        else:
            raise InvalidArgumentError(
                f"key algorithm {algorithm!r}: expected one of {', '.join(ALGORITHMS)}"
            )
        return cls(algorithm, key_id(key.public_key()), key)

    @classmethod
    def from_pem(
        cls, data: bytes, where: str = "the private key", password: bytes | None = None
    ) -> PrivateKey:
        try:
            key = serialization.load_pem_private_key(bytes(data), password=password)
        except TypeError:
            raise InvalidArgumentError(
                f"{where} is encrypted; give its password"
                if password is None
                else f"{where} is not encrypted; do not give a password"
            ) from None
        except (ValueError, UnsupportedAlgorithm) as exc:
            # cryptography's message may quote the PEM type, never key bytes
            raise InvalidArgumentError(
                f"{where} is not a usable PEM private key ({exc}); expected a file written by "
                "`rtxpack keygen` (or an Ed25519 / ECDSA P-256 key in PKCS#8 PEM)"
            ) from None
        algorithm = _algorithm(key, where)
        return cls(algorithm, key_id(key.public_key()), key)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | os.PathLike[str], password: bytes | None = None) -> PrivateKey:
        return cls.from_pem(_read_key_file(path), str(path), password)

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.algorithm, self.key_id, self._key.public_key())

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))

    def to_pem(self, password: bytes | None = None) -> bytes:
        """PKCS#8 PEM, encrypted with ``password`` if given (the best scheme ``cryptography``
        offers)."""
        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if password is None
            else serialization.BestAvailableEncryption(password)
        )
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def __str__(self) -> str:
        return f"{self.algorithm} private key {self.key_id[:16]}"


def _write_new(path: Path, data: bytes, mode: int, overwrite: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file created with ``mode`` and moved into
    place in one step: readers never see a partial key, and the file is never wider than ``mode``.
    Without ``overwrite`` an existing file is refused (a hard link fails if ``path`` exists)."""
    directory = path.parent if str(path.parent) else Path(".")
    tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), mode)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)  # exactly ``mode``, whatever the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise InvalidArgumentError(
                    f"{path} exists; refusing to overwrite a key file"
                ) from None
    except BaseException as exc:
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def generate_key(
    path: str | os.PathLike[str],
    *,
    algorithm: str = "ed25519",
    overwrite: bool = False,
    password: bytes | None = None,
) -> PublicKey:
    """Make a key pair: the private key (PKCS#8 PEM, mode 0600, encrypted with ``password`` if
    given) at ``path`` and the public key at ``path`` + ``.pub``. Returns the public key; the
    private key is never printed."""
    if password is not None and not password:
        raise InvalidArgumentError("an empty password: give a password, or none")
    p = Path(path)
    pub = p.with_name(p.name + ".pub")
    key = PrivateKey.generate(algorithm)
    if not overwrite:
        for q in (p, pub):
            if q.exists():
                raise InvalidArgumentError(f"{q} exists; refusing to overwrite a key file")
    _write_new(p, key.to_pem(password), 0o600, overwrite)
    _write_new(pub, key.public_key.to_pem(), 0o644, overwrite)
    return key.public_key
