"""Real TensorRT-RTX execution: runs only on a GPU TensorRT-RTX supports; skipped elsewhere.

No machine in this project has such a GPU (the only GPUs at hand are H100/H200, compute
capability 9.0, which TensorRT-RTX refuses), so these tests have NOT run here. They are what to
run first on an RTX machine: ``python -m pytest -q -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyNet as Net

import rtxpack
from rtxpack._exceptions import FallbackWarning
from rtxpack._facts import supports_cc
from rtxpack._loader import load


def _skip_reason() -> str | None:
    if not torch.cuda.is_available():
        return (
            "needs a GPU TensorRT-RTX supports (compute capability 7.5/8.x/12.x); "
            "this machine has none (torch sees no CUDA device)"
        )
    from rtxpack._checks import machine

    here = machine.local_target()
    if here.compute_capability is None or not supports_cc(here.compute_capability):
        return (
            "needs a GPU TensorRT-RTX supports (compute capability 7.5/8.x/12.x); this machine "
            f"has {here.gpu_name or 'an unknown GPU'} (compute capability "
            f"{here.compute_capability or 'unknown'})"
        )
    return None


REASON = _skip_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


SHAPES = {"x": ((1, 16), (4, 16), (32, 16))}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "net.rtxpack"
    rtxpack.save(Net().eval(), path, inputs=(torch.randn(4, 16),), shapes=SHAPES)
    return path


def _ort_reference(bundle: Path, x: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FallbackWarning)
        with load(bundle, device="cpu", fallback="onnxruntime") as ref:
            return ref(x.cpu())


def test_load_runs_and_matches_onnxruntime(bundle: Path, tmp_path: Path) -> None:
    x = torch.randn(5, 16, device="cuda")
    with load(bundle, runtime_cache=tmp_path / "c.cache") as module:
        assert module.backend == "tensorrt_rtx"
        y = module(x)
        torch.cuda.synchronize()
    torch.testing.assert_close(y.cpu(), _ort_reference(bundle, x), rtol=1e-3, atol=1e-3)
    assert (tmp_path / "c.cache").is_file()  # the runtime cache was persisted on close


def test_repeated_calls_reuse_outputs_and_new_shapes_work(bundle: Path) -> None:
    with load(bundle, runtime_cache=None) as module:
        a = module(torch.randn(4, 16, device="cuda"))
        b = module(torch.randn(4, 16, device="cuda"))
        assert a.data_ptr() == b.data_ptr()
        for batch in (1, 17, 32):
            x = torch.randn(batch, 16, device="cuda")
            got = module(x)
            torch.cuda.synchronize()
            torch.testing.assert_close(got.cpu(), _ort_reference(bundle, x), rtol=1e-3, atol=1e-3)


def test_native_cuda_graphs_and_an_outer_capture(bundle: Path) -> None:
    strategy = {
        "cuda_graph_strategy": "whole_graph_capture",
        "dynamic_shapes_kernel_specialization_strategy": "eager",
    }
    stream = torch.cuda.Stream()
    with load(bundle, strategy=strategy, runtime_cache=None) as module, torch.cuda.stream(stream):
        x = torch.randn(8, 16, device="cuda")
        for _ in range(3):  # first call runs, second captures, third replays (natively)
            y = module(x)
        stream.synchronize()
        want = _ort_reference(bundle, x)
        torch.testing.assert_close(y.cpu(), want, rtol=1e-3, atol=1e-3)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # detected: native capture is switched off inside
            out = module(x)
        assert module.strategy.cuda_graph_strategy == rtxpack.CudaGraphStrategy.DISABLED
        graph.replay()
        torch.cuda.synchronize()
        np.testing.assert_allclose(out.cpu().numpy(), want.numpy(), rtol=1e-3, atol=1e-3)


def test_outer_capture_after_explicit_switch(bundle: Path) -> None:
    strategy = {"cuda_graph_strategy": "whole_graph_capture"}
    with load(bundle, strategy=strategy, runtime_cache=None) as module:
        module.disable_native_cuda_graphs()
        x = torch.randn(8, 16, device="cuda")
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            module(x)  # warm up outside the capture, as torch.cuda.graph recommends
        side.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = module(x)
        x.copy_(torch.randn(8, 16, device="cuda"))
        graph.replay()
        torch.cuda.synchronize()
        want = _ort_reference(bundle, x)
        np.testing.assert_allclose(out.cpu().numpy(), want.numpy(), rtol=1e-3, atol=1e-3)


def test_verify_run_uses_tensorrt_rtx(bundle: Path) -> None:
    from rtxpack._samples import run_samples

    run = run_samples(bundle)
    assert run.ok
    assert "with TensorRT-RTX" in "\n".join(run.lines())
