"""Sample tensors: bf16 stored natively (safetensors BF16), read back without a cast."""

from __future__ import annotations

import numpy as np
import pytest

from rtxpack import DamagedBundleError, InvalidArgumentError, _tensors


def test_bfloat16_round_trips_through_safetensors() -> None:
    torch = pytest.importorskip("torch")
    t = torch.linspace(-3, 3, 12, dtype=torch.bfloat16).reshape(3, 4)
    arr = _tensors.to_numpy(t, "x")
    assert arr.dtype == _tensors.BFLOAT16
    blob = _tensors.encode({"inputs/x": arr, "outputs/n": np.arange(3, dtype=np.int64)})
    assert b'"BF16"' in blob[:200]  # stored as bf16, not cast to float32
    back = _tensors.decode(blob, "samples")
    assert back["inputs/x"].dtype == _tensors.BFLOAT16
    assert torch.equal(_tensors.to_torch(back["inputs/x"]), t)
    assert back["outputs/n"].tolist() == [0, 1, 2]


def test_safetensors_library_reads_what_we_write() -> None:
    torch = pytest.importorskip("torch")
    import safetensors.torch

    arr = _tensors.to_numpy(torch.ones(2, dtype=torch.bfloat16), "x")
    loaded = safetensors.torch.load(_tensors.encode({"x": arr}))
    assert loaded["x"].dtype == torch.bfloat16


def test_damaged_and_unknown_samples_are_refused() -> None:
    with pytest.raises(DamagedBundleError, match="not valid safetensors"):
        _tensors.decode(b"\xff" * 16, "the samples")
    blob = bytearray(_tensors.encode({"x": np.zeros(2, dtype=np.float32)}))
    blob[blob.index(b"F32") : blob.index(b"F32") + 3] = b"C64"  # a dtype rtxpack does not store
    with pytest.raises(DamagedBundleError):
        _tensors.decode(bytes(blob), "the samples")


def test_objects_are_not_samples() -> None:
    with pytest.raises(InvalidArgumentError, match="cannot be stored"):
        _tensors.to_numpy(np.array([object()]), "samples['x']")
    with pytest.raises(InvalidArgumentError, match="cannot be stored"):
        _tensors.to_numpy(np.zeros(2, dtype=np.complex128), "samples['x']")
