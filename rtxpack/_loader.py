"""``rtxpack.load``: check compatibility first, then rebuild the runtime the bundle records."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from . import _bundle
from ._backends.base import Signature
from ._exceptions import (
    BackendError,
    CompatibilityError,
    FallbackWarning,
    InvalidArgumentError,
    RebuildWarning,
    RuntimeCacheWarning,
)
from ._format.manifest import EngineInfo
from ._source import materialize
from ._strategy import RuntimeStrategy, check_setting_names

__all__ = ["load", "resolve_strategy"]

FALLBACKS = ("onnxruntime",)


def resolve_strategy(
    recorded: RuntimeStrategy, override: RuntimeStrategy | Mapping[str, Any] | None
) -> RuntimeStrategy:
    """The bundle's strategy, replaced by a ``RuntimeStrategy`` or changed field by field."""
    if override is None:
        return recorded
    if isinstance(override, RuntimeStrategy):
        return override
    if isinstance(override, Mapping):
        check_setting_names(override)
        return recorded.with_overrides(**dict(override))
    raise InvalidArgumentError(
        "strategy: expected an rtxpack.RuntimeStrategy or a dict of its fields, got "
        f"{type(override).__name__}"
    )


def _device(device: Any) -> torch.device:
    try:
        dev = torch.device(device)
    except (TypeError, RuntimeError) as exc:
        raise InvalidArgumentError(
            f"device {device!r}: expected 'cuda', 'cuda:N' or 'cpu' ({exc})"
        ) from None
    if dev.type not in ("cuda", "cpu"):
        raise InvalidArgumentError(f"device {device!r}: expected 'cuda', 'cuda:N' or 'cpu'")
    if dev.type == "cuda" and torch.cuda.is_available():
        # Pin the module to one GPU: 'cuda' means the current one, now (not whichever is
        # current at call time), and inputs on another GPU are refused.
        count = torch.cuda.device_count()
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if not 0 <= index < count:
            raise InvalidArgumentError(
                f"device {device!r}: this machine has {count} CUDA device(s) (cuda:0 .. "
                f"cuda:{count - 1})"
            )
        dev = torch.device("cuda", index)
    return dev


_log = logging.getLogger("rtxpack")


def _error_lines(report: Any) -> list[str]:
    lines = [
        f.message
        for f in getattr(report, "findings", ())
        if str(getattr(f, "severity", "")).lower().endswith("error")
    ]
    return lines or ["the compatibility check failed without naming a reason"]


