"""``rtxpack verify --run``: run a bundle's stored sample inputs and compare with stored outputs."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _bundle
from ._exceptions import InvalidArgumentError
from ._tensors import BFLOAT16, to_numpy, to_torch

__all__ = ["TOLERANCES", "OutputCheck", "SampleRun", "run_samples"]

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
    # bf16 (ml_dtypes) and the other floats compare in float64; numpy's own helpers do not all
    # know ml_dtypes' bfloat16.
    floating = want.dtype.kind in "fc" or want.dtype == BFLOAT16
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    if want.size == 0:
        return True, f"OK    {name}  {want.dtype}[{shape}]  empty"
    nan_mismatch = int(np.count_nonzero(np.isnan(got64) != np.isnan(want64))) if floating else 0
    diff = np.abs(got64 - want64)
    ok = bool(np.allclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True))
    finite = diff[~np.isnan(diff)]
    worst = f"max abs diff {float(finite.max()) if finite.size else 0.0:.3g}"
    if nan_mismatch:
        worst = f"{nan_mismatch} value(s) NaN in one and not the other; " + worst
    return ok, (
        f"{'OK  ' if ok else 'FAIL'}  {name}  {want.dtype}[{shape}]  {worst}  "
        f"(rtol {rtol:g}, atol {atol:g})"
    )


@dataclass(frozen=True)
class OutputCheck:
    """One stored output compared with what the engine gave: ``line`` says how it compared."""

    name: str
    ok: bool
    line: str


@dataclass(frozen=True)
class SampleRun:
    """What running a bundle's stored samples found. ``problem`` says why nothing was compared
    (no samples, no reference outputs); ``notes`` say which backend ran and why (a fallback)."""

    engine: str
    outputs: tuple[OutputCheck, ...] = ()
    notes: tuple[str, ...] = ()
    problem: str | None = None

    @property
    def failed(self) -> int:
        return sum(not o.ok for o in self.outputs)

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.outputs) and not self.failed

    def lines(self) -> list[str]:
        """The report for people, one line each (what ``rtxpack verify --run`` prints)."""
        if self.problem is not None:
            return [*self.notes, self.problem]
        total = len(self.outputs)
        last = (
            f"{self.failed} of {total} output(s) differ from the stored ones"
            if self.failed
            else f"all {total} output(s) match the stored ones"
        )
        return [*self.notes, *(o.line for o in self.outputs), last]


def run_samples(
    path: str | os.PathLike[str],
    *,
    engine: str | None = None,
    device: str = "auto",
) -> SampleRun:
    """Run the stored samples of one engine and compare them with the stored outputs.

    ``device="auto"`` tries TensorRT-RTX on the GPU. When TensorRT-RTX cannot run the engine here
    (or ``device="cpu"``), the bundle's ONNX source runs with ONNX Runtime instead, and a note
    says so. Prints nothing: the result says what happened (``SampleRun.lines``).
    """

    from ._exceptions import BackendError, FallbackWarning

    try:
        from ._loader import load
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        raise BackendError(
            "running the samples needs torch (the module rtxpack.load returns is a torch "
            "module): pip install 'rtxpack[torch,onnxruntime]'"
        ) from None

    if device == "auto":
        device = "cuda"  # the loader falls back to ONNX Runtime, saying why, if it cannot run
    elif device not in ("cuda", "cpu") and not str(device).startswith("cuda:"):
        raise InvalidArgumentError(f"device {device!r}: expected auto, cuda, cuda:N or cpu")
    with _bundle.open_bundle(path) as b:
        info = b.manifest.engine(engine)
        samples = b.read_samples(info.name)
    if not samples or not samples["inputs"]:
        return SampleRun(
            info.name,
            problem=f"no samples in engine {info.name!r} of {path}: nothing to run. Build the "
            "bundle with samples (`rtxpack build ... --samples random`, or save(..., "
            "samples=...)) to use verify --run",
        )
    if not samples["outputs"]:
        return SampleRun(
            info.name,
            problem=f"engine {info.name!r} of {path} stores sample inputs but no reference "
            "outputs; nothing to compare with",
        )
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module: Any = load(path, engine=info.name, device=device, fallback="onnxruntime")
    for w in caught:
        if issubclass(w.category, FallbackWarning):
            notes.append(f"note: {str(w.message).removeprefix('rtxpack: ')}")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    checks: list[OutputCheck] = []
    try:
        backend = "ONNX Runtime" if module.backend == "onnxruntime" else "TensorRT-RTX"
        notes.append(
            f"running the samples of engine {info.name!r} with {backend} on {module.device}"
        )
        feeds = {k: to_torch(v) for k, v in samples["inputs"].items()}
        feeds = {k: v.to(module.device) for k, v in feeds.items()}
        result = module(**feeds, return_dict=True)
        for name, want in samples["outputs"].items():
            if name not in result:
                checks.append(
                    OutputCheck(name, False, f"FAIL  {name}: the engine has no such output")
                )
                continue
            got = to_numpy(result[name], f"output {name}")
            ok, line = _compare(name, got, want)
            checks.append(OutputCheck(name, ok, line))
    finally:
        module.close()
    return SampleRun(info.name, tuple(checks), tuple(notes))
