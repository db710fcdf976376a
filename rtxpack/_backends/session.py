"""ONNX Runtime sessions on a model source (no torch needed), and the float32 copy of a bf16 model.

ONNX Runtime's CPU provider has no bfloat16 kernels for most operators (MatMul, Gemm, Conv...), so
the fallback runs a copy where every bfloat16 tensor type, initializer, constant and cast target is
float32. It computes in higher precision than the model does, so results agree with the bf16 model
to bf16's precision, not bit for bit (``_samples.TOLERANCES`` has a bf16 tolerance to match).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._exceptions import BackendError
from .._tensors import BFLOAT16

__all__ = ["has_bfloat16", "open_session", "run_onnx", "upcast_bfloat16"]

#: Attributes that name an element type (Cast.to, RandomNormal.dtype, EyeLike.dtype, ...).
_TYPE_ATTRIBUTES = ("to", "dtype", "output_dtype")
#: Above this, the copy keeps its weights in an external data file.
_INLINE_LIMIT = 1024 * 1024 * 1024


def _graphs(model: Any) -> list[Any]:
    import onnx_ir as ir

    graphs = [model.graph]
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                graphs.append(attr.value)
            elif attr.type == ir.AttributeType.GRAPHS:
                graphs.extend(attr.value)
    return graphs


def has_bfloat16(graph_path: Path) -> bool:
    """Whether the model's inputs, outputs or initializers are bfloat16 (reads the graph only)."""
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    bf16 = onnx.TensorProto.BFLOAT16
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    return any(v.type.tensor_type.elem_type == bf16 for v in values) or any(
        t.data_type == bf16 for t in model.graph.initializer
    )


def upcast_bfloat16(graph_path: Path, out_path: Path) -> None:
    """Write a float32 copy of the model at ``graph_path`` to ``out_path`` (its weights in
    ``<name>.data`` beside it when they are large)."""
    import numpy as np
    import onnx_ir as ir

    bf16, f32 = ir.DataType.BFLOAT16, ir.DataType.FLOAT
    model = ir.load(str(graph_path))

    def fix(value: Any) -> None:
        if value.dtype == bf16:
            value.dtype = f32

    def f32_tensor(tensor: Any, name: str | None) -> Any:
        return ir.tensor(tensor.numpy().astype(np.float32), name=name)

    total = 0
    for graph in _graphs(model):
        for value in [*graph.inputs, *graph.outputs]:
            fix(value)
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is not None and tensor.dtype == bf16:
                value.const_value = f32_tensor(tensor, value.name)
            fix(value)
            total += value.const_value.nbytes if value.const_value is not None else 0
        for node in graph:
            for value in node.outputs:
                fix(value)
            for name, attr in list(node.attributes.items()):
                if attr.type == ir.AttributeType.INT and name in _TYPE_ATTRIBUTES:
                    if attr.value == bf16.value:
                        node.attributes[name] = ir.AttrInt64(name, f32.value)
                elif attr.type == ir.AttributeType.TENSOR and attr.value.dtype == bf16:
                    node.attributes[name] = ir.AttrTensor(name, f32_tensor(attr.value, None))
    external = f"{out_path.name}.data" if total > _INLINE_LIMIT else None
    ir.save(model, str(out_path), external_data=external)


def onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(
            "running an ONNX source needs onnxruntime: pip install 'rtxpack[onnxruntime]' "
            "(or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def open_session(graph: Path, providers: Sequence[Any], workdir: Path) -> tuple[Any, bool]:
    """An ONNX Runtime session on the model at ``graph``, and whether it runs a float32 copy
    (written into ``workdir``) because the model is bf16 and only the CPU provider is used."""
    ort = onnxruntime()
    upcast = has_bfloat16(graph) and all(
        (p if isinstance(p, str) else p[0]) == "CPUExecutionProvider" for p in providers
    )
    path = graph
    if upcast:
        path = workdir / "model.f32.onnx"
        upcast_bfloat16(graph, path)
    return ort.InferenceSession(str(path), providers=list(providers)), upcast


def run_onnx(
    graph: Path, feeds: Mapping[str, np.ndarray], output_dtypes: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Run the model at ``graph`` once on the CPU; outputs by name, in ``output_dtypes``' dtypes
    (a bf16 model runs as its float32 copy; its outputs are rounded back to bf16)."""
    with tempfile.TemporaryDirectory(prefix="rtxpack-ort-") as tmp:
        session, upcast = open_session(graph, ["CPUExecutionProvider"], Path(tmp))
        inputs = {
            k: v.astype(np.float32) if upcast and v.dtype == BFLOAT16 else v
            for k, v in feeds.items()
        }
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, inputs)
        del session
    out = {}
    for name, value in zip(names, results):
        arr = np.asarray(value)
        if upcast and output_dtypes.get(name) == "bfloat16":
            arr = arr.astype(BFLOAT16)
        out[name] = arr
    return out
