"""The main job, end to end on a CPU-only machine.

1. Build a bundle from a small torch CNN: export to ONNX, build a portable TensorRT-RTX engine
   ahead of time (no GPU needed), store the engine, its runtime strategy, the ONNX source and
   sample inputs/outputs in one file.
2. Inspect it (reads only the manifest) and verify every digest.
3. Check whether it can run here, then load it and run it. Without a GPU TensorRT-RTX supports,
   the loader falls back to ONNX Runtime on the bundle's own source, with a warning saying why.

Run:  .venv/bin/python examples/quickstart.py [OUTPUT_DIR]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import torch

import rtxpack
from rtxpack.cli import main as cli


class SmallCNN(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(32, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image).flatten(1))


def main() -> int:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle_path = out_dir / "small_cnn.rtxpack"

    torch.manual_seed(0)
    model = SmallCNN().eval()
    example = torch.randn(2, 3, 64, 64)

    print("== 1. build (CPU only)")
    start = time.perf_counter()
    rtxpack.save(
        model,
        bundle_path,
        inputs=(example,),
        shapes={"image": ((1, 3, 64, 64), (4, 3, 64, 64), (16, 3, 64, 64))},
        strategy=rtxpack.RuntimeStrategy(
            dynamic_shapes_kernel_specialization_strategy="eager",
            cuda_graph_strategy="whole_graph_capture",
        ),
        samples=True,
        metadata={"model": "SmallCNN", "example": "quickstart"},
        progress=lambda msg: print("  ", msg),
    )
    print(f"   wrote {bundle_path} in {time.perf_counter() - start:.1f} s")

    print("== 2. inspect and verify")
    status = cli(["inspect", str(bundle_path)]) or cli(["verify", str(bundle_path)])
    if status:
        return status

    print("== 3. check, load and run")
    report = rtxpack.check(bundle_path)
    for finding in report.findings:
        print(f"   [{finding.severity}] {finding.code}: {finding.message}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = rtxpack.load(bundle_path, fallback="onnxruntime")
    for w in caught:
        print(f"   warning: {w.message}")
    with module:
        batch = torch.randn(5, 3, 64, 64)
        got = module(batch)
        with torch.no_grad():
            want = model(batch)
        err = (got - want).abs().max().item()
        name = type(module).__name__
        print(f"   ran a batch of 5 through {name}: max |diff| vs torch = {err:.2e}")
        if err > 1e-3:
            print("   outputs differ from torch", file=sys.stderr)
            return 1
    return cli(["verify", "--run", str(bundle_path)])


if __name__ == "__main__":
    sys.exit(main())
