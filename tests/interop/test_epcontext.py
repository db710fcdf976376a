"""EPContext models for ONNX Runtime's TensorRT-RTX execution provider: export, import, and the
hostile models import must refuse. Every engine here is a real TensorRT-RTX engine."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import rtxpack
from rtxpack import EpContextLimits, export_epcontext, import_epcontext
from rtxpack._caches import edit as _edit
from rtxpack._exceptions import ImportFormatError, InvalidArgumentError, RtxpackError
from rtxpack._format.manifest import Environment
from rtxpack._interop import epcontext
from rtxpack._strategy import CudaGraphStrategy, RuntimeStrategy

ENV = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "windows")


def _node(model_path: Path) -> onnx.NodeProto:
    return onnx.load(str(model_path), load_external_data=False).graph.node[0]


def _attr(node: onnx.NodeProto, name: str) -> Any:
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    raise KeyError(name)


def _signature(path: Path) -> list[tuple[Any, ...]]:
    with rtxpack.open(path) as b:
        return [
            (e.name, e.inputs, e.outputs, e.profiles, e.strategy, e.trt_version,
             e.compute_capabilities, e.hardware_portable, bytes(b.read_engine(e.name)))
            for e in b.manifest.engines
        ]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Export, and round trips


@pytest.mark.parametrize("embed", [True, False])
def test_round_trip_keeps_engine_bytes_and_signature(
    tmp_path: Path, onnx_bundle: Path, embed: bool
) -> None:
    out = export_epcontext(onnx_bundle, tmp_path / "model_ctx.onnx", embed=embed)
    onnx.checker.check_model(str(out.model), full_check=True)
    node = _node(out.model)
    assert (node.op_type, node.domain) == ("EPContext", "com.microsoft")
    assert _attr(node, "embed_mode") == (1 if embed else 0)
    assert _attr(node, "main_context") == 1
    assert _attr(node, "source") == b"NvTensorRTRTXExecutionProvider"
    assert _attr(node, "hardware_architecture") == b"80+"  # a portable default build
    with rtxpack.open(onnx_bundle) as b:
        engine = bytes(b.read_engine())
        assert _attr(node, "ep_sdk_version").decode() == b.manifest.engine().trt_version
    if embed:
        assert out.engine_file is None and _attr(node, "ep_cache_context") == engine
    else:
        assert out.engine_file == tmp_path / "model_ctx.engine"
        assert _attr(node, "ep_cache_context") == b"model_ctx.engine"
        assert out.engine_file.read_bytes() == engine
    # the source travels beside the model, named by onnx_model_filename
    assert out.source == tmp_path / "model_ctx.source.onnx"
    assert _attr(node, "onnx_model_filename") == b"model_ctx.source.onnx"
    with rtxpack.open(onnx_bundle) as b:
        assert out.source.read_bytes() == b.read_source()

    back = import_epcontext(out.model, tmp_path / "back.rtxpack", source=out.source)
    assert _signature(back) == _signature(onnx_bundle)
    with rtxpack.open(back) as b:
        with rtxpack.open(onnx_bundle) as orig:
            assert b.read_source() == orig.read_source()
            assert b.manifest.engine().source_digest == orig.manifest.engine().source_digest
        record = json.loads(b.read_file("epcontext.json"))
        assert record["nodes"][0]["embed_mode"] == (1 if embed else 0)
        b.verify()


def test_graph_io_declares_names_dtypes_and_symbolic_dims(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    out = export_epcontext(onnx_bundle, tmp_path / "m.onnx")
    graph = onnx.load(str(out.model)).graph
    (x,) = graph.input
    (y,) = graph.output
    assert (x.name, x.type.tensor_type.elem_type) == ("x", TensorProto.FLOAT)
    dims = [d.dim_param or d.dim_value for d in x.type.tensor_type.shape.dim]
    assert dims == ["x_dim0", 16]
    assert [d.dim_param or d.dim_value for d in y.type.tensor_type.shape.dim] == ["y_dim0", 8]
    # the profile min/opt/max ONNX cannot hold travel as model metadata
    meta = {p.key: p.value for p in onnx.load(str(out.model)).metadata_props}
    (entry,) = json.loads(meta["rtxpack.epcontext"]).values()
    assert entry["profiles"] == [{"x": {"min": [1, 16], "opt": [4, 16], "max": [8, 16]}}]


def test_export_refuses_an_engine_without_signature(tmp_path: Path, engine_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no recorded I/O signature"):
        export_epcontext(engine_bundle, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_export_options_and_no_partial_files(tmp_path: Path, onnx_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"\.onnx"):
        export_epcontext(onnx_bundle, tmp_path / "model.bin")
    with pytest.raises(InvalidArgumentError, match="no engine named"):
        export_epcontext(onnx_bundle, tmp_path / "m.onnx", engine="nope")
    with pytest.raises(InvalidArgumentError, match="no runtime cache"):
        export_epcontext(onnx_bundle, tmp_path / "m.onnx", runtime_cache_dir=tmp_path / "rc")
    assert [p.name for p in tmp_path.iterdir()] == []  # nothing written, not even a folder


def test_a_failed_write_leaves_no_model_and_no_partial_file(
    tmp_path: Path, onnx_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: Any, **k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(epcontext, "_write_view", boom)
    with pytest.raises(rtxpack.OutputError):
        export_epcontext(onnx_bundle, tmp_path / "m.onnx", embed=False)
    assert list(tmp_path.iterdir()) == []


def test_runtime_cache_is_written_where_the_provider_reads_it(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    bundle = tmp_path / "b.rtxpack"
    shutil.copy(onnx_bundle, bundle)
    info = _edit.add_cache(bundle, b"CACHE" * 100, ENV)
    out = export_epcontext(
        bundle, tmp_path / "m.onnx", runtime_cache_dir=tmp_path / "rtcache", include_source=False
    )
    onnx.checker.check_model(str(out.model), full_check=True)
    part = _attr(_node(out.model), "partition_name").decode()
    with rtxpack.open(bundle) as b:
        digest = b.section(b.manifest.engine().section).digest
    assert part == f"rtxpack_main_{digest.removeprefix('blake3:')[:12]}"
    # the provider reads <nv_runtime_cache_path>/<partition_name>, the raw serialized cache
    assert out.runtime_cache == tmp_path / "rtcache" / part
    assert out.runtime_cache.read_bytes() == b"CACHE" * 100
    assert out.provider_options == {"nv_runtime_cache_path": str(tmp_path / "rtcache")}
    assert out.source is None
    with pytest.raises(KeyError):
        _attr(_node(out.model), "onnx_model_filename")
    # several caches: the provider reads one file per engine, so one must be chosen
    _edit.add_cache(bundle, b"OTHER", ENV.__class__(**{**ENV.__dict__, "os": "linux"}))
    with pytest.raises(InvalidArgumentError, match="choose one with cache_id"):
        export_epcontext(bundle, tmp_path / "m2.onnx", runtime_cache_dir=tmp_path / "rc2")
    out2 = export_epcontext(
        bundle, tmp_path / "m2.onnx", runtime_cache_dir=tmp_path / "rc2", cache_id=info.id
    )
    # a cache folder that cannot be made is an OutputError, not a raw OSError
    (tmp_path / "afile").write_bytes(b"")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "sub", Path("/proc/no/rc")):
        with pytest.raises(rtxpack.OutputError):
            export_epcontext(bundle, tmp_path / "m3.onnx", runtime_cache_dir=bad, cache_id=info.id)
    assert not (tmp_path / "m3.onnx").exists()
    # an output folder that does not exist: refused before the cache folder is made
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        export_epcontext(bundle, tmp_path / "no" / "m4.onnx", runtime_cache_dir=tmp_path / "rc4",
                         cache_id=info.id)  # fmt: skip
    assert not (tmp_path / "rc4").exists()
    assert out2.runtime_cache is not None and out2.runtime_cache.read_bytes() == b"CACHE" * 100


@pytest.mark.parametrize(
    ("engine", "expected"),
    [("main", "rtxpack_main_0123456789ab"), ("../../etc/x", "rtxpack__.._etc_x_0123456789ab"),
     ("a b/c", "rtxpack_a_b_c_0123456789ab"), ("..", "rtxpack_engine_0123456789ab")],
)  # fmt: skip
def test_partition_names_are_plain_file_names(engine: str, expected: str) -> None:
    name = epcontext.partition_name(engine, "blake3:0123456789abcdef")
    assert name == expected and "/" not in name and "\\" not in name


def test_two_models_sharing_a_runtime_cache_folder_get_one_file_each(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    """Several models usually share one nv_runtime_cache_path, and most engines are 'main':
    the partition name (the cache file's name) carries the engine's digest, so one model's
    cache never replaces another's."""
    from conftest import make_onnx_mlp

    static = rtxpack.save(make_onnx_mlp(tmp_path / "s.onnx", dynamic=False), tmp_path / "s.rtxpack")
    shared = tmp_path / "rtcache"
    written = []
    for i, source in enumerate([onnx_bundle, static]):
        bundle = shutil.copy(source, tmp_path / f"b{i}.rtxpack")
        _edit.add_cache(bundle, f"CACHE{i}".encode(), ENV)
        out = export_epcontext(bundle, tmp_path / f"m{i}.onnx", runtime_cache_dir=shared)
        assert out.runtime_cache is not None
        written.append(out.runtime_cache)
    assert written[0] != written[1]
    assert [p.read_bytes() for p in written] == [b"CACHE0", b"CACHE1"]


def test_cuda_graph_strategy_becomes_a_provider_option(tmp_path: Path, onnx_mlp: Path) -> None:
    from conftest import MLP_SHAPES

    bundle = rtxpack.save(
        onnx_mlp,
        tmp_path / "g.rtxpack",
        shapes=MLP_SHAPES,
        strategy=RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"),
    )
    out = export_epcontext(bundle, tmp_path / "g.onnx")
    onnx.checker.check_model(str(out.model), full_check=True)
    assert out.provider_options == {"enable_cuda_graph": "1"}
    with rtxpack.open(import_epcontext(out.model, tmp_path / "g2.rtxpack")) as b:
        assert (
            b.manifest.engine().strategy.cuda_graph_strategy
            is CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
        )


# ---------------------------------------------------------------------------------------------
# Import of models rtxpack did not write


def _model(
    nodes: list[onnx.NodeProto],
    *,
    inputs: list[onnx.ValueInfoProto] | None = None,
    outputs: list[onnx.ValueInfoProto] | None = None,
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        inputs
        if inputs is not None
        else [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        outputs
        if outputs is not None
        else [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model


def _ctx(
    engine: bytes | str,
    *,
    ins: tuple[str, ...] = ("x",),
    outs: tuple[str, ...] = ("y",),
    domain: str = "com.microsoft",
    **attrs: Any,
) -> onnx.NodeProto:
    embed = 1 if isinstance(engine, bytes) else 0
    base: dict[str, Any] = {"embed_mode": embed, "ep_cache_context": engine}
    base.update(attrs)
    base = {k: v for k, v in base.items() if v is not None}
    return helper.make_node("EPContext", list(ins), list(outs), name="ctx", domain=domain, **base)


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def test_import_a_plugin_style_model(tmp_path: Path, mlp_engine: bytes) -> None:
    """As the EP-ABI plugin writes them: main_context 0, source = the EP name, "80+"."""
    node = _ctx(
        mlp_engine, main_context=0, source="NvTensorRTRTXExecutionProvider",
        hardware_architecture="80+", partition_name="TRTKernel_graph_main_123_0",
        ep_sdk_version="1.0", onnx_model_filename="model.onnx",
    )  # fmt: skip
    path = _save(_model([node]), tmp_path / "model_ctx.onnx")
    with rtxpack.open(import_epcontext(path, tmp_path / "b.rtxpack")) as b:
        e = b.manifest.engine()
        assert e.name == "TRTKernel_graph_main_123_0"
        assert bytes(b.read_engine()) == mlp_engine
        assert e.inputs == (rtxpack.TensorSpec("x", "float32", (-1, 16)),)
        assert e.outputs == (rtxpack.TensorSpec("y", "float32", (-1, 8)),)
        assert e.trt_version.startswith("1.7.1") and e.hardware_portable
        assert e.profiles == ()  # not in the model: ONNX has no min/opt/max
        record = json.loads(b.read_file("epcontext.json"))["nodes"][0]
        assert record["hardware_architecture"] == "80+" and record["main_context"] == 0


@pytest.mark.parametrize(
    "source",
    ["", "NvTensorRTRTXExecutionProvider", "nv_tensorrt_rtx", "NvTensorRtRtxExecutionProvider"],
)
def test_every_spelling_of_the_provider_is_accepted(
    tmp_path: Path, mlp_engine: bytes, source: str
) -> None:
    path = _save(_model([_ctx(mlp_engine, source=source)]), tmp_path / "m.onnx")
    with rtxpack.open(import_epcontext(path, tmp_path / "b.rtxpack")) as b:
        assert bytes(b.read_engine()) == mlp_engine


def test_import_several_nodes_external_in_subfolder(tmp_path: Path, mlp_engine: bytes) -> None:
    from conftest import build_mlp_engine

    other = build_mlp_engine(hidden=4)
    (tmp_path / "engines").mkdir()
    (tmp_path / "engines" / "a.engine").write_bytes(mlp_engine)
    nodes = [
        _ctx("engines/a.engine", partition_name="part_a"),
        _ctx(other, ins=("y",), outs=("z",), partition_name="part_b"),
    ]
    model = _model(
        nodes,
        outputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 4])],
    )
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8]))
    path = _save(model, tmp_path / "m.onnx")
    with rtxpack.open(import_epcontext(path, tmp_path / "b.rtxpack")) as b:
        assert [e.name for e in b.manifest.engines] == ["part_a", "part_b"]
        assert bytes(b.read_engine("part_a")) == mlp_engine
        assert bytes(b.read_engine("part_b")) == other
        assert b.manifest.engine("part_b").inputs[0].name == "y"
        b.verify()
    with pytest.raises(InvalidArgumentError, match="single-engine"):
        import_epcontext(path, tmp_path / "c.rtxpack", source=path)


