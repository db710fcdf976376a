"""An exported ONNX model with its weights split out, without copying them.

torch's exporter gives an ``onnx_ir.Model`` whose initializers wrap the module's own tensors. Here
the graph is serialized with every large initializer turned into an external-data reference to one
data file (``model.onnx.data``), laid out by ``SplitModel``; the data file's bytes are produced
from the tensors' memory as a stream (straight into a bundle section), and TensorRT-RTX's parser
gets the same memory through ``OnnxParser.load_initializer``. So a model of N bytes of weights is
held once (by its module), never serialized whole, and never written to a temporary file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["DATA_NAME", "SplitModel", "split_model"]

#: The one external data file of an exported model (its section name in a bundle).
DATA_NAME = "model.onnx.data"
#: Initializers smaller than this stay inline in the graph.
_INLINE_BELOW = 1024
#: Offsets of tensors in the data file are multiples of this (what onnx_ir and ONNX Runtime use).
_ALIGN = 4096


def _memory(tensor: Any) -> Any:
    """A read-only byte view of an initializer's data, without a copy when it wraps torch memory,
    and the object that must stay alive while the view is used."""
    raw = getattr(tensor, "raw", None)
    try:
        import torch

        if isinstance(raw, torch.Tensor):
            t = raw.detach().contiguous()
            if t.device.type != "cpu":
                t = t.cpu()
            if t.numel() == 0:
                return memoryview(b""), t
            data: Any = t.view(-1).view(torch.uint8).numpy()
            return memoryview(data), t
    except ImportError:  # pragma: no cover - the exporter needs torch
        pass
    data = tensor.tobytes()
    return memoryview(data), data


@dataclass
class SplitModel:
    """``graph``: the serialized ModelProto; ``layout``: (initializer name, offset, view) for each
    tensor of the data file, in file order; ``data_size``: the data file's length."""

    graph: bytes
    layout: list[tuple[str, int, memoryview]]
    data_size: int
    keep: list[Any]

    def data_chunks(self, chunk: int = 8 * 1024 * 1024) -> Iterator[memoryview | bytes]:
        """The data file's bytes, tensor by tensor (zero padding between), in bounded chunks."""
        pos = 0
        for _, offset, view in self.layout:
            if offset > pos:
                yield bytes(offset - pos)
            for i in range(0, len(view), chunk):
                yield view[i : i + chunk]
            pos = offset + len(view)
        if self.data_size > pos:
            yield bytes(self.data_size - pos)

    def load_into(self, parser: Any) -> None:
        """Give every external initializer's memory to a TensorRT-RTX ``OnnxParser`` after
        ``load_model_proto`` (the parser then reads no file)."""
        for name, _, view in self.layout:
            address = _address(view)
            if not parser.load_initializer(name, address, len(view)):
                raise RuntimeError(f"TensorRT-RTX refused initializer {name!r}")


def _address(view: memoryview) -> int:
    import ctypes

    if len(view) == 0:
        return 0
    if view.readonly:
        # ctypes needs a writable buffer to take an address; numpy gives one for read-only views.
        import numpy as np

        return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def split_model(model: Any) -> SplitModel:
    """Serialize ``model`` (an ``onnx_ir.Model``) with its large initializers as external data in
    ``DATA_NAME``; the model is left as it was."""
    import onnx_ir as ir

    layout: list[tuple[str, int, memoryview]] = []
    keep: list[Any] = []
    replaced: list[tuple[Any, Any]] = []
    pos = 0
    try:
        for value in model.graph.initializers.values():
            tensor = value.const_value
            if tensor is None or tensor.nbytes < _INLINE_BELOW:
                continue
            view, owner = _memory(tensor)
            keep.append(owner)
            pos += -pos % _ALIGN
            layout.append((value.name, pos, view))
            external = ir.ExternalTensor(
                DATA_NAME,
                pos,
                len(view),
                tensor.dtype,
                shape=tensor.shape,
                name=value.name,
            )
            replaced.append((value, tensor))
            value.const_value = external
            pos += len(view)
        proto = ir.to_proto(model)
        graph = proto.SerializeToString()
    finally:
        for value, tensor in replaced:
            value.const_value = tensor
    return SplitModel(graph=graph, layout=layout, data_size=pos, keep=keep)
