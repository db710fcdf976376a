"""Real models (issue 9), in small forced versions: bf16 end to end, names and structure,
keyword inputs, builder options and Windows targets, progress and logs, no silent surprises,
cheap checks before expensive work. (Multi-GB cases: bench/bench_models.py.)"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rtxpack
from rtxpack import InvalidArgumentError, TensorMismatchError
from rtxpack._samples import run_samples
from rtxpack._tensors import BFLOAT16

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

BATCH = ((1, 16), (4, 16), (8, 16))


class Heads(torch.nn.Module):
    """``forward(x, mask=None)`` returning a dict with a nested tuple, like an LLM block."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(16, 32)
        self.head = torch.nn.Linear(32, 4)

    def forward(self, x: Any, mask: Any = None) -> dict[str, Any]:
        h = torch.relu(self.fc(x if mask is None else x * mask))
        return {"logits": self.head(h), "extra": (h, h.sum(dim=1))}


def _load_cpu(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rtxpack.FallbackWarning)
        return rtxpack.load(path, device="cpu", fallback="onnxruntime")


# -- names, structure, keyword inputs -------------------------------------------------------------


def test_dict_outputs_and_keyword_inputs_come_back_as_forward_returned(tmp_path: Path) -> None:
    model = Heads().eval()
    x, mask = torch.randn(3, 16), torch.ones(3, 16)
    out = rtxpack.save(
        model,
        tmp_path / "h.rtxpack",
        inputs=x,  # one tensor, not a tuple: fine
        kwarg_inputs={"mask": mask},
        shapes={"x": BATCH, "mask": BATCH},
    )
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        assert [t.name for t in info.inputs] == ["x", "mask"]
        assert [t.name for t in info.outputs] == ["logits", "extra.0", "extra.1"]
        assert info.equal_dims == ((("x", 0), ("mask", 0)),)  # one batch for both
    module = _load_cpu(out)
    got = module(x, mask=mask)
    with torch.no_grad():
        want = model(x, mask=mask)
    assert set(got) == {"logits", "extra"} and isinstance(got["extra"], tuple)
    torch.testing.assert_close(got["logits"], want["logits"])
    torch.testing.assert_close(got["extra"][1], want["extra"][1])
    flat = module(x, mask=mask, return_dict=True)
    assert list(flat) == ["logits", "extra.0", "extra.1"]
    # the batch of x and mask must match: said before the backend fails
    with pytest.raises(TensorMismatchError, match=r"'mask': dim 0 is 2.*dim 0 of input 'x'"):
        module(torch.randn(3, 16), mask=torch.ones(2, 16))
    assert run_samples(out, device="cpu").ok


def test_input_and_output_names_are_the_callers(tmp_path: Path) -> None:
    out = rtxpack.save(
        Heads().eval(),
        tmp_path / "n.rtxpack",
        inputs=(torch.randn(2, 16),),
        input_names=["tokens"],
        output_names=["a", "b", "c"],
        shapes={"tokens": BATCH},
    )
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        assert [t.name for t in info.inputs] == ["tokens"]
        assert [t.name for t in info.outputs] == ["a", "b", "c"]
    assert set(_load_cpu(out)(tokens=torch.randn(2, 16))) == {"logits", "extra"}


