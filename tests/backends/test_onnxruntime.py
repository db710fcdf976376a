"""The ONNX Runtime backend end to end on this CPU machine, against torch's own outputs."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TinyNet as Net

import rtxpack
from rtxpack import TensorMismatchError, _samples
from rtxpack._loader import load
from rtxpack._samples import run_samples


class TwoHeads(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.a = torch.nn.Linear(16, 4)
        self.b = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.relu(self.a(x)), torch.sigmoid(self.b(x))


SHAPES = {"x": ((1, 16), (4, 16), (32, 16))}


@pytest.fixture(scope="module")
def torch_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    net = Net().eval()
    path = tmp_path_factory.mktemp("ort") / "net.rtxpack"
    rtxpack.save(net, path, inputs=(torch.randn(4, 16),), shapes=SHAPES)
    return path, net


def quiet_load(path: Path, **kwargs: object) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rtxpack._loader.FallbackWarning)
        return load(path, fallback="onnxruntime", **kwargs)


@pytest.mark.parametrize("batch", [1, 5, 32])
def test_matches_torch_for_every_batch_in_the_profile(torch_bundle, batch: int) -> None:
    path, net = torch_bundle
    x = torch.randn(batch, 16)
    with quiet_load(path) as module, torch.no_grad():
        got = module(x)
        torch.testing.assert_close(got, net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(module(x=x), got)
        assert list(module(x, return_dict=True)) == list(module.output_names)


def test_wrong_inputs_are_tensor_mismatch_errors(torch_bundle) -> None:
    path, _ = torch_bundle
    with quiet_load(path) as module:
        with pytest.raises(TensorMismatchError, match="dtype float64, the engine expects float32"):
            module(torch.randn(2, 16, dtype=torch.float64))
        with pytest.raises(TensorMismatchError, match="rank 3"):
            module(torch.randn(2, 16, 1))
        with pytest.raises(TensorMismatchError, match=r"dim 0 is 33, profile 0 allows 1\.\.32"):
            module(torch.randn(33, 16))
        with pytest.raises(TensorMismatchError, match="dim 1 is 15"):
            module(torch.randn(2, 15))


def test_several_outputs_come_back_as_tuple_or_dict(tmp_path: Path) -> None:
    net = TwoHeads().eval()
    path = tmp_path / "two.rtxpack"
    rtxpack.save(net, path, inputs=(torch.randn(4, 16),), shapes=SHAPES)
    x = torch.randn(3, 16)
    with quiet_load(path) as module, torch.no_grad():
        a, b = module(x)
        want_a, want_b = net(x)
        torch.testing.assert_close(a, want_a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b, want_b, rtol=1e-5, atol=1e-5)
        as_dict = module(x, return_dict=True)
        assert list(as_dict) == list(module.output_names) and len(as_dict) == 2
        module.return_dict = True
        assert isinstance(module(x), dict)


def test_verify_run_passes_on_stored_samples(torch_bundle) -> None:
    path, _ = torch_bundle  # a torch source with example inputs stores samples by default
    run = run_samples(path)
    assert run.ok and run.failed == 0 and [o.name for o in run.outputs] == ["output"]
    text = "\n".join(run.lines())
    assert "with ONNX Runtime" in text and "note:" in text  # says the fallback was taken
    assert "all 1 output(s) match" in text


def test_verify_run_fails_when_outputs_differ(torch_bundle, monkeypatch) -> None:
    path, _ = torch_bundle

    class Off(torch.nn.Module):
        backend, device, output_names = "onnxruntime", torch.device("cpu"), ("y",)

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *a, **k):
            return {n: t + 0.5 for n, t in self.inner(*a, **k).items()}

        def close(self) -> None:
            self.inner.close()

    # run_samples imports load when called, so it picks up this replacement.
    monkeypatch.setattr(rtxpack._loader, "load", lambda *a, **k: Off(quiet_load(path)))
    run = run_samples(path)
    assert not run.ok and run.failed == 1 and not run.outputs[0].ok
    text = "\n".join(run.lines())
    assert "FAIL" in text and "1 of 1 output(s) differ" in text


def test_verify_run_without_samples_is_a_clear_failure(onnx_mlp: Path, tmp_path: Path) -> None:
    path = tmp_path / "nosamples.rtxpack"
    rtxpack.save(onnx_mlp, path, shapes={"x": ((1, 16), (4, 16), (8, 16))})
    run = run_samples(path)
    assert not run.ok and run.outputs == ()
    assert run.problem is not None and "no samples" in run.problem


def test_cli_verify_run_exit_codes(onnx_bundle: Path, capsys) -> None:
    from rtxpack.cli import main

    assert main(["verify", "--run", str(onnx_bundle)]) == 0
    assert "match" in capsys.readouterr().out
    # run_samples itself prints nothing: the CLI does
    run_samples(onnx_bundle)
    assert capsys.readouterr() == ("", "")


def test_compare_tolerances() -> None:
    want = np.ones((2, 3), np.float32)
    assert _samples._compare("y", want + 1e-6, want)[0]
    assert not _samples._compare("y", want + 1e-2, want)[0]
    assert not _samples._compare("y", np.ones((3, 2), np.float32), want)[0]
    ints = np.arange(4)
    assert _samples._compare("n", ints.copy(), ints)[0]
    assert not _samples._compare("n", ints + 1, ints)[0]
