"""The public API a user relies on: save / open / inspect round trips, several engines, atomic
writes, zero-copy reads, the manifest schema, and the CLI."""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import onnx
import pytest
import tensorrt_rtx as trt
from conftest import MLP_SHAPES, make_onnx_mlp
from onnx import numpy_helper

import rtxpack
from rtxpack import (
    EngineSpec,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    RuntimeStrategy,
)
from rtxpack._format.container import BundleWriter, digest
from rtxpack.cli import main

TRT_RELEASE = ".".join(trt.__version__.split(".")[:3])  # "1.7.1" of "1.7.1.116"
DEFAULT_CCS = ("8.0", "8.6", "8.9", "12.0", "12.1")
SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "manifest.schema.json"


def onnx_reference(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """y = relu(x @ W + B), computed from the model's own weights (independent of rtxpack)."""
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_path).graph.initializer}
    return np.maximum(x @ weights["W"] + weights["B"], 0)


def raw_manifest(path: Path) -> dict[str, Any]:
    """The manifest exactly as written in the file (not through rtxpack's parser)."""
    raw = path.read_bytes()
    m_off = int.from_bytes(raw[16:24], "little")
    return msgpack.unpackb(raw[m_off:])


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# Round trips from each kind of source


def test_save_from_engine_bytes(tmp_path: Path, mlp_engine: bytes) -> None:
    out = rtxpack.save(mlp_engine, tmp_path / "a.rtxpack", metadata={"owner": "me"})
    assert out == tmp_path / "a.rtxpack"
    with rtxpack.open(out) as b:
        assert bytes(b.read_engine()) == mlp_engine
        info = b.engines["main"]
        assert info.trt_version == TRT_RELEASE  # the engine header holds major.minor.patch only
        assert info.compute_capabilities == DEFAULT_CCS
        assert info.hardware_portable is True
        assert info.inputs == () and info.outputs == ()  # not known without a GPU
        assert info.strategy == RuntimeStrategy()
        assert info.source is None and info.samples is None
        assert b.manifest.metadata == {"owner": "me"}
        assert b.manifest.rtxpack_version == rtxpack.__version__
        assert b.format_version == "1.1"
        b.verify()


def test_save_from_engine_path(tmp_path: Path, mlp_engine: bytes) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(mlp_engine)
    out = rtxpack.save(engine, tmp_path / "b.rtxpack", name="mlp")
    with rtxpack.open(out) as b:
        assert list(b.engines) == ["mlp"]
        assert bytes(b.read_engine("mlp")) == mlp_engine
        assert b.engines["mlp"].trt_version == TRT_RELEASE


def test_engine_built_for_one_cc_records_it(tmp_path: Path) -> None:
    from conftest import build_mlp_engine

    engine = build_mlp_engine(ccs=("8.6",))
    with rtxpack.open(rtxpack.save(engine, tmp_path / "cc.rtxpack")) as b:
        assert b.engines["main"].compute_capabilities == ("8.6",)
        assert b.engines["main"].hardware_portable is False
    with pytest.raises(InvalidArgumentError, match=r"built for compute capabilities 8\.6"):
        rtxpack.save(engine, tmp_path / "cc2.rtxpack", compute_capabilities=["8.9"])


def test_save_from_onnx_path(onnx_bundle: Path, onnx_mlp: Path) -> None:
    with rtxpack.open(onnx_bundle) as b:
        b.verify()
        info = b.engines["main"]
        assert info.trt_version == trt.__version__
        assert info.compute_capabilities == DEFAULT_CCS and info.hardware_portable
        assert [(t.name, t.dtype, t.shape) for t in info.inputs] == [("x", "float32", (-1, 16))]
        assert [(t.name, t.dtype, t.shape) for t in info.outputs] == [("y", "float32", (-1, 8))]
        assert len(info.profiles) == 1
        rng = info.profiles[0]["x"]
        assert (rng.min, rng.opt, rng.max) == MLP_SHAPES["x"]
        assert info.source_digest == digest(onnx_mlp.read_bytes())
        assert b.read_source() == onnx_mlp.read_bytes()
        assert bytes(b.read_engine())[:4] == b"vtrt"
        samples = b.read_samples()
        assert samples is not None
        x = samples["inputs"]["x"]
        assert x.shape == (3, 16)
        np.testing.assert_allclose(samples["outputs"]["y"], onnx_reference(onnx_mlp, x), rtol=1e-5)
        assert b.manifest.metadata == {"team": "vision"}


