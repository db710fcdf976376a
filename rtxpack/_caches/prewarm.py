"""``prewarm``: JIT-compile a bundle's engines on this GPU and store the runtime caches in it.

Each engine is loaded with the EAGER kernel-specialization strategy (compilation blocks, so the
cache is complete when a call returns), run at every optimization profile's min, opt and max
shapes plus the shapes the caller gives, then closed, which writes its runtime cache to a
temporary file. The caches are then added to a copy of the bundle, tagged with this machine's
environment; caches for other environments are kept, and an older cache of the same engine and
environment is replaced.

This needs a GPU TensorRT-RTX supports. Its orchestration is tested with a stand-in for the
loader (tests/caches/test_edit_and_prewarm.py); it has not been run on a real GPU here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import _bundle
from .._exceptions import BackendError, CompatibilityError, InvalidArgumentError
from .._facts import supports_cc
from .._format.manifest import CacheInfo, EngineInfo, Environment
from . import edit, local

__all__ = ["prewarm"]

EAGER = {"dynamic_shapes_kernel_specialization_strategy": "eager"}


def _machine_environment() -> Environment | None:
    """This machine's cache environment, or None if it has no GPU TensorRT-RTX can use."""
    try:
        from .._checks.machine import local_target
    except ImportError:  # pragma: no cover - a broken install
        return None
    env = local_target().environment()
    if env is None:
        return None
    if not supports_cc(env.compute_capability):
        return None
    try:
        if not _torch().cuda.is_available():
            return None
    except ImportError:
        return None
    return env


def _load(path: Path, engine: str, runtime_cache: Path) -> Any:
    from .._loader import load

    return load(path, engine=engine, strategy=dict(EAGER), runtime_cache=runtime_cache)


def _torch() -> Any:
    import torch

    return torch


def shape_sets(
    info: EngineInfo, extra: Sequence[Mapping[str, Sequence[int]]] = ()
) -> list[dict[str, tuple[int, ...]]]:
    """The input shapes to run: each profile's min, opt and max, then ``extra`` (no repeats)."""
    if not info.inputs:
        raise InvalidArgumentError(
            f"engine {info.name!r} has no recorded inputs, so rtxpack cannot make tensors to "
            "prewarm it; build the bundle from ONNX or a torch module (rtxpack build / save)"
        )
    static = {t.name: t.shape for t in info.inputs if -1 not in t.shape}
    names = [t.name for t in info.inputs]
    sets: list[dict[str, tuple[int, ...]]] = []
    for profile in info.profiles:
        for which in ("min", "opt", "max"):
            s = dict(static)
            s.update({n: tuple(getattr(r, which)) for n, r in profile.items()})
            sets.append(s)
    if not info.profiles:
        sets.append(dict(static))
    for given in extra:
        s = dict(static)
        s.update({str(k): tuple(int(d) for d in v) for k, v in given.items()})
        unknown = sorted(set(s) - set(names))
        if unknown:
            raise InvalidArgumentError(
                f"--shape names {', '.join(unknown)}, which engine {info.name!r} does not have "
                f"(its inputs: {', '.join(names)})"
            )
        sets.append(s)
    out: list[dict[str, tuple[int, ...]]] = []
    for s in sets:
        missing = [n for n in names if n not in s]
        if missing:
            raise InvalidArgumentError(
                f"no shape for input(s) {', '.join(missing)} of engine {info.name!r}; "
                "give one with --shape NAME=DIMS"
            )
        if s not in out:
            out.append(s)
    return out


def _random_tensor(torch: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    if dtype in ("float32", "float16", "bfloat16"):
        return torch.randn(shape, dtype=getattr(torch, dtype), device="cuda")
    if dtype in ("int8", "int32", "int64", "uint8"):
        return torch.randint(0, 2, shape, dtype=getattr(torch, dtype), device="cuda")
    if dtype == "bool":
        return torch.randint(0, 2, shape, device="cuda").bool()
    if dtype == "float8_e4m3fn":
        return torch.randn(shape, device="cuda").to(torch.float8_e4m3fn)
    raise InvalidArgumentError(
        f"prewarm cannot make a random {dtype} input; prewarm with the tensorrt_rtx command line "
        "and attach its cache with `rtxpack cache add`"
    )


def prewarm(
    bundle_path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    shapes: Sequence[Mapping[str, Sequence[int]]] | Mapping[str, Sequence[int]] | None = None,
    engine: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[CacheInfo]:
    """Warm the runtime caches of ``bundle_path``'s engines on this GPU; write ``output``.

    ``shapes``: extra input shape sets to run (a map of input name to dims, or a list of them).
    ``engine``: only this engine (default: every engine). Returns the caches added.
    Raises CompatibilityError on a machine without a GPU TensorRT-RTX supports.
    """
    src = Path(bundle_path)
    extra: list[Mapping[str, Sequence[int]]] = (
        [shapes] if isinstance(shapes, Mapping) else list(shapes or ())
    )
    with _bundle.open_bundle(src) as b:
        infos = [b.manifest.engine(engine)] if engine is not None else list(b.manifest.engines)
    plans = [(info, shape_sets(info, extra)) for info in infos]

    env = _machine_environment()
    if env is None:
        from .._checks import machine

        here = machine.local_target()
        found = (
            f"this machine's GPU ({here.gpu_name or 'unnamed'}, compute capability "
            f"{here.compute_capability}) is not one"
            if here.compute_capability is not None
            else "no NVIDIA GPU or CUDA driver was found on this machine"
        )
        raise CompatibilityError(
            "prewarm needs a GPU TensorRT-RTX supports (compute capability 7.5, 8.x or 12.x "
            f"and a CUDA driver); {found}. Run it on a device of the fleet, or attach a cache "
            "made there with `rtxpack cache add`"
        )
    torch = _torch()
    new: list[edit.NewCache] = []
    with tempfile.TemporaryDirectory(prefix="rtxpack-prewarm-") as tmp:
        for i, (info, sets) in enumerate(plans):
            cache_file = Path(tmp) / f"{i}.rtxcache"
            if progress:
                progress(f"{info.name}: loading with the eager strategy")
            module = _load(src, info.name, cache_file)
            try:
                for s in sets:
                    if progress:
                        shown = ", ".join(f"{n}={'x'.join(map(str, d))}" for n, d in s.items())
                        progress(f"{info.name}: running {shown}")
                    tensors = [_random_tensor(torch, t.dtype, s[t.name]) for t in info.inputs]
                    module(*tensors)
                torch.cuda.synchronize()
            finally:
                module.close()  # writes the runtime cache to cache_file
            blob = local.read_cache_file(cache_file, allow_raw=True)
            if blob is None:
                raise BackendError(
                    f"engine {info.name!r}: TensorRT-RTX wrote no runtime cache after the "
                    "prewarm run (nothing was JIT-compiled, or the cache could not be saved)"
                )
            new.append(edit.NewCache(blob, info.name, env, tuple(sets)))
        if progress:
            progress(f"writing {output}")
        return edit.rewrite(src, output, add=new)
