"""``rtxpack build`` says what the API can: several profiles, samples, platform, builder options,
usage errors exit 2 before any work; ``drop-source``; progress and the TensorRT-RTX log."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtxpack
from rtxpack.cli import main

pytest.importorskip("onnxruntime")


def _build(onnx_mlp: Path, out: Path, *extra: str) -> int:
    return main(["build", str(onnx_mlp), "-o", str(out), *extra])


def test_several_profiles_samples_and_verify_run(
    tmp_path: Path, onnx_mlp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.rtxpack"
    argv = ["--shape", "x=1x16:2x16:4x16", "--profile", "--shape", "x=5x16:8x16:16x16"]
    assert _build(onnx_mlp, out, *argv, "--samples", "random", "-q") == 0
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        assert [p["x"].max for p in info.profiles] == [(4, 16), (16, 16)]
        samples = b.read_samples()
        assert samples is not None and samples["inputs"]["x"].shape == (2, 16)  # opt of profile 0
        assert set(samples["outputs"]) == {"y"}  # computed by ONNX Runtime on the source
    assert main(["verify", "--run", "--device", "cpu", str(out)]) == 0
    assert "all 1 output(s) match" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["npz", "safetensors"])
def test_samples_from_a_file(tmp_path: Path, onnx_mlp: Path, kind: str) -> None:
    x = np.random.default_rng(5).standard_normal((3, 16)).astype(np.float32)
    path = tmp_path / f"s.{kind}"
    if kind == "npz":
        np.savez(path, x=x)
    else:
        from rtxpack._tensors import encode

        path.write_bytes(encode({"x": x}))
    out = tmp_path / "s.rtxpack"
    assert _build(onnx_mlp, out, "--shape", "x=1x16:4x16:8x16", "--samples", str(path)) == 0
    with rtxpack.open(out) as b:
        samples = b.read_samples()
        assert samples is not None
        np.testing.assert_array_equal(samples["inputs"]["x"], x)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.ones((3, 16), np.float64)}, "has dtype float64, the input takes float32"),
        ({"x": np.ones((20, 16), np.float32)}, r"shape \[20, 16\], outside"),
        ({"x": np.ones((16,), np.float32)}, r"shape \[16\], outside"),
        ({}, "samples\\['x'\\] is missing"),
    ],
)
def test_samples_that_do_not_fit_the_engine_are_refused(
    tmp_path: Path,
    onnx_mlp: Path,
    capsys: pytest.CaptureFixture[str],
    arrays: dict[str, Any],
    message: str,
) -> None:
    # A shape outside every profile used to be stored (verify --run could never pass on a GPU);
    # a wrong dtype, rank or a missing input was onnxruntime's raw exception.
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    out = tmp_path / "s.rtxpack"
    assert _build(onnx_mlp, out, "--shape", "x=1x16:4x16:8x16", "--samples", str(path)) == 1
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shape", "x=1x16:4x16:8x16", "--shape", "x=1x16"], "'x' given twice in profile 0"),
        (["--shape", "x=1y16"], "is not a shape"),
        (["--shape", "x"], "expected NAME=MIN:OPT:MAX"),
        (["--cc", "9.0"], "not a TensorRT-RTX target"),
        (["--platform", "macos"], "invalid choice"),
        (["--max-aux-streams", "-1"], "from 0 to 64"),
        (["--weight-streaming-budget", "lots"], "whole number"),
        (["--shape", "x=1x16:4x16:8x16", "--profile"], "starts profile 1 but no --shape"),
        # A lone --profile, and an empty group between two --profile, were silently dropped.
        (["--profile"], "starts profile 0 but no --shape"),
        (["--profile", "--profile", "--shape", "x=1x16:4x16:8x16"], "starts profile 0 but no"),
        (["--shape", "x=1x16", "--profile", "--profile", "--shape", "x=2x16"], "profile 1 but"),
    ],
)
def test_usage_errors_exit_2_before_any_work(
    tmp_path: Path,
    onnx_mlp: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setattr("rtxpack._save.save", lambda *a, **k: pytest.fail("built anyway"))
    try:
        status = _build(onnx_mlp, tmp_path / "o.rtxpack", *argv)
    except SystemExit as exc:
        status = int(exc.code or 0)
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.rtxpack").exists()


def test_an_empty_profile_is_one_line_naming_the_flag(
    tmp_path: Path, onnx_mlp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _build(onnx_mlp, tmp_path / "o.rtxpack", "--profile", "--profile") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rtxpack build: error: --profile ")
    assert "remove the extra --profile" in err


def test_a_leading_profile_starts_the_first_profile(tmp_path: Path, onnx_mlp: Path) -> None:
    out = tmp_path / "p.rtxpack"
    argv = ["--profile", "--shape", "x=1x16:2x16:4x16", "--profile", "--shape", "x=5x16:8x16:8x16"]
    assert _build(onnx_mlp, out, *argv, "-q") == 0
    with rtxpack.open(out) as b:
        assert [p["x"].max for p in b.manifest.engine().profiles] == [(4, 16), (8, 16)]


def test_platform_and_builder_options_show_in_inspect(
    tmp_path: Path, onnx_mlp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "w.rtxpack"
    argv = ["--shape", "x=1x16:4x16:8x16", "--platform", "windows", "--weight-streaming"]
    argv += ["--tiling-optimization-level", "moderate", "--max-aux-streams", "2"]
    argv += ["--weight-streaming-budget", "auto", "-q"]
    assert _build(onnx_mlp, out, *argv) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "windows_x86_64" in text
    assert "weight streaming: yes | tiling: moderate | aux streams: 2" in text
    assert "weight streaming budget: auto" in text
    assert "ONNX graph" in text and "drop-source" in text


def test_drop_source_keeps_the_engine_and_the_digest(
    tmp_path: Path, onnx_mlp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "d.rtxpack"
    assert _build(onnx_mlp, out, "--shape", "x=1x16:4x16:8x16", "-q") == 0
    with rtxpack.open(out) as b:
        before = b.manifest.engine()
        engine = bytes(b.read_engine())
    assert main(["drop-source", str(out)]) == 0
    assert "without the ONNX source" in capsys.readouterr().out
    with rtxpack.open(out) as b:
        after = b.manifest.engine()
        assert after.source is None and after.source_data == ()
        assert after.source_digest == before.source_digest
        assert bytes(b.read_engine()) == engine
        assert {s.kind for s in b.manifest.sections} == {"engine"}
        b.verify()


def test_progress_is_quiet_off_a_terminal_and_v_shows_the_tensorrt_log(
    tmp_path: Path, onnx_mlp: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert _build(onnx_mlp, tmp_path / "a.rtxpack", "--shape", "x=1x16:4x16:8x16") == 0
    assert capfd.readouterr().err == ""  # stderr is not a terminal here: no bars, no lines
    assert _build(onnx_mlp, tmp_path / "b.rtxpack", "--shape", "x=1x16:4x16:8x16", "-v") == 0
    assert "tensorrt_rtx INFO:" in capfd.readouterr().err


def test_terminal_progress_draws_tensorrt_phases() -> None:
    import io

    from rich.console import Console

    from rtxpack.cli._progress import TerminalProgress

    buffer = io.StringIO()
    bars: Any = TerminalProgress(Console(file=buffer, force_terminal=True, width=100))
    with bars:
        bars.phase_start("Building engine", None, 3)
        bars.phase_start("Compiling", "Building engine", 0)
        bars.step("Building engine", 0)
        bars.message("main: writing the engine")
        bars.phase_finish("Compiling")
        bars.phase_finish("Building engine")
    assert "main: writing the engine" in buffer.getvalue()


def test_verify_run_without_torch_says_what_to_install(
    onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `pip install rtxpack` (no extras) has no torch: one line saying what to install, not a
    # ModuleNotFoundError traceback
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "rtxpack._loader", raising=False)
    assert main(["verify", "--run", str(onnx_bundle)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtxpack: error: running the samples needs torch")
    assert "pip install 'rtxpack[torch,onnxruntime]'" in err and err.count("\n") == 1
