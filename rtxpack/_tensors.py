"""Sample tensors: numpy <-> torch <-> safetensors, bfloat16 included.

numpy has no bfloat16; ``ml_dtypes`` (the dtype library of JAX and ONNX) adds one, so a bf16 sample
is stored natively (safetensors ``BF16``) and read back as an ``ml_dtypes.bfloat16`` array, never
cast. ``safetensors.numpy.load`` does not know BF16, so ``decode`` maps the dtypes itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_dtypes
import numpy as np

from ._exceptions import DamagedBundleError, InvalidArgumentError

__all__ = ["BFLOAT16", "decode", "encode", "to_numpy", "to_torch"]

BFLOAT16 = np.dtype(ml_dtypes.bfloat16)

_DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": BFLOAT16,
    "I64": np.dtype(np.int64),
    "U64": np.dtype(np.uint64),
    "I32": np.dtype(np.int32),
    "U32": np.dtype(np.uint32),
    "I16": np.dtype(np.int16),
    "U16": np.dtype(np.uint16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}


def to_numpy(value: Any, what: str) -> np.ndarray:
    """A contiguous numpy array from a torch tensor (bf16 as ``ml_dtypes.bfloat16``) or an
    array-like of numbers."""
    if hasattr(value, "detach"):  # a torch.Tensor
        import torch

        t = value.detach().cpu().resolve_conj().resolve_neg().contiguous()
        if t.dtype == torch.bfloat16:
            return np.ascontiguousarray(t.view(torch.int16).numpy().view(BFLOAT16))
        try:
            value = t.numpy()
        except TypeError as exc:
            raise InvalidArgumentError(
                f"{what}: dtype {t.dtype} cannot be stored ({exc})"
            ) from None
    arr = np.ascontiguousarray(value)
    if arr.dtype == object or arr.dtype not in _DTYPES.values():
        raise InvalidArgumentError(
            f"{what}: dtype {arr.dtype} cannot be stored as a sample; expected one of "
            + ", ".join(sorted({d.name for d in _DTYPES.values()}))
        )
    return arr


def to_torch(arr: np.ndarray) -> Any:
    """A torch tensor sharing ``arr``'s memory (bf16 arrays become torch.bfloat16)."""
    import torch

    if not arr.flags.writeable:  # torch tensors are writable; never alias read-only memory
        arr = arr.copy()
    arr = np.ascontiguousarray(arr)
    if arr.dtype == BFLOAT16:
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr)


def encode(tensors: Mapping[str, np.ndarray]) -> bytes:
    """safetensors bytes of ``tensors`` (bf16 stored as BF16)."""
    import safetensors.numpy

    return safetensors.numpy.save(dict(tensors))


def decode(blob: bytes | memoryview, what: str) -> dict[str, np.ndarray]:
    """The tensors of safetensors bytes read from a bundle; a bad file is ``DamagedBundleError``."""
    from safetensors import deserialize

    try:
        entries = deserialize(bytes(blob))  # type: ignore[no-untyped-call]
    except Exception as exc:
        raise DamagedBundleError(f"{what} are not valid safetensors ({exc})") from None
    out: dict[str, np.ndarray] = {}
    for name, entry in entries:
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise DamagedBundleError(
                f"{what}: tensor {name!r} has dtype {entry['dtype']}, which rtxpack does not store"
            )
        shape = tuple(entry["shape"])
        data = entry["data"]
        if len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise DamagedBundleError(f"{what}: tensor {name!r} has the wrong number of bytes")
        out[name] = np.frombuffer(bytes(data), dtype=dtype).reshape(shape)
    return out