def load(
    path: str | os.PathLike[str],
    *,
    engine: str | None = None,
    device: str | torch.device = "cuda",
    strategy: RuntimeStrategy | Mapping[str, Any] | None = None,
    runtime_cache: str | os.PathLike[str] | None = "auto",
    fallback: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    trust: _bundle.Trust = None,
) -> torch.nn.Module:
    """Load one engine of a bundle as a callable ``torch.nn.Module``.

    ``path`` may be a registry reference, ``oci://HOST[:PORT]/REPO[:TAG|@DIGEST]``: the bundle
    is pulled for this machine first (``rtxpack.pull``; blobs already in the content store are
    not downloaded again), with the ONNX source too when ``fallback`` or ``rebuild`` may need it.

    The compatibility check runs first, before anything touches the GPU; if the bundle cannot run
    here, a ``CompatibilityError`` carrying the report is raised — unless
    ``fallback="onnxruntime"`` and the bundle carries its ONNX source, in which case an ONNX
    Runtime module with the same interface is returned and a ``FallbackWarning`` says why.
    ``device="cpu"`` always means the ONNX Runtime fallback. ``strategy`` overrides the bundle's
    runtime strategy (a ``RuntimeStrategy``, or a dict of the fields to change).
    ``runtime_cache`` is ``"auto"`` (a prewarmed cache from the bundle, else the local cache),
    ``None`` (no cache) or a path to a cache file. With ``rebuild=True``, an engine that only
    needs a rebuild (another TensorRT-RTX release, or a GPU it was not built for) is rebuilt from
    the bundle's ONNX source into the local cache directory, with a warning, and that is loaded.
    ``trust`` is a trust policy (docs/signing.md): a ``TrustPolicy``, a policy file, None (the
    file named by ``RTXPACK_TRUST_POLICY``, if set) or False (none). Under a policy the bundle's
    signatures are checked first, and an unsigned, tampered or untrusted part raises
    ``UntrustedBundleError`` before any engine byte is read; untrusted caches are dropped instead
    when the policy says so.
    """
    if fallback is not None and fallback not in FALLBACKS:
        raise InvalidArgumentError(
            f"fallback {fallback!r}: expected None or one of {', '.join(map(repr, FALLBACKS))}"
        )
    dev = _device(device)
    if not (
        runtime_cache is None
        or runtime_cache == "auto"
        or isinstance(runtime_cache, (str, os.PathLike))
    ):
        raise InvalidArgumentError(
            f"runtime_cache {runtime_cache!r}: expected 'auto', None or a path to a cache file"
        )
    if isinstance(path, str) and path.startswith("oci://"):
        from ._registry.pull import pull_for_load

        needs_source = fallback is not None or rebuild or dev.type == "cpu"
        path = pull_for_load(path, engine=engine, with_source=needs_source)
    bundle = _bundle.open_bundle(path, trust=trust)
    try:
        info = bundle.manifest.engine(engine)
        chosen = resolve_strategy(info.strategy, strategy)
        report = None
        reason: str | None
        if dev.type == "cpu":
            reason = "device='cpu' was asked for, and TensorRT-RTX runs only on CUDA GPUs"
        else:
            from ._checks import check, machine

            report = check.check(bundle, None, engine=info.name)
            reason = None if report.ok else "; ".join(_error_lines(report))
            if reason is None and machine.local_target().compute_capability is None:
                # The check leaves an unknown GPU unchecked; loading needs one.
                reason = "no CUDA GPU was found on this machine (torch sees none)"
        if reason is not None and rebuild and report is not None:
            verdict = report.verdict(info.name)
            if verdict.status == "needs_rebuild":
                warnings.warn(
                    f"rtxpack: rebuilding engine {info.name!r} of {bundle.path} from its ONNX "
                    f"source for this machine ({reason}); the rebuild is kept in the local cache",
                    RebuildWarning,
                    stacklevel=2,
                )
                from ._upgrade import rebuild as _rebuild

                here = machine.local_target()
                rebuilt = _rebuild.rebuild_to_cache(
                    bundle.path,
                    compute_capability=here.compute_capability,
                    cache_dir=cache_dir,
                    # it opens the path again: it must find the bundle checked above
                    manifest_digest=bundle._file.header.manifest_digest,
                )
                bundle.close()
                # Built here from the bundle's source, which the policy (if any) just vouched
                # for: the rebuilt bundle is this machine's own and carries no signature. When
                # nothing was rebuilt it is the bundle's own path, opened again: under the policy.
                return load(
                    rebuilt,
                    engine=info.name,
                    device=device,
                    strategy=strategy,
                    runtime_cache=runtime_cache,
                    fallback=fallback,
                    cache_dir=cache_dir,
                    trust=trust if Path(rebuilt) == bundle.path else False,
                )
        if reason is not None:
            return _fall_back(bundle, info, dev, reason, report, fallback)
        try:
            return _load_tensorrt(bundle, info, dev, chosen, runtime_cache, cache_dir)
        except BackendError as exc:
            # A VALID verdict does not guarantee deserialization succeeds (TensorRT-RTX docs).
            if fallback is None:
                raise
            reason = f"TensorRT-RTX could not load it here ({exc})"
            return _fall_back(bundle, info, dev, reason, report, fallback)
    finally:
        bundle.close()


