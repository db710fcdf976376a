"""DSSE envelopes carrying in-toto Statements, and their strict parser for untrusted bytes.

    envelope  = {"payload": base64(statement JSON), "payloadType": "application/vnd.in-toto+json",
                 "signatures": [{"keyid": KEY ID, "sig": base64(signature)}]}
    signature = Sign(PAE(payloadType, payload))
    PAE       = "DSSEv1" SP len(type) SP type SP len(body) SP body     (lengths in ASCII decimal)

docs/signing.md is the specification. Everything read from a bundle is bounded (sizes, counts,
nesting) and anything wrong ends in a ``SignatureError`` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import SignatureError
from .keys import PrivateKey

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "ROLES",
    "STATEMENT_TYPE",
    "Envelope",
    "Signature",
    "SignatureLimits",
    "Statement",
    "pae",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: The predicate type of an rtxpack bundle signature (docs/signing.md). Its own version, not the
#: bundle format's: a format 1.2 that adds fields keeps signatures of 1.1 readable.
PREDICATE_TYPE = "https://rtxpack.dev/bundle-signature/v1"
#: Who signs what: the build machine signs engines, their sources, samples and user files; a
#: prewarm machine signs the runtime caches it adds.
ROLES = ("engines", "caches")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}$")


@dataclass(frozen=True)
class SignatureLimits:
    """Bounds on signature data read from a bundle (its author controls all of it)."""

    max_signatures: int = 64  # signature sections in one bundle
    max_envelope_bytes: int = 4 * 1024 * 1024
    max_total_bytes: int = 16 * 1024 * 1024  # all signature sections of a bundle together
    max_signatures_per_envelope: int = 16
    max_subjects: int = 8192
    max_depth: int = 64  # JSON nesting
    max_string: int = 4096  # key ids, names, times


DEFAULT_SIGNATURE_LIMITS = SignatureLimits()


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def _fail(where: str, found: str, expected: str) -> SignatureError:
    if len(found) > 80:
        found = found[:77] + "..."
    return SignatureError(
        f"{where} is {found}, expected {expected}; the signature data is damaged or was not "
        "written by rtxpack — sign the bundle again"
    )


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(value: Any) -> int:
    """How deeply lists and maps nest in ``value`` (a scalar is 0)."""
    deepest = 0
    stack = [(value, 1)] if isinstance(value, (dict, list)) else []
    while stack:
        v, d = stack.pop()
        deepest = max(deepest, d)
        for child in v.values() if isinstance(v, dict) else v:
            if isinstance(child, (dict, list)):
                stack.append((child, d + 1))
    return deepest


def strict_json(data: bytes, where: str, limits: SignatureLimits) -> Any:
    """JSON from untrusted bytes: UTF-8, no duplicate keys, no NaN/Infinity, bounded nesting."""
    if len(data) > limits.max_envelope_bytes:
        raise _fail(where, f"{len(data)} bytes", f"at most {limits.max_envelope_bytes} bytes")
    try:
        text = data.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_refuse_constant)
    except RecursionError:
        raise _fail(where, "nested too deeply", f"at most {limits.max_depth} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise _fail(
            where, f"not strict JSON ({exc})", "UTF-8 JSON without duplicate keys"
        ) from None
    if _depth(value) > limits.max_depth:
        raise _fail(where, "nested too deeply", f"at most {limits.max_depth} levels")
    return value


def _map(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, type(value).__name__, "an object")
    return value


def _str(value: Any, where: str, max_len: int) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise _fail(where, repr(value), f"a string of at most {max_len} characters")
    return value


def _list(value: Any, where: str, lo: int, hi: int) -> list[Any]:
    if not isinstance(value, list) or not lo <= len(value) <= hi:
        raise _fail(where, type(value).__name__, f"a list of {lo} to {hi} items")
    return value


def b64decode(value: Any, where: str, max_len: int) -> bytes:
    """Standard or URL-safe base64, padded, nothing else (DSSE allows either alphabet)."""
    text = _str(value, where, max_len)
    if len(text) % 4:
        raise _fail(where, f"{len(text)} base64 characters", "padded base64")
    if _B64.fullmatch(text):
        altchars = None
    elif _B64URL.fullmatch(text):
        altchars = b"-_"
    else:
        raise _fail(where, "not base64", "standard or URL-safe base64")
    try:
        return base64.b64decode(text, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise _fail(where, "not base64", "standard or URL-safe base64") from None


def canonical_json(value: Any) -> bytes:
    """The bytes rtxpack writes for a JSON value (sorted keys, no spaces). Readers do not need
    this form: signatures cover the payload bytes as they are."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    @classmethod
    def sign(cls, payload: bytes, key: PrivateKey, payload_type: str = PAYLOAD_TYPE) -> Envelope:
        return cls(
            payload_type, payload, (Signature(key.key_id, key.sign(pae(payload_type, payload))),)
        )

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "payloadType": self.payload_type,
                "signatures": [
                    {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                    for s in self.signatures
                ],
            }
        )

    @classmethod
    def parse(
        cls, data: bytes, where: str, limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS
    ) -> Envelope:
        d = _map(strict_json(data, where, limits), where)
        for key in ("payload", "payloadType", "signatures"):
            if key not in d:
                raise _fail(f"{where}.{key}", "missing", "a value")
        payload_type = _str(d["payloadType"], f"{where}.payloadType", limits.max_string)
        if payload_type != PAYLOAD_TYPE:
            raise _fail(f"{where}.payloadType", repr(payload_type), repr(PAYLOAD_TYPE))
        payload = b64decode(d["payload"], f"{where}.payload", limits.max_envelope_bytes)
        sigs = []
        items = _list(d["signatures"], f"{where}.signatures", 1, limits.max_signatures_per_envelope)
        for i, s in enumerate(items):
            sw = f"{where}.signatures[{i}]"
            s = _map(s, sw)
            if "sig" not in s:
                raise _fail(f"{sw}.sig", "missing", "a value")
            keyid = _str(s.get("keyid", ""), f"{sw}.keyid", limits.max_string)
            sigs.append(Signature(keyid, b64decode(s["sig"], f"{sw}.sig", 1024)))
        return cls(payload_type, payload, tuple(sigs))