def test_save_from_torch_module(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.ReLU())
    x = torch.randn(2, 16)
    strategy = RuntimeStrategy(
        dynamic_shapes_kernel_specialization_strategy="eager",
        cuda_graph_strategy="whole_graph_capture",
        execution_context_allocation_strategy="on_profile_change",
    )
    out = rtxpack.save(
        model,
        tmp_path / "t.rtxpack",
        inputs=(x,),
        shapes={"input": ((1, 16), (2, 16), (4, 16))},
        strategy=strategy,
    )
    with rtxpack.open(out) as b:
        b.verify()
        info = b.engines["main"]
        assert info.strategy == strategy
        assert [t.name for t in info.inputs] == ["input"]
        assert info.inputs[0].shape == (-1, 16) and info.outputs[0].dtype == "float32"
        assert info.profiles[0]["input"].max == (4, 16)
        source = b.read_source()
        assert source is not None and info.source_digest == digest(source)
        samples = b.read_samples()
        assert samples is not None
        np.testing.assert_array_equal(samples["inputs"]["input"], x.numpy())
        (out_name,) = samples["outputs"]
        with torch.no_grad():
            np.testing.assert_allclose(samples["outputs"][out_name], model(x).numpy(), rtol=1e-6)
    assert raw_manifest(out)["engines"][0]["strategy"] == {
        "dynamic_shapes_kernel_specialization_strategy": "eager",
        "cuda_graph_strategy": "whole_graph_capture",
        "execution_context_allocation_strategy": "on_profile_change",
        "weight_streaming_budget": None,
    }


def test_include_source_false_keeps_only_the_digest(tmp_path: Path, onnx_mlp: Path) -> None:
    out = rtxpack.save(onnx_mlp, tmp_path / "ns.rtxpack", shapes=MLP_SHAPES, include_source=False)
    with rtxpack.open(out) as b:
        assert b.read_source() is None
        assert b.engines["main"].source_digest == digest(onnx_mlp.read_bytes())


def test_dynamic_onnx_without_shapes_is_a_clear_error(tmp_path: Path, onnx_mlp: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"dynamic inputs x\[-1, 16\].*min/opt/max"):
        rtxpack.save(onnx_mlp, tmp_path / "d.rtxpack")
    assert not (tmp_path / "d.rtxpack").exists()


