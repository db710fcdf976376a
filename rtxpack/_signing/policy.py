"""The trust policy: which keys a device trusts, for which role, and what must be signed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union

from .._constants import TRUST_POLICY_ENV
from .._exceptions import InvalidArgumentError
from .keys import PublicKey

__all__ = ["KeySource", "TrustPolicy"]

_MAX_POLICY_FILE = 1024 * 1024

KeySource = Union[PublicKey, str, "os.PathLike[str]", bytes]
REQUIRE = ("engines", "all")
UNTRUSTED_CACHES = ("refuse", "drop")


def _key(source: Any, where: str, base: Path | None = None) -> PublicKey:
    if isinstance(source, PublicKey):
        return source
    if isinstance(source, bytes) or (
        isinstance(source, str) and source.lstrip().startswith("-----BEGIN")
    ):
        return PublicKey.from_pem(source, where)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if base is not None and not path.is_absolute():
            path = base / path
        return PublicKey.load(path)
    raise InvalidArgumentError(
        f"{where}: {type(source).__name__}; expected a PublicKey, a path to a PEM public key or "
        "the PEM text"
    )


def _keys(sources: Any, where: str, base: Path | None = None) -> tuple[PublicKey, ...]:
    if isinstance(sources, (str, bytes, os.PathLike, PublicKey)):
        sources = [sources]
    if not isinstance(sources, Iterable):
        raise InvalidArgumentError(f"{where}: expected a list of public keys")
    keys = tuple(_key(s, f"{where}[{i}]", base) for i, s in enumerate(sources))
    return tuple({k.key_id: k for k in keys}.values())  # one entry per key


@dataclass(frozen=True)
class TrustPolicy:
    """Which signers a device trusts, per role, and what a bundle must have signed.

    ``engines``: public keys trusted to sign engines, their sources, samples and user files (the
    build machine). ``caches``: keys trusted to sign runtime caches (prewarm machines). Keys are
    ``PublicKey`` objects, PEM file paths or PEM text.

    ``require="engines"``: every engine and ONNX source must be signed by a trusted engines key;
    caches, samples and files are not checked. ``require="all"``: every part must be, caches by
    a trusted caches key. ``untrusted_caches="drop"`` (with ``"all"``): a cache that is not
    trusted is ignored (the engine loads cold) instead of refusing the bundle.
    """

    engines: tuple[PublicKey, ...] = ()
    caches: tuple[PublicKey, ...] = ()
    require: Literal["engines", "all"] = "engines"
    untrusted_caches: Literal["refuse", "drop"] = "refuse"

    def __post_init__(self) -> None:
        object.__setattr__(self, "engines", _keys(self.engines, "TrustPolicy.engines"))
        object.__setattr__(self, "caches", _keys(self.caches, "TrustPolicy.caches"))
        if self.require not in REQUIRE:
            raise InvalidArgumentError(
                f"require={self.require!r}: expected one of {', '.join(REQUIRE)}"
            )
        if self.untrusted_caches not in UNTRUSTED_CACHES:
            raise InvalidArgumentError(
                f"untrusted_caches={self.untrusted_caches!r}: expected one of "
                f"{', '.join(UNTRUSTED_CACHES)}"
            )
        if not self.engines:
            raise InvalidArgumentError(
                "a trust policy needs at least one trusted engines key (the build machine's "
                "public key): every policy requires signed engines"
            )

    def keys_for(self, role: str) -> tuple[PublicKey, ...]:
        return self.engines if role == "engines" else self.caches if role == "caches" else ()

    def key(self, role: str, key_id: str) -> PublicKey | None:
        """The trusted key of ``role`` with this key id, if any."""
        for k in self.keys_for(role):
            if k.key_id == key_id:
                return k
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path | None = None) -> TrustPolicy:
        """From plain data (the JSON of a policy file); relative key paths are resolved against
        ``base``. Unknown keys are refused (a typo must not weaken a policy)."""
        if not isinstance(data, Mapping):
            raise InvalidArgumentError("a trust policy is a JSON object")
        unknown = set(data) - {"engines", "caches", "require", "untrusted_caches"}
        if unknown:
            raise InvalidArgumentError(
                f"unknown trust policy field(s) {', '.join(sorted(map(str, unknown)))}; expected "
                "engines, caches, require, untrusted_caches"
            )
        for field_name in ("engines", "caches"):
            value = data.get(field_name, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgumentError(
                    f"trust policy field {field_name!r}: expected a list of key file paths or "
                    "PEM strings"
                )
        return cls(
            engines=_keys(data.get("engines", []), "engines", base),
            caches=_keys(data.get("caches", []), "caches", base),
            require=data.get("require", "engines"),
            untrusted_caches=data.get("untrusted_caches", "refuse"),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrustPolicy:
        """A JSON policy file, e.g. ``{"engines": ["builder.pub"], "caches": ["prewarm.pub"],
        "require": "all", "untrusted_caches": "drop"}``; key paths are relative to the file."""
        p = Path(path)
        try:
            with open(p, "rb") as f:
                raw = f.read(_MAX_POLICY_FILE + 1)
        except OSError as exc:
            raise InvalidArgumentError(
                f"cannot read trust policy {p}: {exc.strerror or exc}"
            ) from None
        if len(raw) > _MAX_POLICY_FILE:
            raise InvalidArgumentError(f"trust policy {p} is larger than {_MAX_POLICY_FILE} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InvalidArgumentError(f"trust policy {p} is not JSON: {exc}") from None
        try:
            return cls.from_dict(data, base=p.parent)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"trust policy {p}: {exc}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrustPolicy | None:
        """The policy file named by ``RTXPACK_TRUST_POLICY``, or None when it is unset or empty."""
        value = (os.environ if environ is None else environ).get(TRUST_POLICY_ENV, "")
        if not value:
            return None
        try:
            return cls.from_file(value)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"{TRUST_POLICY_ENV}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "engines": [k.key_id for k in self.engines],
            "caches": [k.key_id for k in self.caches],
            "require": self.require,
            "untrusted_caches": self.untrusted_caches,
        }