def _two(engine: bytes, first: str, second: str) -> onnx.ModelProto:
    """Two chained nodes x -> y -> z, with the given partition names."""
    nodes = [
        _ctx(engine, partition_name=first),
        _ctx(engine, ins=("y",), outs=("z",), partition_name=second),
    ]
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])
    model = _model(nodes, outputs=[z])
    model.graph.value_info.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8]))
    return model


def _refused(tmp_path: Path, model: onnx.ModelProto | bytes, match: str, **kw: Any) -> None:
    path = tmp_path / "hostile.onnx"
    path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    out = tmp_path / "out.rtxpack"
    with pytest.raises(RtxpackError, match=match):
        import_epcontext(path, out, **kw)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


HOSTILE: dict[str, tuple[Callable[[bytes], onnx.ModelProto | bytes], str]] = {
    "path traversal": (lambda e: _model([_ctx("../secret.engine")]), "'..'"),
    "deep traversal": (lambda e: _model([_ctx("a/../../secret.engine")]), "'..'"),
    "windows traversal": (lambda e: _model([_ctx("a\\..\\..\\x.engine")]), "'..'"),
    "absolute path": (lambda e: _model([_ctx("/etc/passwd")]), "absolute path"),
    "windows absolute": (lambda e: _model([_ctx("C:\\Windows\\x.engine")]), "absolute path"),
    "unc path": (lambda e: _model([_ctx("\\\\server\\share\\x")]), "absolute path"),
    "nul in path": (lambda e: _model([_ctx("a.engine\x00.txt")]), "NUL"),
    "missing ep_cache_context": (
        lambda e: _model([_ctx(e, ep_cache_context=None)]),
        "ep_cache_context",
    ),
    "missing embed_mode": (lambda e: _model([_ctx(e, embed_mode=None)]), "embed_mode"),
    "embed_mode 7": (lambda e: _model([_ctx(e, embed_mode=7)]), "0 or 1"),
    "string embed_mode": (lambda e: _model([_ctx(e, embed_mode="1")]), "embed_mode"),
    "main_context 2": (lambda e: _model([_ctx(e, main_context=2)]), "main_context"),
    "string main_context": (lambda e: _model([_ctx(e, main_context="1")]), "main_context"),
    "reference to another context": (
        lambda e: _model([_ctx(b"", main_context=0)]),
        "main_context 0",
    ),
    "wrong domain": (lambda e: _model([_ctx(e, domain="ai.onnx.ml")]), "domain"),
    "TensorRT's provider": (
        lambda e: _model([_ctx(e, source="TensorrtExecutionProvider")]),
        "another execution provider",
    ),
    "another provider": (
        lambda e: _model([_ctx(e, source="QNNExecutionProvider")]),
        "another execution provider",
    ),
    "not an engine": (lambda e: _model([_ctx(b"\x7fELF" + bytes(60))]), "TensorRT-RTX engine"),
    "a TensorRT engine": (lambda e: _model([_ctx(b"ftrt" + e[4:])]), "not TensorRT-RTX"),
    "several main contexts": (lambda e: _two(e, "p", "p"), "both claiming the main context"),
    "partition name escapes the cache folder": (
        lambda e: _model([_ctx(e, partition_name="../../.bashrc")]),
        "plain file name",
    ),
    "other nodes": (
        lambda e: _model(
            [_ctx(e), helper.make_node("Relu", ["y"], ["z"])],
            outputs=[helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 8])],
        ),
        "nodes other than EPContext",
    ),
    "no nodes": (lambda e: _model([]), "without nodes"),
    "untyped input": (lambda e: _model([_ctx(e, ins=("w",))]), "no declared type"),
    "double output": (
        lambda e: _model(
            [_ctx(e)], outputs=[helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N"])]
        ),
        "DOUBLE",
    ),
    "huge dimension": (
        lambda e: _model(
            [_ctx(e)], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [2**50])]
        ),
        "dimension",
    ),
    "rank 40": (
        lambda e: _model(
            [_ctx(e)], inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1] * 40)]
        ),
        "rank",
    ),
    "truncated protobuf": (
        lambda e: _model([_ctx(e)]).SerializeToString()[:-100],
        "not a valid ONNX protobuf",
    ),
    # field 7 (graph), length-delimited, declaring 2**40 bytes in a tiny file
    "huge declared length": (
        lambda e: b"\x08\x09\x3a" + bytes([0x80, 0x80, 0x80, 0x80, 0x80, 0x20]) + b"x" * 10,
        "not a valid ONNX protobuf",
    ),
    "not protobuf": (lambda e: b"\xff" * 64, "not a valid ONNX protobuf"),
    "bad rtxpack metadata": (
        lambda e: _with_meta(
            _model([_ctx(e, partition_name="p")]),
            {"p": {"profiles": [{"x": {"min": [9, 16], "opt": [1, 16], "max": [1, 16]}}]}},
        ),
        "shape ranges|min <= opt",
    ),
    "rtxpack metadata not json": (lambda e: _with_meta(_model([_ctx(e)]), "{"), "invalid JSON"),
    "one name twice among the inputs": (lambda e: _model([_ctx(e, ins=("x", "x"))]), "distinct"),
    "an input that is also an output": (lambda e: _model([_ctx(e, outs=("x",))]), "distinct"),
    "an empty tensor name": (
        lambda e: _model(
            [_ctx(e, ins=("",))], inputs=[helper.make_tensor_value_info("", TensorProto.FLOAT, [1])]
        ),
        "non-empty",
    ),
    "a profile without the dynamic input": (
        lambda e: _with_meta(_model([_ctx(e, partition_name="p")]), {"p": {"profiles": [{}]}}),
        "a profile range for 'x'",
    ),
}


