#!/usr/bin/env python
"""Large models: ``rtxpack.save(torch_module)`` against the unavoidable work measured alone.

    python bench/bench_models.py               # 3 GiB of float16 weights (needs ~12 GiB of RAM)
    python bench/bench_models.py --gib 0.25    # smoke test, a minute

The model is a stack of ``Linear(D, D, bias=False)`` layers with ReLU, float16 by default, whose
weights add up to ``--gib`` GiB (random, so nothing compresses). Each measurement runs in a fresh
process (so ``ru_maxrss`` belongs to it alone); the model is created before the clock starts and
its creation is not counted:

- ``export``: ``torch.onnx.export(..., dynamo=True)`` + ``ONNXProgram.save(external_data=True)``
  into a folder: what anyone must do to get an ONNX model out of torch;
- ``build``: a process that imports only ``tensorrt_rtx``, parses that ONNX file
  (``OnnxParser.parse_from_file``), builds the engine (``build_serialized_network``, default
  targets) and writes it to a file: what anyone must do to get an engine;
- ``save``: ``rtxpack.save(model, bundle, inputs=(x,), samples=False)``: export, build, and the
  bundle (engine + ONNX source with its external data), atomically written.

Reported: time and peak RSS of each, then ``save`` time / (export + build) time and ``save``
peak RSS / ``build`` peak RSS. Peak RSS is the whole process's ``ru_maxrss``: for ``save`` it
includes the model itself, which the caller holds anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GiB = 1024**3
MiB = 1024**2


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_model(gib: float, width: int, dtype_name: str) -> tuple[Any, Any]:
    import torch

    dtype = getattr(torch, dtype_name)
    per_layer = width * width * torch.tensor([], dtype=dtype).element_size()
    layers = max(1, round(gib * GiB / per_layer))

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(
                torch.nn.Linear(width, width, bias=False, dtype=dtype, device="meta")
                for _ in range(layers)
            )

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x

    model = Stack().to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.normal_(0.0, width**-0.5, generator=gen)
    return model.eval(), torch.randn(2, width, dtype=dtype, generator=gen)


def child(op: str, work: Path, gib: float, width: int, dtype: str) -> dict[str, Any]:
    onnx_path = work / "export" / "model.onnx"
    if op == "build":
        import tensorrt_rtx as trt

        logger = trt.Logger(trt.Logger.ERROR)
        start = time.perf_counter()
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            raise SystemExit(f"parse failed: {parser.get_error(0)}")
        plan = builder.build_serialized_network(network, builder.create_builder_config())
        with open(work / "model.engine", "wb") as f:
            f.write(memoryview(plan))
            f.flush()
            os.fsync(f.fileno())
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak_rss": peak_rss(), "bytes": plan.nbytes}
    model, x = make_model(gib, width, dtype)
    before = peak_rss()
    if op == "export":
        import torch

        onnx_path.parent.mkdir(exist_ok=True)
        start = time.perf_counter()
        program = torch.onnx.export(model, (x,), None, dynamo=True, verbose=False)
        program.save(str(onnx_path), external_data=True)
        seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in onnx_path.parent.iterdir())
    elif op == "save":
        import rtxpack

        bundle = work / "model.rtxpack"
        start = time.perf_counter()
        rtxpack.save(model, bundle, inputs=(x,), samples=False)
        seconds = time.perf_counter() - start
        size = bundle.stat().st_size
    else:
        raise SystemExit(f"unknown op {op}")
    return {"seconds": seconds, "peak_rss": peak_rss(), "model_rss": before, "bytes": size}


def run_child(op: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", op, str(work)]
    cmd += ["--gib", str(args.gib), "--width", str(args.width), "--dtype", args.dtype]
    print(f"# {op} ...", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"{op} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"# {op}: {result}", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=3.0, help="weights in GiB (default 3)")
    parser.add_argument("--width", type=int, default=8192, help="layer width D (default 8192)")
    parser.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    parser.add_argument("--dir", help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--only", choices=["export", "build", "save"], help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child[0], Path(args.child[1]), args.gib, args.width, args.dtype)
        print(json.dumps(result))
        return

    command = "python bench/bench_models.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="rtxpack-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        ops = [args.only] if args.only else ["export", "build", "save"]
        if args.only == "build":
            ops = ["export", "build"]
        res = {op: run_child(op, args, work) for op in ops}
    if "save" not in res:
        print(json.dumps(res, indent=2))
        return
    ex, bu, sa = res["export"], res["build"], res["save"]
    alone = ex["seconds"] + bu["seconds"]
    print(
        f"`{command}` — {platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; {args.gib:g} GiB of {args.dtype} weights, width {args.width}\n"
    )
    print("| step | time | peak RSS | output |")
    print("|---|---:|---:|---:|")
    print(
        f"| torch export + save ONNX (external data) | {ex['seconds']:.1f} s | "
        f"{ex['peak_rss'] / GiB:.2f} GiB | {ex['bytes'] / GiB:.2f} GiB |"
    )
    print(
        f"| TensorRT-RTX build alone (parse file, build, write engine) | {bu['seconds']:.1f} s | "
        f"{bu['peak_rss'] / GiB:.2f} GiB | {bu['bytes'] / GiB:.2f} GiB |"
    )
    print(
        f"| `rtxpack.save(model)` | {sa['seconds']:.1f} s | {sa['peak_rss'] / GiB:.2f} GiB | "
        f"{sa['bytes'] / GiB:.2f} GiB |"
    )
    print()
    print(
        f"- save time / (export + build): {sa['seconds']:.1f} / {alone:.1f} s = "
        f"**{sa['seconds'] / alone:.2f}x**"
    )
    print(
        f"- save peak RSS / build peak RSS: {sa['peak_rss'] / GiB:.2f} / "
        f"{bu['peak_rss'] / GiB:.2f} GiB = **{sa['peak_rss'] / bu['peak_rss']:.2f}x** "
        f"(the model itself, held by the caller, is {sa['model_rss'] / GiB:.2f} GiB of "
        "the save process before save starts)"
    )


if __name__ == "__main__":
    main()