def _fall_back(
    bundle: _bundle.Bundle,
    info: EngineInfo,
    dev: torch.device,
    reason: str,
    report: Any,
    fallback: str | None,
) -> torch.nn.Module:
    where = f"engine {info.name!r} of {bundle.path}"
    if info.source is None:
        # Offer the fallback only when it can work: it runs the bundle's own ONNX source.
        remedy = (
            "this copy was made without its source (pulled without --source, or drop-source): "
            "use a copy that carries it, e.g. `rtxpack pull --source` (pull(..., source=True))"
            if info.source_digest is not None
            else "this one was built without it: rebuild it without --no-source "
            "(or save(..., include_source=True))"
        )
        if fallback is None:
            raise CompatibilityError(
                f"{where} cannot run on this machine: {reason}; the ONNX Runtime fallback "
                f"needs the bundle's ONNX source, and {remedy}",
                report,
            )
        raise CompatibilityError(
            f"{where} cannot run with TensorRT-RTX here ({reason}), and the ONNX Runtime "
            f"fallback needs the bundle's ONNX source; {remedy}",
            report,
        )
    if fallback is None:
        if report is None:
            raise InvalidArgumentError(
                f"{reason}; pass fallback='onnxruntime' to run the bundle's ONNX source on the CPU"
            )
        raise CompatibilityError(
            f"{where} cannot run on this machine: {reason} (or pass fallback='onnxruntime' to run "
            "its ONNX source with ONNX Runtime)",
            report,
        )

    ort_device = dev
    note = ""
    from ._backends import onnxruntime

    if dev.type == "cuda" and not onnxruntime.cuda_provider_available():
        ort_device = torch.device("cpu")
        note = " ONNX Runtime runs on the CPU here (no CUDAExecutionProvider): pass CPU tensors."
    graph = materialize(bundle, info)  # from the bundle alone, into a private folder
    module = onnxruntime.OnnxRuntimeModule(
        graph,
        name=info.name,
        signature=Signature.from_engine_info(info),
        device=ort_device,
        output_tree=info.output_tree,
        workdir=graph.parent,
    )
    warnings.warn(
        f"rtxpack: running {where} with ONNX Runtime instead of TensorRT-RTX: {reason}.{note}",
        FallbackWarning,
        stacklevel=3,
    )
    return module


def _load_tensorrt(
    bundle: _bundle.Bundle,
    info: EngineInfo,
    dev: torch.device,
    strategy: RuntimeStrategy,
    runtime_cache: Any,
    cache_dir: Any,
) -> torch.nn.Module:
    from ._backends import tensorrt

    blob: bytes | None = None
    origin = "none"
    persist: Path | None = None
    if runtime_cache is not None:
        from ._caches import selection
        from ._checks import machine

        plan = selection.plan_runtime_cache(
            bundle, info, machine.local_target(), runtime_cache=runtime_cache, cache_dir=cache_dir
        )
        blob, origin, persist = plan.blob, plan.origin, plan.persist_path
        _log.info("engine %r of %s: runtime cache: %s", info.name, bundle.path, origin)
        if blob is None and plan.notes:
            warnings.warn(
                f"rtxpack: no runtime cache fits engine {info.name!r} here ("
                + "; ".join(plan.notes)
                + "); starting cold: the first inferences JIT-compile kernels",
                RuntimeCacheWarning,
                stacklevel=3,
            )
    # Under a trust policy, a private copy is checked and handed over: bytes written into the
    # file in place after the check never reach TensorRT-RTX (the view shows such writes).
    data = bundle.read_engine(info.name, private=bundle.trust is not None)
    try:
        return tensorrt.TensorRTModule(
            data,
            name=info.name,
            signature=Signature.from_engine_info(info) if info.inputs else None,
            strategy=strategy,
            cache_blob=blob,
            cache_origin=origin,
            persist_path=persist,
            use_cache=runtime_cache is not None,
            device=dev,
            output_tree=info.output_tree,
        )
    finally:
        # TensorRT-RTX copies what it needs while deserializing; let the bundle's map close.
        if isinstance(data, memoryview):
            data.release()
