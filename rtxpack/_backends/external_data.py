"""Nothing outside the bundle is read: the guard on ONNX "external data" references.

An ONNX tensor can keep its bytes in another file (``data_location: EXTERNAL`` with a
``location`` relative to the model, or absolute). ONNX Runtime and TensorRT-RTX's parser read
such files when they load a model: from the current folder when the model is given as bytes. A
hostile bundle's source could so make the ONNX Runtime fallback read any local file and return
its bytes as model output. Every consumer of a bundle's source calls ``refuse_outside_data``
first; references are only allowed to the files the caller itself put beside the model (taken
from the bundle), by exact name.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from .._exceptions import BackendError, DamagedBundleError

__all__ = ["external_data_locations", "refuse_outside_data"]

_EXTERNAL = 1  # onnx.TensorProto.EXTERNAL


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of a graph and of its subgraphs: initializers, sparse initializers,
    and tensor-valued node attributes (Constant values, for instance)."""
    stack = [graph]
    while stack:
        g = stack.pop()
        yield from g.initializer
        for sparse in g.sparse_initializer:
            yield sparse.values
            yield sparse.indices
        for node in g.node:
            yield from _attribute_tensors(node, stack)


def _attribute_tensors(node: Any, graphs: list[Any]) -> Iterator[Any]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        for sparse in attr.sparse_tensors:
            yield sparse.values
            yield sparse.indices
        if attr.HasField("g"):
            graphs.append(attr.g)
        graphs.extend(attr.graphs)


def external_data_locations(model: Any) -> list[str]:
    """The ``location`` of every tensor of ``model`` (an ``onnx.ModelProto``) whose data lives
    in another file, including those of subgraphs and model-local functions."""
    tensors = list(_tensors(model.graph))
    for function in model.functions:
        graphs: list[Any] = []
        for node in function.node:
            tensors.extend(_attribute_tensors(node, graphs))
        for g in graphs:
            tensors.extend(_tensors(g))
    out = []
    for tensor in tensors:
        if tensor.data_location == _EXTERNAL or len(tensor.external_data):
            entries = {e.key: e.value for e in tensor.external_data}
            out.append(entries.get("location", ""))
    return out


def refuse_outside_data(
    onnx_model: bytes | bytearray | memoryview, *, what: str, allowed: Collection[str] = ()
) -> None:
    """Raise ``DamagedBundleError`` if the model refers to external data other than the files
    named in ``allowed`` (exact names, beside the model, put there by the caller)."""
    try:
        import onnx
    except ImportError:
        raise BackendError(
            f"checking {what} before running it needs the onnx package: pip install onnx"
        ) from None
    try:
        model = onnx.ModelProto.FromString(bytes(onnx_model))
    except Exception as exc:  # protobuf's DecodeError, and friends
        raise DamagedBundleError(f"{what} is not a valid ONNX model ({exc})") from None
    outside = sorted({loc for loc in external_data_locations(model) if loc not in allowed})
    if outside:
        shown = ", ".join(repr(loc[:80]) for loc in outside[:3])
        raise DamagedBundleError(
            f"{what} refers to external data outside the bundle ({shown}); rtxpack never reads "
            "files outside a bundle — the bundle is damaged or hostile: rebuild it from a model "
            "whose weights are stored in it"
        )