@dataclass(frozen=True)
class Statement:
    """An in-toto Statement v1 whose predicate is an rtxpack bundle signature.

    ``subjects`` maps part names (``engine/main``, ``runtime_cache/ab12cd34`` ...) to the
    BLAKE3-256 hex digest of the part's decoded section bytes; ``records`` maps part names to the
    manifest records signed with them (engines and caches); ``role`` says which parts the signer
    vouches for (``engines`` or ``caches``).
    """

    role: str
    subjects: Mapping[str, str]
    records: Mapping[str, Any] = field(default_factory=dict)
    signed_at: str = ""

    def to_json(self) -> bytes:
        predicate: dict[str, Any] = {"role": self.role, "records": dict(self.records)}
        if self.signed_at:
            predicate["signed_at"] = self.signed_at
        return canonical_json(
            {
                "_type": STATEMENT_TYPE,
                "subject": [
                    {"name": name, "digest": {"blake3": hexdigest}}
                    for name, hexdigest in sorted(self.subjects.items())
                ],
                "predicateType": PREDICATE_TYPE,
                "predicate": predicate,
            }
        )

    @classmethod
    def parse(
        cls, payload: bytes, where: str, limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS
    ) -> Statement:
        d = _map(strict_json(payload, where, limits), where)
        if d.get("_type") != STATEMENT_TYPE:
            raise _fail(f"{where}._type", repr(d.get("_type")), repr(STATEMENT_TYPE))
        if d.get("predicateType") != PREDICATE_TYPE:
            raise _fail(
                f"{where}.predicateType", repr(d.get("predicateType")), repr(PREDICATE_TYPE)
            )
        subjects: dict[str, str] = {}
        for i, s in enumerate(_list(d.get("subject"), f"{where}.subject", 1, limits.max_subjects)):
            sw = f"{where}.subject[{i}]"
            s = _map(s, sw)
            name = _str(s.get("name"), f"{sw}.name", limits.max_string)
            digest = _map(s.get("digest"), f"{sw}.digest")
            hexdigest = digest.get("blake3")
            if not isinstance(hexdigest, str) or not _HEX64.fullmatch(hexdigest):
                raise _fail(f"{sw}.digest.blake3", repr(hexdigest), "64 lowercase hex digits")
            if name in subjects:
                raise _fail(sw, f"a second subject named {name!r}", "unique subject names")
            subjects[name] = hexdigest
        predicate = _map(d.get("predicate"), f"{where}.predicate")
        role = predicate.get("role")
        if role not in ROLES:
            raise _fail(f"{where}.predicate.role", repr(role), " or ".join(ROLES))
        records = _map(predicate.get("records", {}), f"{where}.predicate.records")
        for name in records:
            if name not in subjects:
                raise _fail(
                    f"{where}.predicate.records", f"a record for {name!r}", "records of subjects"
                )
        signed_at = _str(predicate.get("signed_at", ""), f"{where}.predicate.signed_at", 64)
        return cls(role, subjects, records, signed_at)