def _with_meta(model: onnx.ModelProto, value: Any) -> onnx.ModelProto:
    helper.set_model_props(
        model, {"rtxpack.epcontext": value if isinstance(value, str) else json.dumps(value)}
    )
    return model


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_models_are_refused(tmp_path: Path, mlp_engine: bytes, case: str) -> None:
    make, match = HOSTILE[case]
    (tmp_path / "secret.engine").write_bytes(mlp_engine)  # what a traversal would reach
    sub = tmp_path / "sub"
    sub.mkdir()
    _refused(sub, make(mlp_engine), match)


def test_symlink_out_of_the_folder_is_refused(tmp_path: Path, mlp_engine: bytes) -> None:
    outside = tmp_path / "outside.engine"
    outside.write_bytes(mlp_engine)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "e.engine").symlink_to(outside)
    (folder / "d").symlink_to(tmp_path)
    _refused(folder, _model([_ctx("e.engine")]), "outside")
    _refused(folder, _model([_ctx("d/outside.engine")]), "outside")
    # a link that stays inside the folder is fine
    (folder / "real.engine").write_bytes(mlp_engine)
    (folder / "inside.engine").symlink_to(folder / "real.engine")
    path = _save(_model([_ctx("inside.engine")]), folder / "ok.onnx")
    with rtxpack.open(import_epcontext(path, folder / "ok.rtxpack")) as b:
        assert bytes(b.read_engine()) == mlp_engine


