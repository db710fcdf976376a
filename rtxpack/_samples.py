"""``rtxpack verify --run``: run a bundle's stored sample inputs and compare with stored outputs."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any, TextIO

import numpy as np

from . import _bundle
from ._exceptions import InvalidArgumentError

__all__ = ["TOLERANCES", "run_samples"]

#: (rtol, atol) per output dtype; anything else (integers, bool) must match exactly.
TOLERANCES = {
    "float32": (1e-3, 1e-4),
    "float16": (1e-2, 1e-2),
    "bfloat16": (2e-2, 2e-2),
}


def _compare(name: str, got: np.ndarray, want: np.ndarray) -> tuple[bool, str]:
    shape = "x".join(map(str, want.shape)) or "scalar"
    if got.shape != want.shape:
        return False, f"FAIL  {name}: shape {list(got.shape)}, stored output has {list(want.shape)}"
    rtol, atol = TOLERANCES.get(str(want.dtype), (0.0, 0.0))
    if want.size == 0:
        return True, f"OK    {name}  {want.dtype}[{shape}]  empty"
    nan_mismatch = (
        int(np.count_nonzero(np.isnan(got) != np.isnan(want))) if want.dtype.kind in "fc" else 0
    )
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    ok = bool(np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True))
    finite = diff[~np.isnan(diff)]
    worst = f"max abs diff {float(finite.max()) if finite.size else 0.0:.3g}"
    if nan_mismatch:
        worst = f"{nan_mismatch} value(s) NaN in one and not the other; " + worst
    return ok, (
        f"{'OK  ' if ok else 'FAIL'}  {name}  {want.dtype}[{shape}]  {worst}  "
        f"(rtol {rtol:g}, atol {atol:g})"
    )


def run_samples(
    path: str | os.PathLike[str],
    *,
    engine: str | None = None,
    device: str = "auto",
    out: TextIO = sys.stdout,
) -> int:
    """Run the stored samples of one engine and compare; prints one line per output, returns 0/1.

    ``device="auto"`` tries TensorRT-RTX on the GPU. When TensorRT-RTX cannot run the engine here
    (or ``device="cpu"``), the bundle's ONNX source runs with ONNX Runtime instead, and it says so.
    """
    import torch

    from ._exceptions import FallbackWarning
    from ._loader import load

    if device == "auto":
        device = "cuda"  # the loader falls back to ONNX Runtime, saying why, if it cannot run
    elif device not in ("cuda", "cpu") and not str(device).startswith("cuda:"):
        raise InvalidArgumentError(f"device {device!r}: expected auto, cuda, cuda:N or cpu")
    with _bundle.open(path) as b:
        info = b.manifest.engine(engine)
        samples = b.read_samples(info.name)
    if not samples or not samples["inputs"]:
        print(
            f"no samples in engine {info.name!r} of {path}: nothing to run. Build the bundle "
            "with samples (save(..., samples=...) or inputs=...) to use verify --run",
            file=out,
        )
        return 1
    if not samples["outputs"]:
        print(
            f"engine {info.name!r} of {path} stores sample inputs but no reference outputs; "
            "nothing to compare with",
            file=out,
        )
        return 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module: Any = load(path, engine=info.name, device=device, fallback="onnxruntime")
    for w in caught:
        if issubclass(w.category, FallbackWarning):
            print(f"note: {str(w.message).removeprefix('rtxpack: ')}", file=out)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    try:
        backend = "ONNX Runtime" if module.backend == "onnxruntime" else "TensorRT-RTX"
        print(
            f"running the samples of engine {info.name!r} with {backend} on {module.device}",
            file=out,
        )
        feeds = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in samples["inputs"].items()}
        feeds = {k: v.to(module.device) for k, v in feeds.items()}
        result = module(**feeds, return_dict=True)
        failed = 0
        for name, want in samples["outputs"].items():
            if name not in result:
                print(f"FAIL  {name}: the engine has no such output", file=out)
                failed += 1
                continue
            got = result[name].detach().cpu().numpy()
            ok, line = _compare(name, got, want)
            failed += not ok
            print(line, file=out)
    finally:
        module.close()
    total = len(samples["outputs"])
    if failed:
        print(f"{failed} of {total} output(s) differ from the stored ones", file=out)
        return 1
    print(f"all {total} output(s) match the stored ones", file=out)
    return 0
