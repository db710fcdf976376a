"""Checking a bundle's signatures against its parts and a trust policy.

Cost: one signature verification per signer whose key the policy trusts for the statement's role,
plus comparing small records; no section bytes are read here (their digests are the manifest's,
checked when the bytes are read, as without a policy).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import RtxpackError, SignatureError, UntrustedBundleError
from .envelope import DEFAULT_SIGNATURE_LIMITS, Envelope, SignatureLimits, Statement, pae
from .parts import Part, bundle_parts, describe_part, match
from .policy import TrustPolicy

__all__ = ["Signer", "TrustReport", "evaluate"]

#: Signer statuses: ``trusted`` (the policy trusts the key for the role and the signature
#: verifies), ``untrusted`` (the key is not in the policy for that role), ``invalid`` (a trusted
#: key, but the signature does not verify), ``damaged`` (unreadable signature data),
#: ``unchecked`` (no policy given: nothing to verify against).
STATUSES = ("trusted", "untrusted", "invalid", "damaged", "unchecked")


@dataclass(frozen=True)
class Signer:
    """One signature found in a bundle, and what it vouches for there."""

    section: str  # the name of the signature section that holds it
    status: str
    role: str = ""  # "engines" / "caches"; empty when the data is damaged
    key_id: str = ""
    signed_at: str = ""
    covers: tuple[str, ...] = ()  # present parts it signed as they are (if it verifies)
    mismatched: Mapping[str, str] = field(default_factory=dict)  # present parts it signed otherwise
    detail: str = ""  # why it is damaged / invalid / untrusted

    def describe(self) -> str:
        if self.status == "damaged":
            return f"damaged signature section {self.section!r} ({self.detail})"
        who = f"key {self.key_id[:16] or '(no key id)'} (role {self.role}"
        if self.status == "trusted":
            return who + ", trusted)"
        if self.status == "unchecked":
            return who + ")"
        return f"{who}, {self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "status": self.status,
            "role": self.role,
            "key_id": self.key_id,
            "signed_at": self.signed_at,
            "covers": list(self.covers),
            "mismatched": dict(self.mismatched),
            "detail": self.detail,
        }


@dataclass(frozen=True)
class TrustReport:
    """What the signatures in a bundle say about each of its parts (under ``policy``, if any)."""

    parts: Mapping[str, Part]
    signers: tuple[Signer, ...]
    policy: TrustPolicy | None = None
    #: parts the policy refuses, each with the reason; empty without a policy
    refused: Mapping[str, str] = field(default_factory=dict)
    #: cache ids the policy drops (untrusted caches, ``untrusted_caches="drop"``)
    dropped: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.refused

    def trusted_by(self, part: str) -> tuple[str, ...]:
        return tuple(s.key_id for s in self.signers if s.status == "trusted" and part in s.covers)

    def found(self, part: str) -> tuple[str, ...]:
        """What the signatures say about one part, for messages."""
        out = []
        for s in self.signers:
            if part in s.covers:
                out.append(f"signed by {s.describe()}")
            elif part in s.mismatched:
                out.append(f"signed by {s.describe()}, but {s.mismatched[part]}")
            elif s.status == "damaged":
                out.append(s.describe())
        return tuple(out) or ("no signature in the bundle covers it",)

    def raise_for_refused(self) -> None:
        """Raise ``UntrustedBundleError`` for the first refused part (all are listed)."""
        if not self.refused:
            return
        part, reason = next(iter(self.refused.items()))
        found = self.found(part)
        more = (
            f" ({len(self.refused) - 1} more part(s) refused: "
            + ", ".join(describe_part(p) for p in list(self.refused)[1:6])
            + ")"
            if len(self.refused) > 1
            else ""
        )
        raise UntrustedBundleError(
            f"refusing {describe_part(part)}: {reason}; found: {'; '.join(found)}{more}. "
            "Sign the bundle with a trusted key (`rtxpack sign`), or trust the signer's public "
            "key in the policy if you trust who made it",
            part=part,
            signers=found,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": None if self.policy is None else self.policy.to_dict(),
            "signers": [s.to_dict() for s in self.signers],
            "parts": {p: list(self.trusted_by(p)) for p in self.parts},
            "refused": dict(self.refused),
            "dropped": dict(self.dropped),
        }


def _signers(
    section: str,
    data: bytes | RtxpackError,
    parts: Mapping[str, Part],
    policy: TrustPolicy | None,
    limits: SignatureLimits,
) -> list[Signer]:
    if isinstance(data, RtxpackError):
        return [Signer(section, "damaged", detail=str(data))]
    try:
        env = Envelope.parse(data, f"signature {section!r}", limits)
        statement = Statement.parse(env.payload, f"signature {section!r} statement", limits)
    except SignatureError as exc:
        return [Signer(section, "damaged", detail=str(exc))]
    covers: list[str] = []
    mismatched: dict[str, str] = {}
    for name, part in parts.items():
        if part.role == statement.role and name in statement.subjects:
            reason = match(statement, part)
            if reason is None:
                covers.append(name)
            else:
                mismatched[name] = reason
    out = []
    message = pae(env.payload_type, env.payload)
    for sig in env.signatures:
        detail = ""
        if policy is None:
            status = "unchecked"
        else:
            key = policy.key(statement.role, sig.keyid)
            if key is None:
                status = "untrusted"
                other = "caches" if statement.role == "engines" else "engines"
                detail = (
                    f"trusted only for role {other}"
                    if policy.key(other, sig.keyid) is not None
                    else "not in the trust policy"
                )
            elif key.verify(sig.sig, message):
                status = "trusted"
            else:
                status, detail = "invalid", "the signature does not verify"
        out.append(
            Signer(
                section,
                status,
                statement.role,
                sig.keyid,
                statement.signed_at,
                tuple(covers),
                mismatched,
                detail,
            )
        )
    return out


def _required(part: Part, policy: TrustPolicy) -> bool:
    if policy.require == "all":
        return True
    return part.name.startswith(("engine/", "source/"))


def evaluate(
    raw_manifest: Mapping[str, Any],
    envelopes: Sequence[tuple[str, bytes | RtxpackError]],
    policy: TrustPolicy | None = None,
    limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS,
) -> TrustReport:
    """Match every signature (``(section name, envelope bytes or the error reading them)``)
    against the parts of the bundle; under ``policy``, decide what is refused or dropped.

    Parts a statement names that the bundle lacks are fine (a subset of the signed bundle);
    parts the bundle has are each checked against every statement that names them."""
    if len(envelopes) > limits.max_signatures:
        raise SignatureError(
            f"the bundle holds {len(envelopes)} signatures, more than the limit of "
            f"{limits.max_signatures}; the bundle is damaged or hostile"
        )
    parts = bundle_parts(raw_manifest)
    signers: list[Signer] = []
    for section, data in envelopes:
        signers += _signers(section, data, parts, policy, limits)
    report = TrustReport(parts, tuple(signers), policy)
    if policy is None:
        return report
    refused: dict[str, str] = {}
    dropped: dict[str, str] = {}
    for name, part in parts.items():
        if not _required(part, policy) or report.trusted_by(name):
            continue
        if any(x.status == "trusted" and name in x.mismatched for x in signers):
            reason = "it changed after a trusted key signed it"
        elif any(name in x.covers for x in signers):
            reason = f"it is signed only by keys the trust policy does not trust for {part.role}"
        else:
            reason = f"it is not signed by a key the trust policy trusts for {part.role}"
        if part.role == "caches" and policy.untrusted_caches == "drop":
            dropped[name.split("/", 1)[1]] = reason
        else:
            refused[name] = reason
    return TrustReport(parts, tuple(signers), policy, refused, dropped)