def test_special_and_missing_files_are_refused(tmp_path: Path, mlp_engine: bytes) -> None:
    os.mkfifo(tmp_path / "fifo.engine")
    _refused(tmp_path, _model([_ctx("fifo.engine")]), "FIFO")  # and no hang
    (tmp_path / "dir.engine").mkdir()
    _refused(tmp_path, _model([_ctx("dir.engine")]), "folder")
    _refused(tmp_path, _model([_ctx("gone.engine")]), "not in")
    (tmp_path / "junk.engine").write_bytes(b"MZ" + bytes(100))
    _refused(tmp_path, _model([_ctx("junk.engine")]), "TensorRT-RTX engine")
    os.mkfifo(tmp_path / "model_fifo.onnx")
    with pytest.raises(ImportFormatError, match="FIFO"):
        import_epcontext(tmp_path / "model_fifo.onnx", tmp_path / "o.rtxpack")
    with pytest.raises(InvalidArgumentError, match="no such file"):
        import_epcontext(tmp_path / "none.onnx", tmp_path / "o.rtxpack")


def test_size_limits_apply_before_reading(tmp_path: Path, mlp_engine: bytes) -> None:
    (tmp_path / "e.engine").write_bytes(mlp_engine)
    small = EpContextLimits(max_engine_bytes=len(mlp_engine) - 1)
    _refused(tmp_path, _model([_ctx("e.engine")]), "above the limit", limits=small)
    model = _model([_ctx(mlp_engine)])
    tiny = EpContextLimits(max_model_bytes=model.ByteSize() - 1)
    _refused(tmp_path, model, "above the limit", limits=tiny)
    few = EpContextLimits(max_nodes=1)
    _refused(tmp_path, _two(mlp_engine, "a", "b"), "at most 1", limits=few)
    long_attr = _model([_ctx(mlp_engine, hardware_architecture="x" * 5000)])
    _refused(tmp_path, long_attr, "at most 4096")


