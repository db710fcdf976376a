"""Signature status as ``check`` findings (docs/signing.md, docs/compatibility.md)."""

from __future__ import annotations

from .._signing import TrustReport, describe_part
from .report import Finding

__all__ = ["signature_findings"]


def _parts(names: tuple[str, ...]) -> str:
    shown = ", ".join(describe_part(p) for p in names[:6])
    return (
        shown + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        if names
        else "nothing here"
    )


def signature_findings(report: TrustReport) -> list[Finding]:
    """One finding per signer, one per refused part and one per dropped cache.

    Codes: ``signature.trusted`` / ``signature.unchecked`` (info), ``signature.untrusted`` and
    ``signature.damaged`` (warning), ``signature.invalid`` (error: a trusted key's signature
    that does not verify), ``signature.refused`` (error: a part the policy refuses; the bundle
    will not open under it), ``signature.cache_dropped`` (warning)."""
    out: list[Finding] = []
    for s in report.signers:
        covers = _parts(s.covers)
        changed = "; no longer matches " + _parts(tuple(s.mismatched)) if s.mismatched else ""
        if s.status == "damaged":
            out.append(Finding("signature.damaged", "warning", s.describe()))
        elif s.status == "trusted":
            out.append(
                Finding("signature.trusted", "info", f"signed by {s.describe()}: {covers}{changed}")
            )
        elif s.status == "unchecked":
            out.append(
                Finding(
                    "signature.unchecked",
                    "info",
                    f"signed by {s.describe()}: {covers}{changed} (not verified: no trust policy "
                    "given)",
                )
            )
        elif s.status == "invalid":
            out.append(
                Finding(
                    "signature.invalid",
                    "error",
                    f"signature section {s.section!r} by {s.describe()} does not verify: it was "
                    "changed after signing, or forged",
                )
            )
        else:
            out.append(
                Finding("signature.untrusted", "warning", f"signed by {s.describe()}: {covers}")
            )
    for part, reason in report.refused.items():
        out.append(
            Finding(
                "signature.refused",
                "error",
                f"the trust policy refuses {describe_part(part)}: {reason}; found: "
                + "; ".join(report.found(part))
                + " — sign it with a trusted key (rtxpack sign) or trust its signer",
            )
        )
    for cache_id, reason in report.dropped.items():
        out.append(
            Finding(
                "signature.cache_dropped",
                "warning",
                f"runtime cache {cache_id!r} is ignored: {reason} (the engine loads cold)",
            )
        )
    return out
