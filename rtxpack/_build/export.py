"""Exporting a torch module to ONNX (the dynamo exporter), the first step of building from torch."""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._exceptions import BuildError, InvalidArgumentError
from .._format.manifest import ShapeRange

__all__ = ["export_torch", "torch_input_names"]


def torch_input_names(module: Any, count: int) -> list[str]:
    """The names of the first ``count`` parameters of ``module.forward``."""
    params = [
        p.name
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(params) < count:
        params += [f"input_{i}" for i in range(len(params), count)]
    return params[:count]


def export_torch(
    module: Any,
    inputs: Sequence[Any],
    profiles: list[dict[str, ShapeRange]],
) -> tuple[bytes, list[str]]:
    """Export a torch module to ONNX with the dynamo exporter; returns (model, input names).

    Dimensions whose min and max differ in any profile are exported as dynamic.
    """
    try:
        import torch
    except ImportError:
        raise InvalidArgumentError(
            "a torch.nn.Module source needs torch: pip install 'rtxpack[torch]'"
        ) from None
    if not inputs:
        raise InvalidArgumentError(
            "a torch.nn.Module source needs example inputs: save(module, path, inputs=(x, ...))"
        )
    names = torch_input_names(module, len(inputs))
    dynamic: dict[str, dict[int, Any]] = {}
    for name, example in zip(names, inputs):
        dims: dict[int, Any] = {}
        for prof in profiles:
            rng = prof.get(name)
            if rng is None:
                continue
            if len(rng.min) != example.dim():
                raise InvalidArgumentError(
                    f"shapes[{name!r}] has rank {len(rng.min)}, the example input has rank "
                    f"{example.dim()} (shape {list(example.shape)})"
                )
            for d, (lo, hi) in enumerate(zip(rng.min, rng.max)):
                if lo != hi:
                    lo_all = min(lo, dims[d][0]) if d in dims else lo
                    hi_all = max(hi, dims[d][1]) if d in dims else hi
                    dims[d] = (lo_all, hi_all)
        if dims:
            dynamic[name] = {
                d: torch.export.Dim(f"{name}_dim{d}", min=lo, max=hi)
                for d, (lo, hi) in dims.items()
            }
    module = module.eval()
    with tempfile.TemporaryDirectory(prefix="rtxpack-export-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            program = torch.onnx.export(
                module,
                tuple(inputs),
                None,
                dynamo=True,
                input_names=names,
                dynamic_shapes={n: dynamic.get(n) for n in names} if dynamic else None,
                verbose=False,
            )
            if program is None:
                raise BuildError("torch.onnx.export returned no program")
            program.save(str(path), external_data=False)
        except Exception as exc:
            raise BuildError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
        return path.read_bytes(), names