class ReturnsInputAndNone(torch.nn.Module):
    """Returns its input unchanged, a None and (with ``int_keys``) a dict plain data cannot say."""

    def __init__(self, int_keys: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(16, 4)
        self.int_keys = int_keys

    def forward(self, x: Any) -> Any:
        y = self.fc(x)
        if self.int_keys:
            return {0: y, 1: x}
        return {"y": (y, None), "x": x, "gone": None, "flag": y > 0}


def test_none_outputs_and_an_input_returned_as_it_is(tmp_path: Path) -> None:
    # A None used to number an engine output, so the whole structure was dropped (a bare tuple
    # came back); and the returned input became Identity(x) -> x, a cycle the build refused.
    model = ReturnsInputAndNone().eval()
    x = torch.randn(2, 16)
    out = rtxpack.save(model, tmp_path / "n.rtxpack", inputs=(x,), shapes={"x": BATCH})
    got = _load_cpu(out)(x)
    assert list(got) == ["y", "x", "gone", "flag"]
    assert got["gone"] is None and isinstance(got["y"], tuple) and got["y"][1] is None
    with torch.no_grad():
        torch.testing.assert_close(got["y"][0], model(x)["y"][0])
    torch.testing.assert_close(got["x"], x)
    assert got["flag"].dtype == torch.bool
    assert run_samples(out, device="cpu").ok


class ReturnsMap(torch.nn.Module):
    """``forward(x, **extra)`` returning ``make(y)``: a map of any keys, any nesting."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)
        self.make = make

    def forward(self, x: Any, **extra: Any) -> Any:
        return self.make(self.fc(x))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda y: {0: y, 1: y + 1}, r"forward's output: a key of type int \(0\)"),
        (lambda y: {"a": (y, {2.5: y})}, r"output\['a'\]\[1\]: a key of type float \(2\.5\)"),
        (lambda y: OrderedDict([("a", y), (("t",), y)]), r"a key of type tuple \(\('t',\)\)"),
        (lambda y: defaultdict(list, {1: y}), r"a key of type int \(1\)"),
    ],
)
def test_dict_outputs_with_keys_that_are_not_strings_are_refused_before_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make: Any, message: str
) -> None:
    # They were flattened silently: the loaded module returned a tuple, not what forward did.
    monkeypatch.setattr("rtxpack._save.export_torch", lambda *a, **k: pytest.fail("exported"))
    with pytest.raises(InvalidArgumentError, match=message) as info:
        rtxpack.save(ReturnsMap(make), tmp_path / "i.rtxpack", inputs=(torch.randn(2, 16),))
    assert "expected str keys" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_the_export_refuses_them_when_fake_tensors_cannot_run_forward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The early check runs forward on fake tensors; a forward they cannot run (data-dependent
    # control flow...) is checked on what the export traced, before any TensorRT-RTX build.
    monkeypatch.setattr("rtxpack._save.check_output_tree", lambda *a: None)
    monkeypatch.setattr("rtxpack._save.build_onnx", lambda *a, **k: pytest.fail("built"))
    with pytest.raises(InvalidArgumentError, match=r"output: a key of type int \(0\)"):
        rtxpack.save(
            ReturnsMap(lambda y: {0: y, 1: y + 1}),
            tmp_path / "i.rtxpack",
            inputs=(torch.randn(2, 16),),
        )
    assert list(tmp_path.iterdir()) == []


def test_the_early_check_leaves_the_module_as_it_was(tmp_path: Path) -> None:
    model = ReturnsMap(lambda y: {7: y}).train()
    weight = model.fc.weight.detach().clone()
    with pytest.raises(InvalidArgumentError):
        rtxpack.save(model, tmp_path / "i.rtxpack", inputs=(torch.randn(2, 16),))
    assert model.training and torch.equal(model.fc.weight, weight)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_names": ["a", "b"]}, "2 names for 1 inputs"),
        ({"input_names": ["a", "a"]}, "unique"),
        ({"kwarg_inputs": {"nope": torch.ones(1)}}, "forward has no parameter 'nope'"),
        ({"kwarg_inputs": {1: torch.ones(2, 16)}}, r"kwarg_inputs: a key of type int \(1\)"),
        ({"samples": {0: np.ones((2, 16), np.float32)}}, r"samples: a key of type int \(0\)"),
        ({"shapes": {0: BATCH}}, r"shapes: a key of type int \(0\); expected str keys"),
        ({"strategy": {1: "x"}}, r"strategy: a key of type int \(1\)"),
        ({"inputs": [1.0]}, "expected a torch.Tensor"),
        ({"inputs": "x"}, "expected a tensor or a tuple"),
        ({"shapes": {"y": BATCH}}, "not an input"),
        ({"compute_capabilities": ["9.0"]}, "not a TensorRT-RTX target"),
        ({"platform": "macos"}, "can target"),
        ({"samples": {"x": np.array([object()])}}, "cannot be stored"),
        ({"build_options": {"max_aux_streams": 99}}, "max_aux_streams"),
    ],
)
def test_bad_arguments_are_refused_before_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kwargs: dict[str, Any], message: str
) -> None:
    def no_export(*a: Any, **k: Any) -> Any:
        raise AssertionError("exported before the cheap checks")

    monkeypatch.setattr("rtxpack._save.export_torch", no_export)
    args: dict[str, Any] = {"inputs": (torch.randn(2, 16),), "shapes": {"x": BATCH}}
    args.update(kwargs)
    with pytest.raises(InvalidArgumentError, match=message):
        rtxpack.save(Heads(), tmp_path / "x.rtxpack", **args)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_output_folder_is_reported_before_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rtxpack._save.export_torch", lambda *a, **k: 1 / 0)
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        rtxpack.save(Heads(), tmp_path / "no" / "x.rtxpack", inputs=(torch.randn(2, 16),))


def test_no_silent_surprises(tmp_path: Path) -> None:
    model = Heads().train()
    with pytest.warns(rtxpack.ShapeWarning, match=r"exactly the example shapes \(x\[2, 16\]\)"):
        rtxpack.save(model, tmp_path / "s.rtxpack", inputs=torch.randn(2, 16), samples=False)
    assert model.training  # save does not leave the caller's model in eval mode


# -- bf16 -----------------------------------------------------------------------------------------


def test_bf16_model_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    model = Heads().to(torch.bfloat16).eval()
    x = torch.randn(3, 16).to(torch.bfloat16)
    out = rtxpack.save(model, tmp_path / "bf.rtxpack", inputs=(x,), shapes={"x": BATCH})
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        assert info.inputs[0].dtype == info.outputs[0].dtype == "bfloat16"
        samples = b.read_samples()
        assert samples is not None
        assert samples["inputs"]["x"].dtype == BFLOAT16  # stored natively, not cast
    run = run_samples(out, device="cpu")  # ONNX Runtime runs the float32 copy
    assert run.ok, [o.line for o in run.outputs]
    got = _load_cpu(out)(x)
    assert got["logits"].dtype == torch.bfloat16
    with torch.no_grad():
        torch.testing.assert_close(got["logits"], model(x)["logits"], rtol=2e-2, atol=2e-2)


# -- builder options, platform, progress, logs ----------------------------------------------------


def test_builder_options_and_a_windows_target_are_recorded_and_checked(
    tmp_path: Path, onnx_mlp: Path
) -> None:
    out = rtxpack.save(
        onnx_mlp,
        tmp_path / "w.rtxpack",
        shapes={"x": BATCH},
        platform="windows",
        build_options=rtxpack.BuildOptions(
            weight_streaming=True, tiling_optimization_level="fast", max_aux_streams=1
        ),
        strategy=rtxpack.RuntimeStrategy(weight_streaming_budget=1 << 20),
    )
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        assert info.platform == "windows_x86_64"
        assert info.build_options == rtxpack.BuildOptions(True, "fast", None, 1)
        assert info.strategy.weight_streaming_budget == 1 << 20
    here = rtxpack.local_target()
    on_linux = rtxpack.check(out, rtxpack.Target(**{**here.to_dict(), "os": "linux"}))
    assert "platform.other_os" in {f.code for f in on_linux.findings}
    packed = rtxpack.save(b"vtrt" + bytes(60), tmp_path / "p.rtxpack")
    with rtxpack.open(packed) as b:
        assert b.manifest.engine().platform == "unknown"


def test_progress_gets_tensorrt_phases_and_the_log_goes_to_logging(
    tmp_path: Path, onnx_mlp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[str, Any]] = []

    class Recorder(rtxpack.Progress):
        def message(self, text: str) -> None:
            seen.append(("message", text))

        def phase_start(self, name: str, parent: str | None, steps: int) -> None:
            seen.append(("start", (name, parent, steps)))

        def step(self, name: str, step: int) -> None:
            seen.append(("step", (name, step)))

    with caplog.at_level(logging.INFO, logger="rtxpack.tensorrt_rtx"):
        rtxpack.save(onnx_mlp, tmp_path / "p.rtxpack", shapes={"x": BATCH}, progress=Recorder())
    kinds = {k for k, _ in seen}
    assert {"message", "start", "step"} <= kinds
    assert any(parent is None for k, (name, parent, _) in ((k, v) for k, v in seen if k == "start"))
    assert any(r.name == "rtxpack.tensorrt_rtx" for r in caplog.records)


def test_bf16_onnx_file_with_random_samples(tmp_path: Path) -> None:
    """Reference outputs of a bf16 ONNX model come from ONNX Runtime on its float32 copy."""
    from rtxpack.cli import main

    model = Heads().to(torch.bfloat16).eval()
    path = tmp_path / "bf16.onnx"
    x = torch.randn(2, 16).to(torch.bfloat16)
    torch.onnx.export(
        model,
        (x,),
        None,
        dynamo=True,
        verbose=False,
        input_names=["x"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=8)}},
    ).save(str(path))
    out = tmp_path / "bf16.rtxpack"
    argv = [
        "build",
        str(path),
        "-o",
        str(out),
        "--shape",
        "x=1x16:4x16:8x16",
        "--samples",
        "random",
    ]
    assert main(argv) == 0
    with rtxpack.open(out) as b:
        samples = b.read_samples()
        assert samples is not None and samples["inputs"]["x"].dtype == BFLOAT16
    assert run_samples(out, device="cpu").ok


def test_rebuild_keeps_the_platform_and_the_builder_options(tmp_path: Path, onnx_mlp: Path) -> None:
    options = rtxpack.BuildOptions(tiling_optimization_level="fast")
    out = rtxpack.save(
        onnx_mlp,
        tmp_path / "w.rtxpack",
        shapes={"x": BATCH},
        platform="windows",
        build_options=options,
        compute_capabilities=["8.9"],
    )
    new = rtxpack.rebuild(out, tmp_path / "r.rtxpack", compute_capabilities=["8.6"])
    with rtxpack.open(new) as b:
        info = b.manifest.engine()
        assert info.compute_capabilities == ("8.6",)
        assert info.platform == "windows_x86_64" and info.build_options == options


@pytest.mark.slow
def test_a_model_above_protobufs_2_gb(tmp_path: Path) -> None:
    """2.25 GiB of float16 weights: above protobuf's 2 GB and torch's 1536 MiB threshold.
    (bench/bench_models.py measures 3 GiB.)"""
    width, layers = 8192, 18  # 18 x 128 MiB
    model = torch.nn.Sequential(
        *(torch.nn.Linear(width, width, bias=False, dtype=torch.float16) for _ in range(layers))
    ).eval()
    x = torch.randn(2, width, dtype=torch.float16)
    out = rtxpack.save(model, tmp_path / "big.rtxpack", inputs=(x,), samples=False)
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        (data,) = info.source_data
        assert b.manifest.sections[data].size >= layers * width * width * 2
        b.verify()
