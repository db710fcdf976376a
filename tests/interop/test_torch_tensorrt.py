"""Importing Torch-TensorRT serialized engines (every layout built around a real engine)."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest

import rtxpack
from rtxpack._exceptions import ImportFormatError, InvalidArgumentError
from rtxpack._interop import torch_tensorrt
from rtxpack._strategy import AllocationStrategy, CudaGraphStrategy, DynamicShapesStrategy
from rtxpack.cli import main


def make_info(engine: bytes, abi: str = "10", slots: int = 13, **over: str) -> list[str]:
    """A Torch-TensorRT serialized-info list around ``engine``; ``over`` sets slots by name."""
    base = {
        "ABI_TARGET": abi,
        "NAME": "_run_on_acc_0_engine",
        "DEVICE": "0%8%9%1%NVIDIA GeForce RTX 4090",
        "ENGINE": base64.b64encode(engine).decode(),
        "INPUT_BINDING_NAMES": "x",
        "OUTPUT_BINDING_NAMES": "y",
        "HW_COMPATIBLE": "0",
        "SERIALIZED_METADATA": base64.b64encode(b"\x80\x04N.").decode(),
        "TARGET_PLATFORM": "linux_x86_64",
        "REQUIRES_OUTPUT_ALLOCATOR": "0",
        "RESOURCE_ALLOCATION_STRATEGY": "1",
        "REQUIRES_NATIVE_MULTIDEVICE": "0",
        "ALIASED_IO": "",
        "RUNTIME_CACHE_PATH": "/home/me/.cache/trt/runtime.cache",
        "DYNAMIC_SHAPES_KERNEL_STRATEGY": "1",
        "CUDA_GRAPH_STRATEGY": "1",
    }
    base.update(over)
    layout = torch_tensorrt.LAYOUTS.get((abi, slots))
    names = layout[1] if layout else list(base)[:slots]
    return [base[n] for n in names]


def _imported(info: Any, tmp_path: Path, **kw: Any) -> rtxpack.Bundle:
    return rtxpack.open(torch_tensorrt.import_torch_tensorrt(info, tmp_path / "out.rtxpack", **kw))


def test_abi8_round_trip(tmp_path: Path, mlp_engine: bytes) -> None:
    info = make_info(mlp_engine, "8", 11, INPUT_BINDING_NAMES="x%mask")
    with _imported(info, tmp_path) as b:
        e = b.manifest.engine()
        assert e.name == "_run_on_acc_0_engine"
        assert bytes(b.read_engine()) == mlp_engine
        assert e.trt_version.startswith("1.7.1") and e.platform == "linux_x86_64"
        assert e.inputs == () and e.outputs == ()  # dtypes/shapes unknown without a GPU
        meta = b.manifest.metadata
        assert json.loads(meta["torch_tensorrt.inputs"]) == ["x", "mask"]
        assert json.loads(meta["torch_tensorrt.outputs"]) == ["y"]
        assert meta["torch_tensorrt.layout"] == "ABI 8 (11 slots)"
        assert meta["torch_tensorrt.compute_capability"] == "8.9"
        assert json.loads(meta["torch_tensorrt.device"])["device_name"] == "NVIDIA GeForce RTX 4090"
        assert "requires_native_multidevice" not in str(meta)
        alloc = e.strategy.execution_context_allocation_strategy
        assert alloc is AllocationStrategy.ON_PROFILE_CHANGE


def test_abi9_twelve_slots_is_the_released_layout(tmp_path: Path, mlp_engine: bytes) -> None:
    info = make_info(
        mlp_engine, "9", 12, RESOURCE_ALLOCATION_STRATEGY="0", REQUIRES_NATIVE_MULTIDEVICE="1"
    )
    with _imported(info, tmp_path, name="enc") as b:
        e = b.manifest.engine("enc")
        meta = b.manifest.metadata
        assert meta["torch_tensorrt.layout"] == "ABI 9 (12 slots)"
        assert meta["torch_tensorrt.requires_native_multidevice"] == "1"
        assert e.strategy.execution_context_allocation_strategy is AllocationStrategy.STATIC
        assert e.strategy.cuda_graph_strategy is CudaGraphStrategy.DISABLED


def test_abi9_fourteen_slots_is_the_rtx_variant_with_runtime_settings(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    info = make_info(mlp_engine, "9", 14, DYNAMIC_SHAPES_KERNEL_STRATEGY="2")
    with _imported(info, tmp_path) as b:
        s = b.manifest.engine().strategy
        meta = b.manifest.metadata
        assert "14-slot TensorRT-RTX variant" in meta["torch_tensorrt.layout"]
        assert s.dynamic_shapes_kernel_specialization_strategy is DynamicShapesStrategy.NONE
        assert s.cuda_graph_strategy is CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        assert meta["torch_tensorrt.runtime_cache_path"] == "/home/me/.cache/trt/runtime.cache"
    d = torch_tensorrt.parse_serialized_info(make_info(mlp_engine, "9", 14))
    strategy = d.strategy.dynamic_shapes_kernel_specialization_strategy
    assert strategy is DynamicShapesStrategy.EAGER


def test_abi10_and_a_strategy_override(tmp_path: Path, mlp_engine: bytes) -> None:
    info = make_info(mlp_engine, ALIASED_IO="y@x@inplace", HW_COMPATIBLE="1")
    chosen = rtxpack.RuntimeStrategy(cuda_graph_strategy="whole_graph_capture")
    with _imported(info, tmp_path, strategy=chosen) as b:
        e = b.manifest.engine()
        assert e.strategy == chosen
        assert e.hardware_portable
        assert b.manifest.metadata["torch_tensorrt.aliased_io"] == "y@x@inplace"
        assert b.manifest.metadata["torch_tensorrt.layout"] == "ABI 10 (13 slots)"


def test_pickled_metadata_is_never_unpickled(tmp_path: Path, mlp_engine: bytes) -> None:
    canary = tmp_path / "pwned"
    evil = b"cbuiltins\nopen\n(V" + str(canary).encode() + b"\nVw\ntR."
    info = make_info(mlp_engine, SERIALIZED_METADATA=base64.b64encode(evil).decode())
    with _imported(info, tmp_path) as b:
        note = b.manifest.metadata["torch_tensorrt.serialized_metadata"]
        assert f"{len(base64.b64encode(evil))} bytes" in note and "not decoded" in note
    assert not canary.exists()


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        (lambda e: make_info(e, "7", 10), ["found ABI '7' with 10 slots", "supported: ABI 8"]),
        (lambda e: make_info(e, "9", 13), ["ABI '9' with 13 slots", "12 or 14 slots"]),
        (lambda e: make_info(e, "9", 15), ["15 slots", "never-merged", "JSON"]),
        (lambda e: make_info(e, "10", 13) + ["x"] * 7, ["20 slots", "supported"]),
        (lambda e: make_info(e, ENGINE="@@not base64@@"), ["slot ENGINE", "not valid base64"]),
        (
            lambda e: make_info(e, ENGINE=base64.b64encode(b"ftrt-plain-TensorRT").decode()),
            ["slot ENGINE", "b'ftrt-pla", "b'vtrt'"],
        ),
        (lambda e: make_info(e, DEVICE="0%8%9%1"), ["slot DEVICE", "(4 fields)", "5 %-separated"]),
        (lambda e: make_info(e, DEVICE="0%8%x%1%RTX"), ["slot DEVICE", "minor"]),
        (lambda e: make_info(e, HW_COMPATIBLE="yes"), ["slot HW_COMPATIBLE", "'yes'"]),
        (
            lambda e: make_info(e, RESOURCE_ALLOCATION_STRATEGY="2"),
            ["slot RESOURCE_ALLOCATION_STRATEGY"],
        ),
        (lambda e: make_info(e, NAME="n" * (2 << 20)), ["slot NAME", "characters long"]),
        (lambda e: make_info(e, TARGET_PLATFORM="beos"), ["slot TARGET_PLATFORM", "unknown"]),
        (lambda e: make_info(e, ALIASED_IO="y@x"), ["slot ALIASED_IO", "out@in@kind"]),
        (lambda e: make_info(e, "9", 14, CUDA_GRAPH_STRATEGY="2"), ["slot CUDA_GRAPH_STRATEGY"]),
        (lambda e: [], ["empty"]),
    ],
)
def test_malformed_info_is_refused_with_what_was_found(
    tmp_path: Path, mlp_engine: bytes, info: Any, expected: list[str]
) -> None:
    with pytest.raises(ImportFormatError) as err:
        torch_tensorrt.import_torch_tensorrt(info(mlp_engine), tmp_path / "out.rtxpack")
    for text in expected:
        assert text in str(err.value)
    assert not (tmp_path / "out.rtxpack").exists()


def test_unknown_platform_is_recorded(tmp_path: Path, mlp_engine: bytes) -> None:
    with _imported(make_info(mlp_engine, TARGET_PLATFORM="unknown"), tmp_path) as b:
        assert b.manifest.engine().platform == "unknown"


def test_json_list_file_and_cli(
    tmp_path: Path, mlp_engine: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "engine.json"
    src.write_text(json.dumps(make_info(mlp_engine, "9", 12)))
    out = tmp_path / "cli.rtxpack"
    assert main(["import-torch-tensorrt", str(src), "-o", str(out), "--name", "m"]) == 0
    assert "ABI 9 (12 slots)" in capsys.readouterr().out
    with rtxpack.open(out) as b:
        assert bytes(b.read_engine("m")) == mlp_engine
    src.write_text('{"not": "a list"}')
    assert main(["import-torch-tensorrt", str(src), "-o", str(out)]) == 1
    assert "holds a JSON dict" in capsys.readouterr().err


def _torchscript_with(tmp_path: Path, infos: list[list[str]]) -> Path:
    """A TorchScript file whose module holds each list as an attribute (as a TRT module's
    engine state: a list of strings inside data.pkl)."""
    torch = pytest.importorskip("torch")

    class Holder(torch.nn.Module):
        def __init__(self, info: list[str]) -> None:
            super().__init__()
            self.info: list[str] = info

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.parts = torch.nn.ModuleList([Holder(i) for i in infos])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    path = tmp_path / "model.ts"
    torch.jit.save(torch.jit.script(Outer()), str(path))
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_file(tmp_path: Path, mlp_engine: bytes) -> None:
    one = _torchscript_with(tmp_path, [make_info(mlp_engine, "9", 12)])
    with _imported(one, tmp_path) as b:
        assert bytes(b.read_engine()) == mlp_engine
        assert b.manifest.metadata["torch_tensorrt.layout"] == "ABI 9 (12 slots)"

    two = _torchscript_with(
        tmp_path,
        [make_info(mlp_engine, NAME="enc"), make_info(mlp_engine, NAME="dec")],
    )
    with pytest.raises(InvalidArgumentError, match="2 Torch-TensorRT engines \\('enc', 'dec'\\)"):
        torch_tensorrt.import_torch_tensorrt(two, tmp_path / "x.rtxpack")
    with _imported(two, tmp_path, engine="dec") as b:
        assert b.manifest.engine().name == "dec"


def test_zip_pickles_are_walked_not_run(tmp_path: Path, mlp_engine: bytes) -> None:
    canary = tmp_path / "pwned"
    info_pickle = pickle.dumps(make_info(mlp_engine), protocol=2)
    evil = b"cbuiltins\nopen\n(V" + str(canary).encode() + b"\nVw\ntR."
    path = tmp_path / "program.pt2"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", evil)
        zf.writestr("archive/constants/custom_obj_0", info_pickle)
    with _imported(path, tmp_path) as b:
        assert bytes(b.read_engine()) == mlp_engine
    assert not canary.exists()


def test_zip_without_an_engine_says_to_export_json(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("m/data.pkl", pickle.dumps(["just", "strings"]))
    with pytest.raises(ImportFormatError, match="Export the list as JSON"):
        torch_tensorrt.import_torch_tensorrt(path, tmp_path / "x.rtxpack")
    other = tmp_path / "model.onnx"
    other.write_bytes(b"\x08\x07")
    with pytest.raises(ImportFormatError, match=r"neither a \.json list nor"):
        torch_tensorrt.import_torch_tensorrt(other, tmp_path / "x.rtxpack")


# --- found in review --------------------------------------------------------------------------


def test_hundreds_of_bindings_import_into_a_readable_bundle(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    names = [f"past_key_values.{i}.key" for i in range(300)]
    with _imported(make_info(mlp_engine, INPUT_BINDING_NAMES="%".join(names)), tmp_path) as b:
        record = json.loads(b.read_file("torch_tensorrt.json"))
        assert record["inputs"] == names and record["outputs"] == ["y"]
        assert b.manifest.metadata["torch_tensorrt.inputs"] == "see torch_tensorrt.json"
        assert json.loads(b.manifest.metadata["torch_tensorrt.outputs"]) == ["y"]


def test_hw_compatible_does_not_make_a_single_target_engine_portable(tmp_path: Path) -> None:
    from conftest import build_mlp_engine

    engine = build_mlp_engine(ccs=("8.6",))
    with _imported(make_info(engine, HW_COMPATIBLE="1"), tmp_path) as b:
        e = b.manifest.engine()
        assert e.compute_capabilities == ("8.6",) and e.hardware_portable is False
        assert b.manifest.metadata["torch_tensorrt.hw_compatible"] == "1"  # still recorded


@pytest.mark.parametrize(
    ("over", "slot"),
    [
        ({"DEVICE": "0%\u00b2%9%0%gpu"}, "DEVICE"),  # a digit to str.isdigit, not to int()
        ({"DEVICE": "0%8%9%1%" + "g" * 5000}, "DEVICE"),
        ({"ALIASED_IO": "%".join(["o@i@k"] * 2000)}, "ALIASED_IO"),
    ],
)
def test_odd_slots_are_import_format_errors(
    tmp_path: Path, mlp_engine: bytes, over: dict[str, str], slot: str
) -> None:
    with pytest.raises(ImportFormatError, match=slot):
        torch_tensorrt.import_torch_tensorrt(make_info(mlp_engine, **over), tmp_path / "o.rtxpack")
    assert not (tmp_path / "o.rtxpack").exists()


def test_deeply_nested_json_is_an_import_format_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ImportFormatError, match="not valid JSON"):
        torch_tensorrt.import_torch_tensorrt(path, tmp_path / "o.rtxpack")


def test_unreadable_zip_members_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "odd.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", b"x" * 100)
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"archive/data.pkl") - 22] = 99  # compression method 99 (AES) in the header
    cd = raw.rindex(b"archive/data.pkl") - 36
    raw[cd] = 99  # and in the central directory
    path.write_bytes(bytes(raw))
    with pytest.raises(ImportFormatError, match="no Torch-TensorRT engine found"):
        torch_tensorrt.import_torch_tensorrt(path, tmp_path / "o.rtxpack")