def test_import_never_lets_onnx_resolve_external_data(
    tmp_path: Path, mlp_engine: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An initializer that names /etc/passwd as external data is never opened."""
    model = _model([_ctx(mlp_engine)])
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], bytes(16), raw=True)
    onnx.external_data_helper.set_external_data(t, location="/etc/passwd", length=16)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    model.graph.initializer.append(t)
    path = _save(model, tmp_path / "m.onnx")
    opened: list[str] = []
    real_open = os.open

    def spy(p: Any, *a: Any, **k: Any) -> int:
        opened.append(str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "open", spy)
    import_epcontext(path, tmp_path / "b.rtxpack")
    assert "/etc/passwd" not in opened


def test_the_samples_still_run_after_a_round_trip(tmp_path: Path, onnx_bundle: Path) -> None:
    """The bundle the import writes is a working bundle: its I/O matches its samples' names."""
    out = export_epcontext(onnx_bundle, tmp_path / "m.onnx", embed=False)
    back = import_epcontext(out.model, tmp_path / "back.rtxpack", source=out.source)
    with rtxpack.open(onnx_bundle) as b:
        samples = b.read_samples()
    assert samples is not None
    with rtxpack.open(back) as b:
        e = b.manifest.engine()
        assert [t.name for t in e.inputs] == list(samples["inputs"])
        x = samples["inputs"]["x"]
        assert e.profiles[0]["x"].contains(tuple(np.asarray(x).shape))


# ---------------------------------------------------------------------------------------------
# The command line


def test_cli_export_and_import(
    tmp_path: Path, onnx_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtxpack.cli import main

    bundle = tmp_path / "b.rtxpack"
    shutil.copy(onnx_bundle, bundle)
    _edit.add_cache(bundle, b"CACHE", ENV)
    model = tmp_path / "model_ctx.onnx"
    argv = ["export-epcontext", str(bundle), "-o", str(model), "--external"]
    assert main([*argv, "--runtime-cache-dir", str(tmp_path / "rc")]) == 0
    printed = capsys.readouterr().out
    assert f"wrote engine {tmp_path / 'model_ctx.engine'}" in printed
    assert f"nv_runtime_cache_path={tmp_path / 'rc'}" in printed
    (cache,) = (tmp_path / "rc").iterdir()
    assert cache.name.startswith("rtxpack_main_") and cache.read_bytes() == b"CACHE"
    src = tmp_path / "model_ctx.source.onnx"
    assert (
        main(
            [
                "import-epcontext",
                str(model),
                "-o",
                str(tmp_path / "c.rtxpack"),
                "--source",
                str(src),
            ]
        )
        == 0
    )
    assert "imported 'main'" in capsys.readouterr().out
    assert _signature(tmp_path / "c.rtxpack") == _signature(onnx_bundle)
    graphs = ["--cuda-graph-strategy", "whole_graph_capture"]
    assert main(["import-epcontext", str(model), "-o", str(tmp_path / "d.rtxpack"), *graphs]) == 0
    with rtxpack.open(tmp_path / "d.rtxpack") as b:
        strategy = b.manifest.engine().strategy
        assert strategy.cuda_graph_strategy is CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--embed"])
    assert exc.value.code == 2  # --embed and --external exclude each other


def test_cli_refuses_a_hostile_model_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtxpack.cli import main

    path = _save(_model([_ctx("../../etc/passwd")]), tmp_path / "m.onnx")
    assert main(["import-epcontext", str(path), "-o", str(tmp_path / "o.rtxpack")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtxpack: error: EPContext model") and err.count("\n") == 1
    assert not (tmp_path / "o.rtxpack").exists()


def test_export_refuses_a_name_the_provider_would_refit(tmp_path: Path, onnx_bundle: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="weight-stripped"):
        export_epcontext(onnx_bundle, tmp_path / "m.stripped.onnx", embed=False)
    assert list(tmp_path.iterdir()) == []


def test_two_nodes_that_would_get_the_same_engine_name_are_refused(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    model = _with_meta(_two(mlp_engine, "a", "b"), {"a": {"engine": "e"}, "b": {"engine": "e"}})
    _refused(tmp_path, model, "both named 'e'")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_models_only_ever_raise_rtxpack_errors(
    tmp_path_factory: pytest.TempPathFactory, mlp_engine: bytes, data: st.DataObject
) -> None:
    """Flipped, cut and inserted bytes: a bundle or an RtxpackError, never anything else."""
    blob = bytearray(_two(mlp_engine, "a", "b").SerializeToString())
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        at = data.draw(st.integers(0, len(blob) - 1))
        if op == "flip":
            blob[at] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del blob[at : at + data.draw(st.integers(1, 64))]
        else:
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    folder = tmp_path_factory.mktemp("fuzz")
    (folder / "m.onnx").write_bytes(bytes(blob))
    try:
        import_epcontext(folder / "m.onnx", folder / "o.rtxpack")
    except RtxpackError:
        assert not (folder / "o.rtxpack").exists()


def test_a_link_swapped_in_after_the_check_is_refused(tmp_path: Path, mlp_engine: bytes) -> None:
    """The engine is opened component by component without following links, so a folder
    replaced by a link to elsewhere between the containment check and the open is refused."""
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "e.engine").write_bytes(mlp_engine)
    (tmp_path / "d").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ImportFormatError, match="cannot be opened"):
        epcontext._open_regular(tmp_path / "d" / "e.engine", "engine file", 1 << 30, no_links=True)
    fd, size = epcontext._open_regular(
        tmp_path / "elsewhere" / "e.engine", "engine file", 1 << 30, no_links=True
    )
    os.close(fd)
    assert size == len(mlp_engine)


def test_the_model_itself_may_be_a_link(tmp_path: Path, mlp_engine: bytes) -> None:
    real = _save(_model([_ctx(mlp_engine)]), tmp_path / "real.onnx")
    (tmp_path / "link.onnx").symlink_to(real)
    with rtxpack.open(import_epcontext(tmp_path / "link.onnx", tmp_path / "b.rtxpack")) as b:
        assert bytes(b.read_engine()) == mlp_engine


def test_a_linked_model_reads_external_engines_from_the_links_folder(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    """ONNX Runtime joins ep_cache_context to the folder of the model path it was given; so
    does import, so a link to a model elsewhere never reads the files beside its target."""
    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir()
    here.mkdir()
    (elsewhere / "e.engine").write_bytes(mlp_engine)
    _save(_model([_ctx("e.engine")]), elsewhere / "m.onnx")
    (here / "m.onnx").symlink_to(elsewhere / "m.onnx")
    with pytest.raises(ImportFormatError, match=f"e.engine is not in {here}"):
        import_epcontext(here / "m.onnx", here / "b.rtxpack")
    assert not (here / "b.rtxpack").exists()
    (here / "e.engine").write_bytes(mlp_engine[:-1] + b"!")
    with rtxpack.open(import_epcontext(here / "m.onnx", here / "b.rtxpack")) as b:
        assert bytes(b.read_engine()) == mlp_engine[:-1] + b"!"


# ---------------------------------------------------------------------------------------------
# Protobuf bombs: bounded before protobuf expands them


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _many_empty_nodes(engine: bytes, count: int) -> bytes:
    """A valid model plus a second graph field (protobuf merges it) of ``count`` empty nodes:
    2 bytes each on the wire, a few hundred bytes each once parsed."""
    nodes = b"\x0a\x00" * count
    return _model([_ctx(engine)]).SerializeToString() + b"\x3a" + _varint(len(nodes)) + nodes


def _nested_graphs(engine: bytes, levels: int) -> onnx.ModelProto:
    inner = helper.make_graph([], "g0", [], [])
    for i in range(levels):
        node = helper.make_node("If", ["c"], [], then_branch=inner)
        inner = helper.make_graph([node], f"g{i + 1}", [], [])
    return _model([_ctx(engine, partition_name="p", notes=None), *inner.node])


@pytest.mark.parametrize(
    ("case", "match"),
    [("many nodes", "protobuf fields"), ("packed numbers", "protobuf fields"),
     ("deep nesting", "nested deeper")],
)  # fmt: skip
def test_protobuf_bombs_are_refused_before_parsing(
    tmp_path: Path, mlp_engine: bytes, case: str, match: str
) -> None:
    """A few MB of tiny repeated fields would parse into GBs of objects: the wire format is
    counted first, so these end in an ImportFormatError in well under a second, with no
    more memory than the file."""
    if case == "many nodes":
        blob: onnx.ModelProto | bytes = _many_empty_nodes(mlp_engine, 2_000_000)
    elif case == "packed numbers":
        model = _model([_ctx(mlp_engine)])
        model.graph.initializer.append(
            helper.make_tensor("w", TensorProto.INT64, [1_000_000], [0] * 1_000_000)
        )
        blob = model
    else:
        blob = _nested_graphs(mlp_engine, 12)  # graph > node > attribute: 36 levels
    _refused(tmp_path, blob, match)


def test_the_protobuf_field_count_includes_every_level(tmp_path: Path, mlp_engine: bytes) -> None:
    path = _save(_two(mlp_engine, "a", "b"), tmp_path / "m.onnx")
    import_epcontext(path, tmp_path / "ok.rtxpack")  # within the default limits
    _refused(tmp_path, _two(mlp_engine, "a", "b"), "protobuf fields",
             limits=EpContextLimits(max_protobuf_fields=20))  # fmt: skip
    shallow = EpContextLimits(max_protobuf_depth=3)  # model > graph > value info > type > ...
    _refused(tmp_path, _two(mlp_engine, "a", "b"), "nested deeper", limits=shallow)


# ---------------------------------------------------------------------------------------------
# Outputs never replace inputs


@pytest.mark.parametrize(
    ("bundle_name", "output", "embed"),
    [("m.engine", "m.onnx", False), ("x.onnx", "x.onnx", True),
     ("y.source.onnx", "y.onnx", True), ("l.rtxpack", "link.onnx", True)],
)  # fmt: skip
def test_export_never_replaces_the_bundle_it_reads(
    tmp_path: Path, onnx_bundle: Path, bundle_name: str, output: str, embed: bool
) -> None:
    bundle = tmp_path / bundle_name
    shutil.copy(onnx_bundle, bundle)
    (tmp_path / "link.onnx").symlink_to(tmp_path / "l.rtxpack")
    before = bundle.read_bytes()
    with pytest.raises(InvalidArgumentError, match="that is the bundle"):
        export_epcontext(bundle, tmp_path / output, embed=embed)
    assert bundle.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([bundle_name, "link.onnx"])


def test_import_never_replaces_the_files_it_reads(tmp_path: Path, mlp_engine: bytes) -> None:
    (tmp_path / "e.engine").write_bytes(mlp_engine)
    (tmp_path / "src.onnx").write_bytes(b"source")
    model = _save(_model([_ctx("e.engine")]), tmp_path / "m.onnx")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    for out, what in [("m.onnx", "EPContext model"), ("e.engine", "engine file"),
                      ("src.onnx", "source model")]:  # fmt: skip
        with pytest.raises(InvalidArgumentError, match=f"that is the {what}"):
            import_epcontext(model, tmp_path / out, source=tmp_path / "src.onnx")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_two_outputs_of_one_export_may_not_be_one_file(tmp_path: Path) -> None:
    from rtxpack._format import container

    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(InvalidArgumentError, match="that is the model"):
        container.distinct_outputs({"model": tmp_path / "a", "cache": tmp_path / "link"}, {})
    container.distinct_outputs({"model": tmp_path / "a", "cache": tmp_path / "b"}, {})


# ---------------------------------------------------------------------------------------------
# What ONNX and ONNX Runtime make of an export


def _bundle_of_every_dtype(path: Path, engine: bytes) -> Path:
    """Three engines (real engine bytes; the signatures are what export must express): dynamic
    and static dimensions, two profiles, every element type ONNX Runtime's EPContext takes, and
    one it does not."""
    from rtxpack._format import container
    from rtxpack._format.manifest import DTYPES, EngineInfo, Manifest, ShapeRange, TensorSpec

    def rng(lo: tuple[int, ...], hi: tuple[int, ...]) -> ShapeRange:
        return ShapeRange(lo, hi, hi)

    dynamic = EngineInfo(
        name="dynamic", section=0, trt_version="1.7.1.116", compute_capabilities=(),
        hardware_portable=True, platform="linux_x86_64",
        inputs=(TensorSpec("x", "float16", (-1, 16)), TensorSpec("ids", "int64", (-1, -1))),
        outputs=(TensorSpec("y", "bfloat16", (-1, 8)),),
        profiles=({"x": rng((1, 16), (8, 16)), "ids": rng((1, 1), (8, 128))},
                  {"x": rng((9, 16), (64, 16)), "ids": rng((9, 1), (64, 512))}),
        strategy=RuntimeStrategy(),
    )  # fmt: skip
    every = EngineInfo(
        name="every dtype", section=1, trt_version="1.7.1.116", compute_capabilities=("8.9",),
        hardware_portable=False, platform="windows_x86_64",
        inputs=tuple(TensorSpec(f"in_{d}", d, (2, 4)) for d in epcontext._EPCONTEXT_DTYPES),
        outputs=tuple(TensorSpec(f"out_{d}", d, (2, 4)) for d in epcontext._EPCONTEXT_DTYPES),
        profiles=(), strategy=RuntimeStrategy(),
    )  # fmt: skip
    fp8 = replace(every, name="fp8", section=2,
                  inputs=(TensorSpec("q", "float8_e4m3fn", (2, 4)),))  # fmt: skip
    assert set(DTYPES) - set(epcontext._EPCONTEXT_DTYPES) == {
        "float8_e4m3fn", "int4", "float4_e2m1fn_x2", "float8_e8m0fnu"
    }  # fmt: skip
    with container.atomic_output(path) as f:
        w = container.BundleWriter(f)
        w.add_bytes("engine", "dynamic", engine)
        w.add_bytes("engine", "every dtype", engine + b"\0")
        w.add_bytes("engine", "fp8", engine + b"\1")
        w.finish(
            Manifest(rtxpack_version="0", created_at="2026-11-27T00:00:00Z",
                     sections=tuple(w.sections), engines=(dynamic, every, fp8))
        )  # fmt: skip
    return path


@pytest.mark.parametrize("embed", [True, False])
def test_exports_of_every_dtype_and_several_profiles_pass_the_full_onnx_check(
    tmp_path: Path, mlp_engine: bytes, embed: bool
) -> None:
    bundle = _bundle_of_every_dtype(tmp_path / "b.rtxpack", mlp_engine)
    for name in ("dynamic", "every dtype"):
        out = export_epcontext(bundle, tmp_path / f"{name[:5]}.onnx", engine=name, embed=embed)
        onnx.checker.check_model(str(out.model), full_check=True)
        model = onnx.load(str(out.model))
        with rtxpack.open(bundle) as b:
            info = b.manifest.engine(name)
        declared = [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input]
        assert declared == [(t.name, epcontext._ONNX_TYPES[t.dtype]) for t in info.inputs]
        back = import_epcontext(out.model, tmp_path / f"{name[:5]}.rtxpack")
        with rtxpack.open(back) as b:
            e = b.manifest.engine()
            assert (e.name, e.inputs, e.outputs, e.profiles, e.platform) == (
                info.name, info.inputs, info.outputs, info.profiles, info.platform
            )  # fmt: skip
        ort = pytest.importorskip("onnxruntime")
        with pytest.raises(Exception, match="NOT_IMPLEMENTED"):  # valid, only not CPU-runnable
            ort.InferenceSession(str(out.model), providers=["CPUExecutionProvider"])


def test_export_refuses_io_types_onnx_runtime_would_call_invalid(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    """ONNX Runtime's EPContext schema has no float8/int4/float4 inputs: such a model fails to
    load as INVALID_GRAPH whatever the provider, so export says so instead of writing it."""
    bundle = _bundle_of_every_dtype(tmp_path / "b.rtxpack", mlp_engine)
    with pytest.raises(InvalidArgumentError, match="'q' of type float8_e4m3fn"):
        export_epcontext(bundle, tmp_path / "fp8.onnx", engine="fp8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.rtxpack"]
    # what ONNX Runtime itself says about such a model
    ort = pytest.importorskip("onnxruntime")
    model = _model([_ctx(mlp_engine)], inputs=[helper.make_tensor_value_info(
        "x", TensorProto.FLOAT8E4M3FN, ["N", 16])])  # fmt: skip
    path = _save(model, tmp_path / "fp8.onnx")
    with pytest.raises(Exception, match="INVALID_GRAPH"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_runtime_without_the_provider_says_which_provider_the_model_needs(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    """What a user sees running an export on a plain ONNX Runtime (docs/interop.md quotes it):
    the EPContext node has no CPU kernel, and the error names the provider to add."""
    ort = pytest.importorskip("onnxruntime")
    out = export_epcontext(onnx_bundle, tmp_path / "m.onnx")
    with pytest.raises(Exception, match="NvTensorRTRTXExecutionProvider") as exc:
        ort.InferenceSession(str(out.model), providers=["CPUExecutionProvider"])
    assert "EPContext" in str(exc.value)


def test_oversized_files_are_refused_by_the_default_limits_without_reading(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    """Sparse files: a 64 GiB + 1 engine and a 2 GiB model are refused from their size alone."""
    with open(tmp_path / "e.engine", "wb") as f:
        f.write(mlp_engine)
        f.truncate((64 << 30) + 1)
    _refused(tmp_path, _model([_ctx("e.engine")]), "above the limit")
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(2 << 30)
    with pytest.raises(ImportFormatError, match="above the limit"):
        import_epcontext(big, tmp_path / "o.rtxpack")


@pytest.mark.parametrize(
    ("version", "mask"), [((0, 0, 0), 0), ((255, 255, 255), 0xFF), ((1, 7, 1), 0x00)]
)
def test_engines_with_odd_header_fields_still_make_readable_bundles(
    tmp_path: Path, mlp_engine: bytes, version: tuple[int, int, int], mask: int
) -> None:
    """The header is only sniffed (version and targets); odd values there are recorded as they
    are, the bundle reads back, and check/load decide about them later."""
    engine = bytearray(mlp_engine)
    engine[24:27] = bytes(version)
    engine[32] = mask
    path = _save(_model([_ctx(bytes(engine))]), tmp_path / "m.onnx")
    with rtxpack.open(import_epcontext(path, tmp_path / "b.rtxpack")) as b:
        e = b.manifest.engine()
        assert e.trt_version == ".".join(map(str, version))
        assert bytes(b.read_engine()) == bytes(engine)
        b.verify()
