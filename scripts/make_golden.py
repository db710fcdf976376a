"""Write the golden bundles: tests/golden/v1.0/mlp.rtxpack and tests/golden/v1.1/ (mlp.rtxpack,
signed, and models.rtxpack, issue 9's fields).

Each was written when its format was current; the files are committed and must NEVER be
regenerated or changed once their format is released: the tests check their exact digests, so
that every future rtxpack proves it still reads what older ones wrote. When the format changes,
add a new run for the old version (tests/golden/vX.Y/) before switching the writer.

    python scripts/make_golden.py [OUTPUT]          # format 1.0 (only while rtxpack wrote 1.0)
    python scripts/make_golden.py 1.1 [FOLDER]      # format 1.1: the 1.0 content, signed

Format 1.1 is still open in this development cycle (nothing was released since 1.0): a change
that extends 1.1 regenerates tests/golden/v1.1/ with the second form and updates its digest in
tests/upgrade/test_golden_v1_1.py.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's rtxpack and test helpers

from conftest import MLP_SHAPES, make_onnx_mlp  # noqa: E402

import rtxpack  # noqa: E402
from rtxpack._format import container  # noqa: E402
from rtxpack._format.manifest import CacheInfo, Environment  # noqa: E402

#: The fake runtime cache blob (a real one needs a GPU); its bytes only need to survive.
FAKE_CACHE = b"RTXPACK-GOLDEN-FAKE-RUNTIME-CACHE\x00" + bytes(range(256)) * 4


def golden_1_1(out: Path) -> None:
    """Format 1.1: what issue 9 added. Engine ``main`` from a torch module (two inputs whose
    batch must match, a dict/tuple output, its ONNX source with an external data file, samples,
    a Windows target, builder options, a weight-streaming budget); engine ``packed`` from raw
    engine bytes (platform unknown)."""
    import torch
    from conftest import build_mlp_engine

    class Pair(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.fc = torch.nn.Linear(16, 32)  # 2 KiB of weights: stored as external data

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
            h = torch.relu(self.fc(x + y))
            return {"sum": h.sum(dim=1), "parts": (h, h * 2)}

    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 16, generator=gen), torch.randn(3, 16, generator=gen)
    batch = ((1, 16), (4, 16), (8, 16))
    rtxpack.save(
        {
            "main": rtxpack.EngineSpec(
                source=Pair(),
                inputs=(x, y),
                shapes={"x": batch, "y": batch},
                compute_capabilities=["8.9"],
                platform="windows",
                build_options=rtxpack.BuildOptions(
                    weight_streaming=True, tiling_optimization_level="fast", max_aux_streams=0
                ),
                strategy=rtxpack.RuntimeStrategy(weight_streaming_budget="auto"),
            ),
            "packed": rtxpack.EngineSpec(source=build_mlp_engine(ccs=("8.9",))),
        },
        out,
        metadata={"golden": "format 1.1"},
    )


def main(out: Path) -> None:
    if container.FORMAT_VERSION != (1, 0):
        raise SystemExit("this script writes the format 1.0 golden bundle; rtxpack writes another")
    _write(out, "format 1.0")
    print(f"wrote {out} ({out.stat().st_size} bytes, {container.digest(out.read_bytes())})")


def _write(out: Path, label: str) -> None:
    """The golden content (see tests/golden/README.md) in the format rtxpack writes."""
    with tempfile.TemporaryDirectory() as tmp:
        onnx = make_onnx_mlp(Path(tmp) / "mlp.onnx")
        plain = Path(tmp) / "plain.rtxpack"
        x = np.random.default_rng(2).standard_normal((3, 16)).astype(np.float32)
        rtxpack.save(
            onnx,
            plain,
            shapes=MLP_SHAPES,
            compute_capabilities=["8.9"],  # one target keeps the file small
            samples={"x": x},
            metadata={"team": "vision", "golden": label},
            files={"labels.txt": b"cat\ndog\n"},
            strategy=rtxpack.RuntimeStrategy(
                dynamic_shapes_kernel_specialization_strategy="eager",
                cuda_graph_strategy="whole_graph_capture",
                execution_context_allocation_strategy="on_profile_change",
            ),
        )
        src = container.BundleFile(plain)
        manifest = src.manifest
        with container.atomic_output(out) as f:
            writer = container.BundleWriter(f)
            for s in manifest.sections:
                writer.copy_section(src, s)
            idx = writer.add_bytes("runtime_cache", "main", FAKE_CACHE, "zstd")
            cache = CacheInfo(
                id="901d0001",
                engine="main",
                section=idx,
                environment=Environment(
                    trt_version="1.7.1.116",
                    gpu_name="NVIDIA GeForce RTX 4090",
                    compute_capability="8.9",
                    driver_version="580.65.06",
                    os="linux",
                ),
                created_at=manifest.created_at,
                shapes=({"x": (4, 16)},),
            )
            writer.finish(replace(manifest, sections=tuple(writer.sections), caches=(cache,)))
        src.close()


def main_1_1(folder: Path) -> None:
    """The 1.0 golden content written as format 1.1, signed by a builder key (role engines,
    Ed25519) and a prewarm key (role caches, ECDSA P-256). The public keys are written beside it;
    the private keys are thrown away (a golden file is never signed again)."""
    from rtxpack._signing import PrivateKey
    from rtxpack._signing.bundle import sign

    if container.FORMAT_VERSION != (1, 1):
        raise SystemExit("this run writes the format 1.1 golden bundle; rtxpack writes another")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "mlp.rtxpack"
    _write(out, "format 1.1")
    builder, prewarm = PrivateKey.generate("ed25519"), PrivateKey.generate("ecdsa-p256")
    sign(out, builder, role="engines")
    sign(out, prewarm, role="caches")
    (folder / "builder.pub").write_bytes(builder.public_key.to_pem())
    (folder / "prewarm.pub").write_bytes(prewarm.public_key.to_pem())
    print(f"wrote {out} ({out.stat().st_size} bytes, {container.digest(out.read_bytes())})")
    models = folder / "models.rtxpack"
    golden_1_1(models)
    print(
        f"wrote {models} ({models.stat().st_size} bytes, {container.digest(models.read_bytes())})"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "1.1":
        main_1_1(Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "tests/golden/v1.1")
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/golden/v1.0/mlp.rtxpack")
