"""docs/walkthrough.md, step by step, with a small model of the same shape (width 64, depth 2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import rtxpack
from rtxpack.cli import main

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


class Block(torch.nn.Module):
    def __init__(self, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(depth))
        self.head = torch.nn.Linear(width, 10)

    def forward(self, tokens: Any, mask: Any = None) -> dict[str, Any]:
        h = tokens if mask is None else tokens * mask
        for layer in self.layers:
            h = torch.relu(layer(h))
        return {"logits": self.head(h), "hidden": h}


def test_the_walkthrough_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    w = 64
    model = Block().to(torch.float16).eval()
    tokens = torch.randn(1, 77, w, dtype=torch.float16)
    mask = torch.ones(1, 77, 1, dtype=torch.float16)
    shapes = [
        {
            "tokens": ((1, 1, w), (1, 77, w), (1, 77, w)),
            "mask": ((1, 1, 1), (1, 77, 1), (1, 77, 1)),
        },
        {
            "tokens": ((1, 78, w), (1, 256, w), (1, 512, w)),
            "mask": ((1, 78, 1), (1, 256, 1), (1, 512, 1)),
        },
    ]
    linux = rtxpack.save(
        model,
        tmp_path / "block-linux.rtxpack",
        inputs=(tokens,),
        kwarg_inputs={"mask": mask},
        shapes=shapes,
        samples=True,
        progress=print,
    )
    windows = rtxpack.save(
        model,
        tmp_path / "block-windows.rtxpack",
        inputs=(tokens,),
        kwarg_inputs={"mask": mask},
        shapes=shapes,
        platform="windows",
    )
    capsys.readouterr()
    assert main(["inspect", str(windows)]) == 0
    text = capsys.readouterr().out
    assert "windows_x86_64" in text and "returns   {'logits': logits, 'hidden': hidden}" in text
    assert (
        main(["check", str(windows), "--os", "windows", "--cc", "8.9", "--driver", "580.65"]) == 0
    )
    assert main(["verify", "--run", "--device", "cpu", str(linux)]) == 0
    assert main(["drop-source", str(windows)]) == 0
    with pytest.warns(rtxpack.FallbackWarning):
        module = rtxpack.load(linux, device="cpu", fallback="onnxruntime")
    out = module(tokens, mask=mask)
    assert set(out) == {"logits", "hidden"}
    with torch.no_grad():
        torch.testing.assert_close(
            out["logits"], model(tokens, mask=mask)["logits"], rtol=1e-2, atol=1e-2
        )