def test_static_onnx_needs_no_shapes(tmp_path: Path) -> None:
    model = make_onnx_mlp(tmp_path / "static.onnx", dynamic=False)
    with rtxpack.open(rtxpack.save(model, tmp_path / "s.rtxpack")) as b:
        info = b.engines["main"]
        assert info.inputs[0].shape == (2, 16)
        assert (info.profiles[0]["x"].min, info.profiles[0]["x"].max) == ((2, 16), (2, 16))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (b"not an engine at all", "not a TensorRT-RTX engine"),
        (12345, "expected engine bytes, a path"),
        ("/no/such/file.engine", "no such file"),
    ],
)
def test_bad_sources_are_refused(tmp_path: Path, source: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        rtxpack.save(source, tmp_path / "x.rtxpack")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Strategies


@pytest.mark.parametrize(
    ("strategy", "message"),
    [
        ({"dynamic_shapes_kernel_specialization_strategy": "turbo"}, "turbo.*lazy, eager, none"),
        ({"cuda_graph_strategy": "always"}, "always.*whole_graph_capture"),
        ({"execution_context_allocation_strategy": 3}, "static, on_profile_change"),
        ({"cuda_graphs": "disabled"}, "unknown settings"),
        ("eager", "expected an rtxpack.RuntimeStrategy"),
    ],
)
def test_invalid_strategy_is_refused_at_save(
    tmp_path: Path, mlp_engine: bytes, strategy: Any, message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        rtxpack.save(mlp_engine, tmp_path / "s.rtxpack", strategy=strategy)
    assert list(tmp_path.iterdir()) == []


def test_runtime_strategy_validates_on_construction() -> None:
    with pytest.raises(InvalidArgumentError, match="cuda_graph_strategy"):
        RuntimeStrategy(cuda_graph_strategy="sometimes")  # type: ignore[arg-type]
    s = RuntimeStrategy(dynamic_shapes_kernel_specialization_strategy="NONE")  # type: ignore
    assert s.to_dict()["dynamic_shapes_kernel_specialization_strategy"] == "none"


def test_strategy_as_a_map_round_trips(tmp_path: Path, mlp_engine: bytes) -> None:
    out = rtxpack.save(
        mlp_engine, tmp_path / "m.rtxpack", strategy={"cuda_graph_strategy": "whole_graph_capture"}
    )
    with rtxpack.open(out) as b:
        assert b.engines["main"].strategy == RuntimeStrategy(
            cuda_graph_strategy="whole_graph_capture"  # type: ignore[arg-type]
        )


# ---------------------------------------------------------------------------------------------
# Several engines


@pytest.fixture(scope="module")
def multi_bundle(
    tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path, mlp_engine: bytes
) -> Path:
    path = tmp_path_factory.mktemp("multi") / "encdec.rtxpack"
    return rtxpack.save(
        {
            "enc": EngineSpec(
                onnx_mlp,
                shapes=MLP_SHAPES,
                strategy=RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"),  # type: ignore
            ),
            "dec": EngineSpec(mlp_engine),
            "dec_raw": mlp_engine,
        },
        path,
        files={"labels.txt": b"cat\ndog\n"},
    )


def test_multi_engine_bundle(multi_bundle: Path, mlp_engine: bytes) -> None:
    with rtxpack.open(multi_bundle) as b:
        assert list(b.engines) == ["enc", "dec", "dec_raw"]
        assert bytes(b.read_engine("dec")) == mlp_engine
        assert bytes(b.read_engine("dec_raw")) == mlp_engine
        assert bytes(b.read_engine("enc"))[:4] == b"vtrt"
        assert b.engines["enc"].strategy.cuda_graph_strategy.value == "whole_graph_capture"
        assert b.engines["dec"].strategy == RuntimeStrategy()
        assert b.read_source("enc") is not None and b.read_source("dec") is None
        assert b.read_file("labels.txt") == b"cat\ndog\n"
        with pytest.raises(
            InvalidArgumentError,
            match=r"several engines.*engine=NAME in Python, --engine NAME on the command line",
        ):
            b.read_engine()
        with pytest.raises(InvalidArgumentError, match=r"no engine named 'nope'.*enc, dec"):
            b.read_engine("nope")
        with pytest.raises(InvalidArgumentError, match="no file named"):
            b.read_file("missing.txt")
        b.verify()


@pytest.mark.parametrize("name", ["", "a\nb", 7, "x" * 300])
def test_bad_engine_names_are_refused(tmp_path: Path, mlp_engine: bytes, name: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="engine name"):
        rtxpack.save({name: mlp_engine}, tmp_path / "n.rtxpack")


def test_empty_engine_map_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="at least one engine"):
        rtxpack.save({}, tmp_path / "e.rtxpack")


# ---------------------------------------------------------------------------------------------
# Atomic writes


@pytest.mark.parametrize("where", ["finish", "add_bytes", "interrupt"])
def test_failed_save_keeps_the_existing_bundle(
    tmp_path: Path, mlp_engine: bytes, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    target = rtxpack.save(mlp_engine, tmp_path / "model.rtxpack", metadata={"v": "1"})
    before = target.read_bytes()

    def boom(*args: Any, **kwargs: Any) -> None:
        if where == "interrupt":
            raise KeyboardInterrupt
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(BundleWriter, "finish" if where != "add_bytes" else "add_bytes", boom)
    with pytest.raises(KeyboardInterrupt if where == "interrupt" else OSError):
        rtxpack.save(mlp_engine, target, metadata={"v": "2"})
    assert target.read_bytes() == before
    assert leftovers(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.rtxpack"]
    with rtxpack.open(target) as b:
        assert b.manifest.metadata == {"v": "1"}


def test_save_replaces_an_existing_bundle_when_complete(tmp_path: Path, mlp_engine: bytes) -> None:
    target = rtxpack.save(mlp_engine, tmp_path / "model.rtxpack", metadata={"v": "1"})
    rtxpack.save(mlp_engine, target, metadata={"v": "2"})
    with rtxpack.open(target) as b:
        assert b.manifest.metadata == {"v": "2"}
    assert leftovers(tmp_path) == []


def test_save_into_a_missing_folder(tmp_path: Path, mlp_engine: bytes) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        rtxpack.save(mlp_engine, tmp_path / "nope" / "m.rtxpack")


# ---------------------------------------------------------------------------------------------
# Reading


def test_read_engine_is_a_zero_copy_view(engine_bundle: Path, mlp_engine: bytes) -> None:
    with rtxpack.open(engine_bundle) as b:
        view = b.read_engine()
        assert isinstance(view, memoryview)
        assert view.readonly
        assert isinstance(view.obj, mmap.mmap)  # a view of the mapped file, not a copy
        info = b.manifest.sections[b.engines["main"].section]
        assert info.offset % 4096 == 0  # aligned: can be handed to TensorRT-RTX as is
        assert view.nbytes == len(mlp_engine) and view == mlp_engine
        del view


def test_view_outlives_close_safely(engine_bundle: Path, mlp_engine: bytes) -> None:
    b = rtxpack.open(engine_bundle)
    view = b.read_engine()
    b.close()
    assert bytes(view) == mlp_engine  # the map stays alive while a view exists


def test_compressed_engines_round_trip(tmp_path: Path, mlp_engine: bytes) -> None:
    out = rtxpack.save(mlp_engine, tmp_path / "z.rtxpack", compress_engines=True)
    with rtxpack.open(out) as b:
        assert b.manifest.sections[0].codec == "zstd"
        assert bytes(b.read_engine()) == mlp_engine


def test_verify_detects_a_changed_engine(tmp_path: Path, engine_bundle: Path) -> None:
    raw = bytearray(engine_bundle.read_bytes())
    raw[4096 + 100] ^= 0xFF
    path = tmp_path / "bad.rtxpack"
    path.write_bytes(bytes(raw))
    with rtxpack.open(path) as b:  # opening reads only the manifest: still fine
        with pytest.raises(IntegrityError, match="engine/'main' is corrupted"):
            b.read_engine()
        with pytest.raises(IntegrityError):
            b.verify()
        assert bytes(b.read_engine(verify=False)) == bytes(
            raw[4096 : 4096 + len(b.read_engine(verify=False))]
        )


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no such bundle"):
        rtxpack.open(tmp_path / "missing.rtxpack")
    with pytest.raises(InvalidArgumentError, match="is a folder"):
        rtxpack.open(tmp_path)
    (tmp_path / "x.onnx").write_bytes(b"\x08\x07" * 100)
    with pytest.raises(NotABundleError, match="not an rtxpack bundle"):
        rtxpack.open(tmp_path / "x.onnx")


def test_inspect_is_plain_json_data(onnx_bundle: Path) -> None:
    data = rtxpack.inspect(onnx_bundle)
    again = json.loads(json.dumps(data))
    assert again == data
    assert data["format_version"] == "1.1"
    assert data["file_size"] == onnx_bundle.stat().st_size
    assert data["engines"][0]["name"] == "main"
    assert data["engines"][0]["strategy"]["cuda_graph_strategy"] == "disabled"
    assert {s["kind"] for s in data["sections"]} == {"engine", "source", "samples"}


# ---------------------------------------------------------------------------------------------
# The JSON Schema of the manifest


@pytest.mark.parametrize("fixture", ["onnx_bundle", "engine_bundle", "multi_bundle"])
def test_every_written_manifest_matches_the_schema(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    path: Path = request.getfixturevalue(fixture)
    validator = jsonschema.Draft202012Validator(schema)
    errors = [e.message for e in validator.iter_errors(raw_manifest(path))]
    assert errors == []
    assert list(validator.iter_errors(rtxpack.inspect(path))) == []


def test_the_schema_rejects_a_broken_manifest(onnx_bundle: Path) -> None:
    """The schema is not vacuous: it refuses what the reader refuses."""
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    m = raw_manifest(onnx_bundle)
    m["sections"][0]["codec"] = "lz4"
    m["engines"][0]["strategy"]["cuda_graph_strategy"] = "sometimes"
    del m["engines"][0]["trt_version"]
    assert len(list(validator.iter_errors(m))) >= 3


# ---------------------------------------------------------------------------------------------
# CLI


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """stderr ends with exactly one error line (build progress lines may come before it)."""
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("rtxpack: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0], err
    assert not any("Traceback" in line for line in err)
    return errors[0]


def test_cli_build_inspect_verify_extract(
    tmp_path: Path, onnx_mlp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.rtxpack"
    status = main(
        [
            "build", str(onnx_mlp), "-o", str(out), "--shape", "x=1x16:4x16:8x16", "-q",
            "--dynamic-shapes-strategy", "eager", "--cuda-graph-strategy", "whole_graph_capture",
            "--meta", "team=cli",
        ]
    )  # fmt: skip
    assert status == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with rtxpack.open(out) as b:
        info = b.engines["main"]
        assert info.strategy.dynamic_shapes_kernel_specialization_strategy.value == "eager"
        assert info.strategy.cuda_graph_strategy.value == "whole_graph_capture"
        assert info.profiles[0]["x"].opt == (4, 16)
        assert b.manifest.metadata == {"team": "cli"}
        engine = bytes(b.read_engine())

    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "format 1.1" in text and "engine    main" in text
    assert "dynamic shapes: eager" in text and "input     x  float32  [-1, 16]" in text

    assert main(["inspect", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == json.loads(json.dumps(rtxpack.inspect(out)))

    assert main(["verify", str(out)]) == 0
    assert "OK" in capsys.readouterr().out

    assert main(["extract", str(out), "-o", str(tmp_path / "e.engine")]) == 0
    assert (tmp_path / "e.engine").read_bytes() == engine
    assert main(["extract", str(out), "--source", "-o", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").read_bytes() == onnx_mlp.read_bytes()


def test_cli_extract_to_standard_output_is_a_usage_error(
    tmp_path: Path,
    onnx_mlp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """'-o -' wrote a file literally named '-'; extract only ever writes a verified file."""
    out = tmp_path / "b.rtxpack"
    rtxpack.save(onnx_mlp, out, shapes={"x": ((1, 16), (4, 16), (8, 16))}, samples=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["extract", str(out), "-o", "-"])
    assert exc.value.code == 2
    assert "standard output" in capsys.readouterr().err
    assert not (tmp_path / "-").exists()


def test_cli_pack(tmp_path: Path, mlp_engine: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(mlp_engine)
    out = tmp_path / "p.rtxpack"
    assert main(["pack", str(engine), "-o", str(out), "--allocation-strategy", "user_managed"]) == 0
    with rtxpack.open(out) as b:
        assert bytes(b.read_engine()) == mlp_engine
        assert b.engines["main"].strategy.execution_context_allocation_strategy.value == (
            "user_managed"
        )
    capsys.readouterr()
    assert main(["extract", str(out), "--engine", "nope", "-o", str(tmp_path / "x")]) == 1
    assert "no engine named 'nope'" in one_error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_cli_failures_are_one_clear_line(
    tmp_path: Path, onnx_mlp: Path, engine_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_bundle = tmp_path / "notes.txt"
    not_bundle.write_text("hello")
    bad = tmp_path / "bad.rtxpack"
    raw = bytearray(engine_bundle.read_bytes())
    raw[4096 + 10] ^= 1
    bad.write_bytes(bytes(raw))
    cut = tmp_path / "cut.rtxpack"
    cut.write_bytes(engine_bundle.read_bytes()[:5000])
    cases = [
        (["inspect", str(not_bundle)], "not an rtxpack bundle"),
        (["inspect", str(tmp_path / "missing.rtxpack")], "no such bundle"),
        (["verify", str(bad)], "corrupted"),
        (["verify", str(cut)], "truncated"),
        (["inspect", "--json", str(cut)], "truncated"),
        (["build", str(onnx_mlp), "-o", str(tmp_path / "o.rtxpack")], "dynamic inputs"),
        (["build", str(not_bundle), "-o", str(tmp_path / "o.rtxpack")], "takes an .onnx model"),
        (["pack", str(not_bundle), "-o", str(tmp_path / "o.rtxpack")], "not a TensorRT-RTX"),
        (["extract", str(bad), "-o", str(tmp_path / "o.engine")], "corrupted"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 1, argv
        assert message in one_error_line(capsys), argv
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.rtxpack", "cut.rtxpack", "notes.txt"]


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["build", "m.onnx", "-o", "x", "--cuda-graph-strategy", "sometimes"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_inspect_escapes_terminal_control_sequences(
    tmp_path: Path, mlp_engine: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    """Metadata comes from whoever wrote the bundle: it must not drive the reader's terminal."""
    path = tmp_path / "evil.rtxpack"
    rtxpack.save(mlp_engine, path, metadata={"note": "\x1b[2J\x1b]0;pwned\x07hi"})
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;pwned\\x07hi" in out


def test_write_failures_are_output_errors_and_keep_the_old_bundle(
    tmp_path: Path, mlp_engine: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    target = rtxpack.save(mlp_engine, tmp_path / "model.rtxpack", metadata={"v": "1"})
    before = target.read_bytes()

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(rtxpack.OutputError, match="No space left on device") as err:
        rtxpack.save(mlp_engine, target, metadata={"v": "2"})
    assert isinstance(err.value, OSError)  # still an OSError for callers that catch those
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.rtxpack"]  # no temp file left


def test_unwritable_folder_is_an_output_error(
    tmp_path: Path, mlp_engine: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import secrets

    # As in a read-only folder (the tests run as root, who may write anywhere): the temporary
    # file cannot be created.
    monkeypatch.setattr(secrets, "token_hex", lambda n: "taken")
    (tmp_path / ".m.rtxpack.taken.tmp").mkdir()
    with pytest.raises(rtxpack.OutputError, match=r"cannot write .*m\.rtxpack"):
        rtxpack.save(mlp_engine, tmp_path / "m.rtxpack")
    assert not (tmp_path / "m.rtxpack").exists()


def test_rewriting_keeps_the_file_mode_and_new_files_follow_the_umask(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    path = rtxpack.save(mlp_engine, tmp_path / "m.rtxpack")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    path.chmod(0o640)
    rtxpack.add_cache(
        path,
        b"cache",
        rtxpack.Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux"),
    )
    assert path.stat().st_mode & 0o777 == 0o640


def test_the_writer_refuses_a_manifest_the_reader_would_refuse(
    tmp_path: Path, mlp_engine: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every writer (save, cache add, migrate, rebuild, import) ends in BundleWriter.finish,
    which reads its manifest back with the reader's rules before anything replaces the target."""
    import conftest

    from rtxpack import Manifest
    from rtxpack._format.container import atomic_output

    target = rtxpack.save(mlp_engine, tmp_path / "m.rtxpack")
    before = target.read_bytes()
    monkeypatch.setattr(BundleWriter, "finish", conftest.ORIGINAL_FINISH)  # not the schema hook
    with (
        pytest.raises(rtxpack.InvalidArgumentError, match=r"could not read back.*metadata"),
        atomic_output(target) as f,
    ):
        w = BundleWriter(f)
        w.add_bytes("engine", "main", mlp_engine)
        with rtxpack.open(before_path := tmp_path / "m.rtxpack") as b:
            engine = b.manifest.engine()
        w.finish(
            Manifest(
                rtxpack_version="0.1.0",
                created_at="2026-11-26T00:00:00Z",
                sections=tuple(w.sections),
                engines=(engine,),
                metadata={"note": "x" * 5000},  # the reader allows 4096 characters
            )
        )
    assert before_path.read_bytes() == before
