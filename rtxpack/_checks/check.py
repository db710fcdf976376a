"""``check``: will a bundle run on a machine? Engine by engine, before touching the GPU.

It reads the bundle, applies the rules (``rules``, which take only a ``Target``) and, for this
machine with a usable GPU, asks its TensorRT-RTX runtime (``validity``); then it gives each
engine a verdict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from .._bundle import Bundle, Trust, resolve_trust
from .._exceptions import (
    BundleFormatError,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    RtxpackError,
    SignatureError,
    UnsupportedVersionError,
)
from .._format.container import format_version_str
from .._format.manifest import EngineInfo, Manifest
from . import machine, rules, validity
from .report import CompatibilityReport, EngineVerdict, Finding
from .signatures import signature_findings
from .target import Target

if TYPE_CHECKING:
    from .._signing import TrustPolicy

__all__ = ["check", "check_manifest", "run_check"]

#: Error codes that rebuilding the engine from its source (``rtxpack rebuild``) fixes.
_REBUILDABLE = frozenset(
    {
        "trt.version_mismatch",
        "gpu.cc_not_targeted",
        "runtime.version_mismatch",
        "runtime.unsupported_cc",
    }
)


def _verdict(info: EngineInfo, findings: list[Finding], cold: bool) -> EngineVerdict:
    mine = [f for f in findings if f.engine in (None, info.name)]
    errors = [f for f in mine if f.severity == "error"]
    if errors:
        fixable = info.source is not None and all(f.code in _REBUILDABLE for f in errors)
        status = "needs_rebuild" if fixable else "cannot_run"
        return EngineVerdict(info.name, status, tuple(f.message for f in errors))
    warnings = [f for f in mine if f.severity == "warning"]
    if cold:
        cache = [f for f in warnings if f.code == "cache.none_match"]
        rest = [f for f in warnings if f.code != "cache.none_match"]
        return EngineVerdict(info.name, "loads_cold", tuple(f.message for f in cache + rest))
    return EngineVerdict(info.name, "loads", tuple(f.message for f in warnings))


def _unreadable(path: str, target: Target, exc: RtxpackError) -> CompatibilityReport:
    if isinstance(exc, UnsupportedVersionError):
        code = "format.unsupported_version"
    elif isinstance(exc, NotABundleError):
        code = "format.not_a_bundle"
    else:  # DamagedBundleError, IntegrityError (the manifest digest does not match)
        code = "format.damaged"
    finding = Finding(code, "error", str(exc))
    return CompatibilityReport(
        bundle=path,
        target=target,
        findings=(finding,),
        engines=(EngineVerdict(None, "cannot_run", (finding.message,)),),
        format_version=getattr(exc, "found", None),
    )


def run_check(
    bundle: str | os.PathLike[str] | Bundle,
    target: Target,
    *,
    engine: str | None = None,
    missing: Iterable[str] = (),
    ask_runtime: bool = False,
    trust: Trust = None,
) -> CompatibilityReport:
    """``check`` with the knobs the CLI needs.

    ``missing``: parts of the target known to be absent rather than unknown: ``"trt"`` (an
    unknown TensorRT-RTX version means it is not installed) and ``"gpu"`` (no GPU): errors, not
    "not checked" infos. ``ask_runtime``: also ask this machine's TensorRT-RTX runtime
    (``get_engine_validity``); only meaningful when the target is this machine. ``trust``: as
    for ``check``.
    """
    if not isinstance(target, Target):
        raise InvalidArgumentError(
            f"target: expected an rtxpack.Target or None, got {type(target).__name__}"
        )
    absent = frozenset(missing)
    if not absent <= {"trt", "gpu"}:
        raise InvalidArgumentError(f"missing: {sorted(absent)}; expected 'trt' and/or 'gpu'")
    policy = resolve_trust(trust)
    if isinstance(bundle, Bundle):
        return _check_open(bundle, target, engine, absent, ask_runtime, policy)
    if not isinstance(bundle, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"bundle: expected a path or an open rtxpack.Bundle, got {type(bundle).__name__}"
        )
    path = str(bundle)
    try:
        opened = Bundle(bundle)
    except InvalidArgumentError:
        raise  # no such file, a folder: the argument is wrong
    except (BundleFormatError, IntegrityError) as exc:
        return _unreadable(path, target, exc)
    with opened:
        report = _check_open(opened, target, engine, absent, ask_runtime, policy)
    return replace(report, bundle=path)


def _check_open(
    bundle: Bundle,
    target: Target,
    engine: str | None,
    missing: frozenset[str],
    ask_runtime: bool,
    policy: TrustPolicy | None = None,
) -> CompatibilityReport:
    engines = (bundle.manifest.engine(engine),) if engine is not None else bundle.manifest.engines
    major, minor = bundle.format_version.split(".")
    manifest = bundle.manifest
    extra: list[Finding] = []
    try:
        trust_report = bundle.signatures(False if policy is None else policy)
    except SignatureError as exc:  # e.g. more signature sections than the limit
        extra.append(Finding("signature.damaged", "error", str(exc)))
    else:
        extra += signature_findings(trust_report)
        if trust_report.dropped:  # the policy ignores these caches: check as a load would
            kept = tuple(c for c in manifest.caches if c.id not in trust_report.dropped)
            manifest = replace(manifest, caches=kept)
    return check_manifest(
        manifest,
        (int(major), int(minor)),
        target,
        engines=engines,
        missing=missing,
        where=str(bundle.path),
        runtime=(lambda infos: validity.runtime_findings(bundle, infos)) if ask_runtime else None,
        extra=extra,
    )


def check_manifest(
    manifest: Manifest,
    version: tuple[int, int],
    target: Target,
    *,
    engines: tuple[EngineInfo, ...] | None = None,
    missing: frozenset[str] = frozenset(),
    where: str = "",
    runtime: Callable[[tuple[EngineInfo, ...]], list[Finding]] | None = None,
    extra: Sequence[Finding] = (),
) -> CompatibilityReport:
    """The rules applied to a bundle's manifest alone (a local bundle, or one in a registry
    before anything else is downloaded); ``runtime`` adds the findings of this machine's
    TensorRT-RTX runtime, ``extra`` findings made elsewhere (signatures)."""
    engines = manifest.engines if engines is None else engines
    run = rules.Run(target)
    rules.check_format(run, version)
    rules.check_unknown_fields(run, missing)
    rules.check_driver(run)
    rules.check_gpu_supported(run)
    for info in engines:
        rules.check_trt(run, info, missing)
        rules.check_cc(run, info)
        rules.check_platform(run, info)
    if runtime is not None:
        run.findings += runtime(engines)
    run.findings += extra
    verdicts = []
    for info in engines:
        mine = [f for f in run.findings if f.engine in (None, info.name)]
        has_errors = any(f.severity == "error" for f in mine)
        cold = not has_errors and rules.check_caches(run, manifest.caches, info)
        verdicts.append(_verdict(info, run.findings, cold))
    return CompatibilityReport(
        bundle=where,
        target=target,
        findings=tuple(run.findings),
        engines=tuple(verdicts),
        format_version=format_version_str(version),
    )


def check(
    bundle: str | os.PathLike[str] | Bundle,
    target: Target | None = None,
    *,
    engine: str | None = None,
    trust: Trust = None,
) -> CompatibilityReport:
    """Can the bundle's engines run on ``target`` (default: this machine)? Never touches a GPU
    unless ``target`` is None and this machine has one that TensorRT-RTX can use.

    Signature status comes as ``signature.*`` findings: under a trust policy (``trust``, or the
    ``RTXPACK_TRUST_POLICY`` file when ``trust`` is None) a part the policy refuses is an error
    (``load`` would refuse the bundle); without one, the signers are listed unverified.

    A bundle that cannot be read (damaged, too new, not a bundle) gives a report with an error
    finding and status ``cannot_run``; wrong arguments raise ``InvalidArgumentError``.
    """
    if target is None:
        here = machine.local_target()
        return run_check(
            bundle,
            here,
            engine=engine,
            missing=machine.missing_locally(here),
            ask_runtime=machine.gpu_usable(here),
            trust=trust,
        )
    return run_check(bundle, target, engine=engine, trust=trust)
