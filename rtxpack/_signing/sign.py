"""Making signature sections, and deciding which ones a rewritten bundle keeps."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidArgumentError, RtxpackError, SignatureError
from .envelope import DEFAULT_SIGNATURE_LIMITS, ROLES, Envelope, SignatureLimits, Statement
from .keys import PrivateKey
from .parts import bundle_parts, describe_part, match, statement_for

__all__ = ["SECTION_KIND", "SignedSection", "covered_parts", "sign_manifest", "why_stale"]

#: The section kind that holds one DSSE envelope (JSON, stored). Readers of format 1.0 skip it;
#: a per-device pull keeps it (it is neither an engine, a cache, a source nor samples).
SECTION_KIND = "signature"


@dataclass(frozen=True)
class SignedSection:
    name: str  # the section name: "<role>-<first 16 hex digits of the key id>"
    role: str
    key_id: str
    envelope: bytes  # the DSSE envelope, JSON
    parts: tuple[str, ...]  # what it signs


# why_stale's reason for a signature none of whose parts the rewritten bundle holds
SIGNS_NOTHING = "it signs nothing the new bundle holds"


def section_name(role: str, key_id: str) -> str:
    return f"{role}-{key_id[:16]}"


def sign_manifest(
    raw_manifest: Mapping[str, Any], key: PrivateKey, role: str, signed_at: str | None = None
) -> SignedSection:
    """Sign the parts of ``role`` in a bundle whose manifest (as plain data) is ``raw_manifest``."""
    if role not in ROLES:
        raise InvalidArgumentError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    parts = bundle_parts(raw_manifest)
    statement = statement_for(
        parts,
        role,
        signed_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    signed = tuple(p for p in parts if parts[p].role == role)
    if not signed:
        what = "engines" if role == "engines" else "runtime caches"
        raise SignatureError(f"nothing to sign for role {role}: the bundle holds no {what}")
    envelope = Envelope.sign(statement.to_json(), key)
    return SignedSection(
        section_name(role, key.key_id), role, key.key_id, envelope.to_json(), signed
    )


def why_stale(
    raw_manifest: Mapping[str, Any],
    data: bytes | RtxpackError,
    limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS,
) -> str | None:
    """Why a signature no longer holds for a (rewritten) bundle, or None if it still does.

    A signature holds when every part of its role that the bundle has and that it names still
    matches it, and it covers at least one part. No key is needed: a rewrite that leaves a
    signature's parts alone leaves the signature valid.
    """
    return _verdict(raw_manifest, data, limits)[0]


def covered_parts(
    raw_manifest: Mapping[str, Any],
    data: bytes,
    limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS,
) -> frozenset[str]:
    """The parts of the bundle a signature names and still holds for (none if it is stale)."""
    reason, named = _verdict(raw_manifest, data, limits)
    return frozenset() if reason is not None else named


def _verdict(
    raw_manifest: Mapping[str, Any], data: bytes | RtxpackError, limits: SignatureLimits
) -> tuple[str | None, frozenset[str]]:
    """(why the signature is stale or None, the names of the bundle's parts it names)."""
    if isinstance(data, RtxpackError):
        return f"it is damaged ({data})", frozenset()
    try:
        env = Envelope.parse(data, "signature", limits)
        statement = Statement.parse(env.payload, "signature statement", limits)
    except SignatureError as exc:
        return f"it is damaged ({exc})", frozenset()
    parts = bundle_parts(raw_manifest)
    named = [p for p in parts.values() if p.role == statement.role and p.name in statement.subjects]
    for p in named:
        reason = match(statement, p)
        if reason is not None:
            return f"{describe_part(p.name)} changed: {reason}", frozenset()
    if not named:
        return SIGNS_NOTHING, frozenset()
    return None, frozenset(p.name for p in named)
