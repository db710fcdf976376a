"""Signatures in bundle files: reading them, signing a bundle, keeping them through rewrites."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._exceptions import RtxpackError, SignatureError
from .._format import container as _format
from .._format.manifest import Manifest
from .envelope import DEFAULT_SIGNATURE_LIMITS, SignatureLimits
from .keys import PrivateKey
from .policy import TrustPolicy
from .sign import SECTION_KIND, SignedSection, sign_manifest
from .verify import TrustReport, evaluate

__all__ = ["read_envelopes", "sign", "trust_report"]


def read_envelopes(
    bf: _format.BundleFile, limits: SignatureLimits = DEFAULT_SIGNATURE_LIMITS
) -> list[tuple[str, bytes | RtxpackError]]:
    """Every signature section's envelope bytes (or why it cannot be read), in section order.

    A signature section is ``stored`` and at most ``limits.max_envelope_bytes``; its digest is
    checked like any section's. More than ``limits.max_signatures`` of them, or more than
    ``limits.max_total_bytes`` together, is refused."""
    sections = [s for s in bf.manifest.sections if s.kind == SECTION_KIND]
    if len(sections) > limits.max_signatures:
        raise SignatureError(
            f"{bf.path} holds {len(sections)} signature sections, more than the limit of "
            f"{limits.max_signatures}; the bundle is damaged or hostile"
        )
    total = sum(s.size for s in sections)
    if total > limits.max_total_bytes:
        raise SignatureError(
            f"{bf.path}: its signature sections hold {total} bytes together, more than the "
            f"limit of {limits.max_total_bytes}; the bundle is damaged or hostile"
        )
    out: list[tuple[str, bytes | RtxpackError]] = []
    for s in sections:
        if s.codec != "stored" or s.size > limits.max_envelope_bytes:
            out.append(
                (
                    s.name,
                    SignatureError(
                        f"signature section {s.name!r} is {s.codec}, {s.size} bytes; expected a "
                        f"stored section of at most {limits.max_envelope_bytes} bytes"
                    ),
                )
            )
            continue
        try:
            out.append((s.name, bytes(bf.decode(s))))
        except RtxpackError as exc:
            out.append((s.name, exc))
    return out


def trust_report(bf: _format.BundleFile, policy: TrustPolicy | None) -> TrustReport:
    """What the bundle's signatures say about its parts, under ``policy`` (None: no verdicts)."""
    return evaluate(bf.raw_manifest, read_envelopes(bf), policy)


def _raw(manifest: Manifest) -> dict[str, Any]:
    return manifest.to_dict()


def sign(
    path: str | os.PathLike[str],
    key: PrivateKey | str | os.PathLike[str],
    *,
    role: str = "engines",
    output: str | os.PathLike[str] | None = None,
    password: bytes | None = None,
) -> SignedSection:
    """Sign the parts of ``role`` in the bundle at ``path`` with ``key`` (a ``PrivateKey`` or a
    PEM file); writes ``output`` (default: in place, atomically).

    ``role="engines"``: engines with their records, their sources, samples and user files (the
    build machine). ``role="caches"``: the runtime caches, bound to their engines (a prewarm
    machine). A signature of the same role and key already in the bundle is replaced; others
    are kept. Returns what was signed."""
    if not isinstance(key, PrivateKey):
        key = PrivateKey.load(key, password)
    src_path = Path(path)
    dst_path = Path(output) if output is not None else src_path
    with _format.rewriting(src_path, dst_path) as (src, writer):
        manifest = src.manifest
        signed = sign_manifest(_raw(manifest), key, role)
        replaced = {
            i
            for i, s in enumerate(manifest.sections)
            if s.kind == SECTION_KIND and s.name == signed.name
        }
        index = writer.copy_all(src, skip=replaced)
        writer.add_bytes(SECTION_KIND, signed.name, signed.envelope, "stored")
        out = manifest.renumbered(index, tuple(writer.sections))
        writer.finish(out)
    return signed
