"""Write the golden bundle of format 1.0: tests/golden/v1.0/mlp.rtxpack.

Run once, when format 1.0 was current; the file is committed and must NEVER be regenerated or
changed: tests/upgrade/test_migrate.py checks its exact digest, so that every future rtxpack
proves it still reads what rtxpack 0.1 wrote. When the format changes, add a new script run for
the old version (tests/golden/vX.Y/) before switching the writer — never rewrite an existing
golden file.

    python scripts/make_golden.py [OUTPUT]
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import MLP_SHAPES, make_onnx_mlp  # noqa: E402

import rtxpack  # noqa: E402
from rtxpack._format import container  # noqa: E402
from rtxpack._format.manifest import CacheInfo, Environment  # noqa: E402

#: The fake runtime cache blob (a real one needs a GPU); its bytes only need to survive.
FAKE_CACHE = b"RTXPACK-GOLDEN-FAKE-RUNTIME-CACHE\x00" + bytes(range(256)) * 4


def main(out: Path) -> None:
    if container.FORMAT_VERSION != (1, 0):
        raise SystemExit("this script writes the format 1.0 golden bundle; rtxpack writes another")
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
            metadata={"team": "vision", "golden": "format 1.0"},
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
    print(f"wrote {out} ({out.stat().st_size} bytes, {container.digest(out.read_bytes())})")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests/golden/v1.0/mlp.rtxpack")
