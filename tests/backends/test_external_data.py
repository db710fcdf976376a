"""A bundle's ONNX source cannot make rtxpack read files outside the bundle (external data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from rtxpack import DamagedBundleError  # noqa: E402
from rtxpack._backends.external_data import (  # noqa: E402
    external_data_locations,
    refuse_outside_data,
)
from rtxpack._backends.onnxruntime import OnnxRuntimeModule  # noqa: E402

SECRET = np.array([1.5, 2.5, 3.5, 4.5], dtype=np.float32)


def _external(name: str, location: str) -> TensorProto:
    t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4])
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


def _model(where: str, location: str) -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    inits, nodes = [], [helper.make_node("Add", ["x", "w"], ["y"])]
    if where == "initializer":
        inits = [_external("w", location)]
    elif where == "constant":
        nodes.insert(0, helper.make_node("Constant", [], ["w"], value=_external("c", location)))
    elif where == "subgraph":
        then = helper.make_graph(
            [helper.make_node("Identity", ["s"], ["w_then"])],
            "then",
            [],
            [helper.make_tensor_value_info("w_then", TensorProto.FLOAT, [4])],
            initializer=[_external("s", location)],
        )
        other = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["w_else"])],
            "else",
            [],
            [helper.make_tensor_value_info("w_else", TensorProto.FLOAT, [4])],
        )
        cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
        inits = [cond]
        nodes.insert(
            0, helper.make_node("If", ["cond"], ["w"], then_branch=then, else_branch=other)
        )
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def secret_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "secret.bin"
    path.write_bytes(SECRET.tobytes())
    return path


def test_the_attack_is_real_onnx_runtime_reads_the_file(secret_here: Path) -> None:
    """Without the guard, ONNX Runtime given the model's bytes reads ./secret.bin (with graph
    optimizations off; with them on, this version fails to load instead)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(_model("initializer", "secret.bin"), options)
    (y,) = session.run(None, {"x": np.zeros(4, np.float32)})
    np.testing.assert_array_equal(y, SECRET)


@pytest.mark.parametrize("where", ["initializer", "constant", "subgraph"])
@pytest.mark.parametrize("location", ["secret.bin", "../secret.bin", "/etc/hostname", "sub/x"])
def test_the_fallback_refuses_external_data(secret_here: Path, where: str, location: str) -> None:
    model = _model(where, location)
    assert external_data_locations(onnx.ModelProto.FromString(model)) == [location]
    with pytest.raises(DamagedBundleError, match="external data outside the bundle") as info:
        OnnxRuntimeModule(model, name="main")
    assert repr(location) in str(info.value)


def test_files_the_caller_put_beside_the_model_are_allowed() -> None:
    model = _model("initializer", "weights.data")
    refuse_outside_data(model, what="m", allowed={"weights.data"})
    with pytest.raises(DamagedBundleError):
        refuse_outside_data(model, what="m", allowed={"other.data"})


def test_a_model_without_external_data_runs(secret_here: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4], [1.0, 1.0, 1.0, 1.0])
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    assert external_data_locations(model) == []
    OnnxRuntimeModule(data, name="main").close()


def test_garbage_is_a_damaged_bundle() -> None:
    with pytest.raises(DamagedBundleError, match="not a valid ONNX model"):
        refuse_outside_data(b"\xff\xff\xff\xff", what="the source")
