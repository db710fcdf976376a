"""The float32 copy of a bf16 ONNX model that ONNX Runtime runs on the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from rtxpack._backends.session import has_bfloat16, upcast_bfloat16  # noqa: E402


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(16, 8)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(torch.relu(self.fc(x)))
        return h.float().to(torch.bfloat16) * 2  # casts to and from bf16 inside the graph


def test_bf16_model_runs_on_the_cpu_as_a_float32_copy(tmp_path: Path) -> None:
    model = Net().to(torch.bfloat16).eval()
    x = torch.randn(4, 16).to(torch.bfloat16)
    src = tmp_path / "bf16.onnx"
    torch.onnx.export(model, (x,), None, dynamo=True, verbose=False).save(str(src))
    assert has_bfloat16(src)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):  # why the copy exists
        ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    out = tmp_path / "f32.onnx"
    upcast_bfloat16(src, out)
    assert not has_bfloat16(out)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.float().numpy()})
    want = model(x).float().detach().numpy()
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)


def test_float32_model_has_no_bf16(onnx_mlp: Path) -> None:
    assert not has_bfloat16(onnx_mlp)
