"""A float32 copy of a bfloat16 ONNX model, for ONNX Runtime on the CPU.

ONNX Runtime's CPU provider has no bfloat16 kernels for most operators (MatMul, Gemm, Conv...), so
the fallback runs a copy where every bfloat16 tensor type, initializer, constant and cast target is
float32. It computes in higher precision than the model does, so results agree with the bf16 model
to bf16's precision, not bit for bit (``_samples.TOLERANCES`` has a bf16 tolerance to match).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["has_bfloat16", "upcast_bfloat16"]

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
