"""Keys and signed-bundle fixtures for the signing tests (loaded with ``pytest_plugins``: a
conftest.py here would shadow tests/conftest.py for ``from conftest import ...``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from signing_helpers import ENV_4090, ENV_5090_WIN

import rtxpack
from rtxpack._signing import PrivateKey


@pytest.fixture(scope="session")
def builder() -> PrivateKey:
    return PrivateKey.generate("ed25519")


@pytest.fixture(scope="session")
def prewarmer() -> PrivateKey:
    return PrivateKey.generate("ecdsa-p256")


@pytest.fixture(scope="session")
def stranger() -> PrivateKey:
    return PrivateKey.generate("ed25519")


@pytest.fixture(scope="session")
def two_engine_bundle(tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path) -> Path:
    """Engines a (ONNX source + samples) and b (source), a user file, caches for a and b."""
    from rtxpack import EngineSpec

    path = tmp_path_factory.mktemp("signing") / "two.rtxpack"
    x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
    shapes = {"x": ((1, 16), (4, 16), (8, 16))}
    rtxpack.save(
        {
            "a": EngineSpec(
                onnx_mlp, shapes=shapes, samples={"x": x}, compute_capabilities=["8.9"]
            ),
            "b": EngineSpec(
                onnx_mlp,
                shapes=shapes,
                compute_capabilities=["12.0"],
                strategy=rtxpack.RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"),
            ),
        },
        path,
        files={"labels.txt": b"cat\ndog\n"},
        metadata={"team": "vision"},
    )
    rtxpack.add_cache(path, b"cache-a-4090" * 10, ENV_4090, engine="a", shapes=[{"x": [4, 16]}])
    rtxpack.add_cache(path, b"cache-b-5090" * 10, ENV_5090_WIN, engine="b")
    return path


@pytest.fixture()
def bundle(tmp_path: Path, two_engine_bundle: Path) -> Path:
    out = tmp_path / "b.rtxpack"
    shutil.copyfile(two_engine_bundle, out)
    return out
