"""Shared fixtures: small real TensorRT-RTX engines and bundles, built on the CPU in seconds."""

from __future__ import annotations

import json
import os
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from hypothesis import settings

import rtxpack
from rtxpack._format import container

ROOT = Path(__file__).resolve().parents[1]
# The tests test the rtxpack of this checkout, never another one on sys.path (an installed copy,
# another worktree's editable install): run them from the checkout's root, `python -m pytest`.
assert Path(rtxpack.__file__).resolve().parent == ROOT / "rtxpack", (
    f"the tests import {rtxpack.__file__}, not {ROOT / 'rtxpack'}: run `python -m pytest` from "
    f"{ROOT}"
)

# Property tests are reproducible: a fixed seed per test, no example database in the working
# directory (HYPOTHESIS_PROFILE=explore gives random seeds and a database, for local hunting).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Under mutmut (it sets MUTANT_UNDER_TEST), a mutant that breaks a loop's exit can write without
# end: each file the tests write is capped at 2 GiB (the largest they write on purpose is 1.5 GiB),
# and a write past it fails with EFBIG (a failed test, i.e. a killed mutant) instead of filling the
# disk; one such run left 67 GB in the temporary folder.
if os.environ.get("MUTANT_UNDER_TEST"):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 1024**3, 2 * 1024**3))

#: fixtures that start a real OCI registry on 127.0.0.1 (tests/registry)
pytest_plugins = ["registry.registry_server"]

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[1] / "schemas/manifest.schema.json").read_text()
)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
WRITTEN: list[int] = []
ORIGINAL_FINISH = container.BundleWriter.finish  # for tests of what finish itself refuses


@pytest.fixture(autouse=True, scope="session")
def every_written_manifest_matches_the_schema() -> Iterator[None]:
    """Every manifest any test makes rtxpack write (save, cache add, migrate, rebuild, import...)
    is validated against schemas/manifest.schema.json before it is written."""
    original = container.BundleWriter.finish

    def finish(
        self: container.BundleWriter, manifest: rtxpack.Manifest, *args: object, **kw: object
    ) -> None:
        errors = sorted(VALIDATOR.iter_errors(manifest.to_dict()), key=str)
        assert not errors, f"manifest does not match the schema: {errors[0]}"
        WRITTEN.append(1)
        original(self, manifest, *args, **kw)  # type: ignore[arg-type]

    container.BundleWriter.finish = finish  # type: ignore[method-assign]
    yield
    container.BundleWriter.finish = original  # type: ignore[method-assign]


def build_mlp_engine(
    *, hidden: int = 8, batch: tuple[int, int, int] = (1, 4, 8), ccs: tuple[str, ...] | None = None
) -> bytes:
    """A real engine: y = relu(x @ W), x: float32[-1, 16] -> y: float32[-1, hidden]."""
    import tensorrt_rtx as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    x = net.add_input("x", trt.float32, (-1, 16))
    w = np.random.default_rng(0).standard_normal((16, hidden)).astype(np.float32)
    const = net.add_constant((16, hidden), trt.Weights(w))
    mm = net.add_matrix_multiply(
        x, trt.MatrixOperation.NONE, const.get_output(0), trt.MatrixOperation.NONE
    )
    act = net.add_activation(mm.get_output(0), trt.ActivationType.RELU)
    act.get_output(0).name = "y"
    net.mark_output(act.get_output(0))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("x", (batch[0], 16), (batch[1], 16), (batch[2], 16))
    config.add_optimization_profile(profile)
    if ccs:
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(
                getattr(trt.ComputeCapability, "SM" + cc.replace(".", "")), i
            )
    data = builder.build_serialized_network(net, config)
    assert data is not None
    return bytes(data)


def make_onnx_mlp(path: Path, *, dynamic: bool = True) -> Path:
    """A small ONNX model: y = relu(x @ W + b), x: float32[N, 16] -> y: float32[N, 8]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "B")
    batch = "N" if dynamic else 2
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["h"]),
            helper.make_node("Add", ["h", "B"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 8])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _tiny_net() -> type:
    import torch

    class TinyNet(torch.nn.Module):
        """relu(Linear(16 -> 8)), seeded: the torch model the loader tests compare against."""

        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = torch.nn.Linear(16, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.fc(x))

    return TinyNet


def __getattr__(name: str) -> type:  # TinyNet needs torch, an optional extra: build it on use
    if name == "TinyNet":
        return _tiny_net()
    raise AttributeError(name)


MLP_SHAPES = {"x": ((1, 16), (4, 16), (8, 16))}


@pytest.fixture(scope="session")
def mlp_engine() -> bytes:
    return build_mlp_engine()


@pytest.fixture(scope="session")
def onnx_mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_onnx_mlp(tmp_path_factory.mktemp("onnx") / "mlp.onnx")


@pytest.fixture(scope="session")
def onnx_bundle(tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path) -> Path:
    """A bundle built from ONNX: engine + source + samples (read-only; copy it to change it)."""
    path = tmp_path_factory.mktemp("bundles") / "mlp.rtxpack"
    x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    rtxpack.save(onnx_mlp, path, shapes=MLP_SHAPES, samples={"x": x}, metadata={"team": "vision"})
    return path


@pytest.fixture(scope="session")
def engine_bundle(tmp_path_factory: pytest.TempPathFactory, mlp_engine: bytes) -> Path:
    """A bundle packed from raw engine bytes (no I/O signature recorded)."""
    path = tmp_path_factory.mktemp("bundles") / "raw.rtxpack"
    rtxpack.save(mlp_engine, path)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Multi-GB cases (``@pytest.mark.slow``) run only when asked for: ``pytest -m slow``."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="multi-GB case: run with `pytest -m slow` (~10 GB RAM)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
