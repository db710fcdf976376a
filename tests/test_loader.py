"""rtxpack.load on this CPU-only machine: the real compatibility check, errors and the fallback."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest
import torch

import rtxpack
from rtxpack import CompatibilityError, InvalidArgumentError, RuntimeStrategy
from rtxpack._loader import FallbackWarning, load, resolve_strategy


@pytest.fixture(autouse=True)
def a_machine_without_a_usable_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests describe a machine TensorRT-RTX cannot run on. On a machine with a GPU they
    run too (they used to skip there, on the very machines the loader is for): torch sees no
    CUDA device and the machine probe finds no GPU."""
    if not torch.cuda.is_available():
        return
    from rtxpack._checks import machine

    here = machine.local_target()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(
        machine,
        "local_target",
        lambda: dataclasses.replace(here, compute_capability=None, gpu_name=None),
    )


def test_unsupported_machine_raises_with_the_report(onnx_bundle: Path) -> None:
    with pytest.raises(CompatibilityError) as err:
        load(onnx_bundle)
    text = str(err.value)
    assert "cannot run on this machine" in text
    assert text.count("fallback=") == 1, text  # says what to do, once
    report = err.value.report
    assert report is not None and not report.ok
    for f in report.errors:  # every error finding is in the message
        assert f.message in text


def test_fallback_returns_an_onnxruntime_module_and_says_why(onnx_bundle: Path) -> None:
    with pytest.warns(
        FallbackWarning, match="with ONNX Runtime instead of TensorRT-RTX: .*GPU"
    ) as w:
        module = load(onnx_bundle, fallback="onnxruntime")
    assert "fallback=" not in str(w[0].message)  # no advice to pass what was passed
    assert isinstance(module, torch.nn.Module)
    assert module.backend == "onnxruntime"
    assert module.device == torch.device("cpu")
    assert module(torch.zeros(2, 16)).shape == (2, 8)
    module.close()


def test_cpu_device_means_the_fallback(onnx_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="pass fallback='onnxruntime'"):
        load(onnx_bundle, device="cpu")
    with pytest.warns(FallbackWarning, match="device='cpu'"):
        load(onnx_bundle, device="cpu", fallback="onnxruntime").close()


def test_fallback_needs_the_source(engine_bundle: Path) -> None:
    with (
        warnings.catch_warnings(),
        pytest.raises(CompatibilityError, match="built without it: rebuild it without --no-source"),
    ):
        warnings.simplefilter("error")  # no fallback warning when there is no fallback
        load(engine_bundle, fallback="onnxruntime")


@pytest.mark.parametrize("fallback", [None, "onnxruntime"])
def test_a_copy_without_its_source_never_offers_the_fallback(
    onnx_bundle: Path, tmp_path: Path, fallback: str | None
) -> None:
    # A bundle pulled without --source (or after drop-source) still names its source's digest:
    # the advice is to get a copy with the source, never to pass a fallback that cannot run.
    lean = tmp_path / "lean.rtxpack"
    rtxpack.drop_source(onnx_bundle, output=lean)
    with pytest.raises(CompatibilityError) as caught:
        load(lean, fallback=fallback)
    message = str(caught.value)
    assert "pass fallback=" not in message
    assert "rtxpack pull --source" in message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fallback": "tensorflow"}, "fallback 'tensorflow': expected None or one of"),
        ({"device": "tpu"}, "device 'tpu'"),
        ({"strategy": {"cuda_graphs": "on"}}, "unknown settings ['cuda_graphs']"),
        ({"strategy": {"cuda_graph_strategy": "sometimes"}}, "cuda_graph_strategy: got"),
        ({"strategy": 3}, "expected an rtxpack.RuntimeStrategy or a dict"),
        # an int key beside a str one was a raw TypeError (sorting the unknown keys)
        ({"strategy": {0: "x", "y": 1}}, "strategy: a key of type int (0); expected str keys"),
        ({"engine": "decoder"}, "no engine named 'decoder'"),
        ({"runtime_cache": 5}, "runtime_cache 5"),
    ],
)
def test_bad_arguments_are_invalid_argument_errors(
    onnx_bundle: Path, kwargs: dict, message: str
) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        load(onnx_bundle, **kwargs)
    assert message in str(err.value)


def test_missing_or_foreign_file_is_an_rtxpack_error(tmp_path: Path) -> None:
    with pytest.raises(rtxpack.RtxpackError):
        load(tmp_path / "nope.rtxpack", fallback="onnxruntime")
    junk = tmp_path / "junk.rtxpack"
    junk.write_bytes(b"not a bundle at all" * 10)
    with pytest.raises(rtxpack.RtxpackError):
        load(junk, fallback="onnxruntime")


def test_strategy_overrides() -> None:
    recorded = RuntimeStrategy("eager", "whole_graph_capture", "static")
    assert resolve_strategy(recorded, None) is recorded
    changed = resolve_strategy(recorded, {"cuda_graph_strategy": "disabled"})
    assert changed == RuntimeStrategy("eager", "disabled", "static")
    replaced = RuntimeStrategy()
    assert resolve_strategy(recorded, replaced) is replaced


def test_rebuild_true_rebuilds_an_engine_of_another_release_and_loads_that(
    tmp_path: Path, onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load(..., rebuild=True) on a machine with a supported GPU (described to the check; the
    final TensorRT-RTX load is replaced, since no GPU here can run an engine)."""
    from dataclasses import replace

    import tensorrt_rtx

    from rtxpack import Target, _loader
    from rtxpack._checks import machine, validity
    from rtxpack._format import container

    old = tmp_path / "old.rtxpack"
    src = container.BundleFile(onnx_bundle)
    with container.atomic_output(old) as f:
        w = container.BundleWriter(f)
        for s in src.manifest.sections:
            w.copy_section(src, s)
        engines = tuple(replace(e, trt_version="1.6.0.0") for e in src.manifest.engines)
        w.finish(replace(src.manifest, sections=tuple(w.sections), engines=engines))
    src.close()
    here = Target(
        trt_version=tensorrt_rtx.__version__,
        compute_capability="8.9",
        driver_version="580.65",
        os="linux",
        gpu_name="NVIDIA GeForce RTX 4090",
        platform="linux_x86_64",
    )
    monkeypatch.setattr(machine, "local_target", lambda: here)
    monkeypatch.setattr(validity, "runtime_findings", lambda bundle, engines: [])
    monkeypatch.setenv("RTXPACK_CACHE_DIR", str(tmp_path / "cache"))
    loaded: list[Path] = []
    monkeypatch.setattr(
        _loader, "_load_tensorrt", lambda bundle, info, *a: loaded.append(bundle.path) or "module"
    )

    with pytest.raises(CompatibilityError, match=r"1\.6\.0\.0"):
        load(old)  # without rebuild=True: refused, and the message names the release
    with pytest.warns(rtxpack.RebuildWarning, match="rebuilding engine 'main'"):
        assert load(old, rebuild=True) == "module"
    assert len(loaded) == 1 and loaded[0].parent == tmp_path / "cache" / "rebuilt"
    with rtxpack.open(loaded[0]) as b:
        assert b.manifest.engine().trt_version == tensorrt_rtx.__version__
        assert b.read_source() is not None
    # Found in issue 8: with cache_dir=X the rebuilt bundle went to $RTXPACK_CACHE_DIR (or the
    # platform folder) instead of under X, where the runtime caches of that load go.
    mine = tmp_path / "mine"
    with pytest.warns(rtxpack.RebuildWarning):
        assert load(old, rebuild=True, cache_dir=mine) == "module"
    assert loaded[1].parent == mine / "rebuilt"
