"""Rebuilding engines from the ONNX source a bundle carries: for the installed TensorRT-RTX
release, for other GPUs, or into the local cache for ``load(..., rebuild=True)``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .._build.engine import build_onnx, current_platform, parse_compute_capabilities, trt_module
from .._constants import CACHE_DIR_ENV, REBUILT_DIR, cache_root
from .._exceptions import CompatibilityError, IntegrityError, InvalidArgumentError, RtxpackError
from .._facts import SUPPORTED_CCS, same_release
from .._format import container
from .._format.manifest import EngineInfo, Manifest
from .._source import materialized
from .._version import __version__
from .migrate import Progress

__all__ = ["rebuild", "rebuild_plan", "rebuild_to_cache"]


def _installed_trt() -> str:
    return str(trt_module().__version__)


def rebuild_plan(
    manifest: Manifest,
    *,
    engines: Sequence[str] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    installed: str | None = None,
    portable: bool = False,
) -> dict[str, str]:
    """Which engines need a rebuild, and why: ``{engine name: reason}`` (empty: none)."""
    installed = installed or _installed_trt()
    ccs = parse_compute_capabilities(compute_capabilities)
    names = list(engines) if engines else [e.name for e in manifest.engines]
    plan: dict[str, str] = {}
    for name in names:
        info = manifest.engine(name)
        reasons = []
        if not same_release(info.trt_version, installed):
            reasons.append(
                f"built with TensorRT-RTX {info.trt_version}, installed is {installed} "
                "(engines only load on the release that built them)"
            )
        missing = [c for c in ccs or () if c not in info.compute_capabilities]
        if missing:
            reasons.append(f"lacks compute capability {', '.join(missing)}")
        if portable and not info.hardware_portable:
            reasons.append(
                f"targets only CC {', '.join(info.compute_capabilities) or 'unknown'}, "
                "not newer GPUs"
            )
        if reasons:
            plan[name] = "; ".join(reasons)
    return plan


def _no_source(info: EngineInfo, reason: str, installed: str) -> CompatibilityError:
    return CompatibilityError(
        f"engine {info.name!r} must be rebuilt ({reason}) but the bundle does not carry its ONNX "
        "source; rebuild the bundle from the model (`rtxpack build MODEL.onnx -o NEW.rtxpack` "
        f"with TensorRT-RTX {installed}), or run it where TensorRT-RTX {info.trt_version} is "
        "installed. Bundles built with --no-source cannot be rebuilt"
    )


def rebuild(
    bundle: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    engines: Sequence[str] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    portable: bool = False,
    progress: Progress | None = None,
    manifest_digest: bytes | None = None,
) -> Path:
    """Rebuild engines that the installed TensorRT-RTX cannot load (or that lack a requested
    compute capability) from the ONNX source the bundle carries; returns ``output``.
    ``portable=True`` also rebuilds engines built for a fixed set of GPUs for TensorRT-RTX's
    portable default targets, which include newer GPUs (through PTX).

    Name, strategy, profiles, source, samples, metadata and files are kept. Runtime caches of
    rebuilt engines are dropped (they belong to the old engine); other caches are kept. With
    ``compute_capabilities`` the rebuilt engines target exactly those; otherwise the recorded
    targets (or the portable default set for hardware-portable engines). When nothing needs a
    rebuild, ``output`` is an unchanged copy of the bundle. ``manifest_digest``: refuse a
    bundle whose manifest is not this one (the one a caller already checked).
    """
    say = progress or (lambda _msg: None)
    installed = _installed_trt()
    ccs = parse_compute_capabilities(compute_capabilities)
    if portable and ccs:
        raise InvalidArgumentError(
            "give either compute capabilities or portable=True (--portable), not both"
        )
    with container.rewriting(bundle, output) as (src, writer):
        _same_bundle(src, manifest_digest)
        manifest = src.manifest
        plan = rebuild_plan(
            manifest,
            engines=engines,
            compute_capabilities=ccs,
            installed=installed,
            portable=portable,
        )
        for name, reason in plan.items():
            if manifest.engine(name).source is None:
                raise _no_source(manifest.engine(name), reason, installed)
        if not plan:
            say(
                f"nothing to rebuild: every engine loads with TensorRT-RTX {installed}"
                + (f" and targets {', '.join(ccs)}" if ccs else "")
                + "; wrote an unchanged copy"
            )
        built: dict[str, Any] = {}
        for name, reason in plan.items():
            info = manifest.engine(name)
            assert info.source is not None
            say(f"{name}: {reason}: rebuilding from its ONNX source")
            keep = not (portable or info.hardware_portable)
            targets = ccs or (info.compute_capabilities or None if keep else None)
            here = current_platform()
            with materialized(src, info) as graph:  # from the bundle alone, never the cwd
                built[name] = build_onnx(
                    graph,
                    shapes=[dict(p) for p in info.profiles] or None,
                    compute_capabilities=targets,
                    options=info.build_options,
                    platform=None if info.platform in (here, "unknown") else info.platform,
                    progress=say,
                )
        dropped = [c for c in manifest.caches if c.engine in built]
        for c in dropped:
            say(
                f"{c.engine}: dropped runtime cache {c.id} ({c.environment.gpu_name}): it was "
                "made for the old engine and no longer applies"
            )
        index = writer.copy_all(
            src,
            skip={c.section for c in dropped},
            replacements={
                e.section: built[e.name].data for e in manifest.engines if e.name in built
            },
        )
        out = manifest.renumbered(index, tuple(writer.sections))
        rebuilt = tuple(
            replace(
                built[e.name].info(e.name, e.strategy, e.source_digest),
                section=e.section,
                source=e.source,
                samples=e.samples,
                source_data=e.source_data,
                output_tree=e.output_tree,
                equal_dims=e.equal_dims,
            )
            if e.name in built
            else e
            for e in out.engines
        )
        writer.finish(replace(out, rtxpack_version=__version__, engines=rebuilt))
    for name in built:
        say(f"{name}: rebuilt with TensorRT-RTX {installed}")
    return Path(output)


def _same_bundle(src: container.BundleFile, manifest_digest: bytes | None) -> None:
    """Refuse ``src`` unless its manifest is the one a caller checked (every section digest is
    in the manifest, so the same manifest means the same bytes once they are read)."""
    if manifest_digest is not None and src.header.manifest_digest != manifest_digest:
        raise IntegrityError(
            f"{src.path} changed while it was being loaded (its manifest is not the one that was "
            "checked, e.g. against the trust policy); load it again",
            path=src.path,
        )


def rebuild_to_cache(
    bundle: str | os.PathLike[str],
    *,
    compute_capability: str | None = None,
    progress: Progress | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    manifest_digest: bytes | None = None,
) -> Path:
    """Rebuild ``bundle`` for the installed TensorRT-RTX into ``<cache root>/rebuilt`` (the cache
    root is ``cache_dir`` when given, see ``_constants.cache_root``); returns the path to load.
    A previous rebuild of the same bundle (same manifest digest) for the same
    TensorRT-RTX version is reused; a bundle that needs no rebuild is returned as is.
    ``manifest_digest``: refuse a bundle whose manifest is not this one (the one the caller
    checked against its trust policy: the path is opened again here)."""
    installed = _installed_trt()
    src = container.open_bundle_file(bundle)
    try:
        _same_bundle(src, manifest_digest)
        # For this machine's GPU: an engine that does not target it is rebuilt for it (or for
        # the portable targets, when TensorRT-RTX cannot name it, e.g. a GPU newer than it).
        ccs: list[str] = []
        portable = False
        if compute_capability is not None:
            lacking = [
                e
                for e in src.manifest.engines
                if compute_capability not in e.compute_capabilities and not e.hardware_portable
            ]
            if lacking and compute_capability in SUPPORTED_CCS:
                ccs = [compute_capability]
            elif lacking:
                portable = True
        plan = rebuild_plan(
            src.manifest, installed=installed, compute_capabilities=ccs or None, portable=portable
        )
        key = src.header.manifest_digest.hex()[:32]
    finally:
        src.close()
    if not plan:
        return Path(bundle)
    directory = cache_root(cache_dir) / REBUILT_DIR
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgumentError(
            f"cannot create the rebuild cache {directory}: {exc.strerror}; set {CACHE_DIR_ENV} "
            "(or pass cache_dir) to a writable folder"
        ) from None
    for_gpus = "-".join(ccs) or ("portable" if portable else "same")
    target = directory / f"{key}-trt{installed}-{for_gpus}.rtxpack"
    import filelock

    with filelock.FileLock(str(target) + ".lock"):
        if target.is_file():
            try:
                container.open_bundle_file(target).close()
                if progress:
                    progress(f"reusing the rebuild in {target}")
                return target
            except RtxpackError:
                pass  # damaged: rebuild it
        return rebuild(
            bundle,
            target,
            compute_capabilities=ccs or None,
            portable=portable,
            progress=progress,
            manifest_digest=manifest_digest,
        )
