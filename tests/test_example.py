"""The README's main job: the quickstart runs end to end on this CPU-only machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import rtxpack

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_builds_inspects_verifies_and_runs(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "digests match" in proc.stdout
    assert "all 1 output(s) match the stored ones" in proc.stdout
    bundle = tmp_path / "small_cnn.rtxpack"
    with rtxpack.open(bundle) as b:
        info = b.engines["main"]
        assert info.strategy.dynamic_shapes_kernel_specialization_strategy.value == "eager"
        assert info.strategy.cuda_graph_strategy.value == "whole_graph_capture"
        assert info.inputs[0].name == "image" and info.inputs[0].shape == (-1, 3, 64, 64)
        assert b.read_source() is not None and b.read_samples() is not None


def test_import_rtxpack_does_not_import_torch() -> None:
    """torch is an optional extra: inspecting or checking bundles must work without it."""
    code = "import sys, rtxpack; rtxpack.inspect; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
