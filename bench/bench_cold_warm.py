"""Cold vs warm first inference: what a prewarmed runtime cache saves (needs a supported GPU).

    python bench/bench_cold_warm.py BUNDLE [--shape NAME=DIMS ...] [--engine NAME]

1. prewarms a copy of BUNDLE on this GPU (``rtxpack.prewarm``: eager strategy, every profile's
   min/opt/max plus the given shapes),
2. cold: loads BUNDLE with ``runtime_cache=None`` and times load + the first inference,
3. warm: loads the prewarmed copy (its cache fits this machine) and times the same,
and prints both and the ratio. Each measurement runs in a fresh process so nothing JIT-compiled
in one run is reused by the other. NOT RUN on the machines this project was developed on (no GPU
TensorRT-RTX supports); NVIDIA reports 31.9 s -> 1.95 s first-run JIT with a warm cache for
FLUX.1-dev on an RTX 5090, and the runtime-cache work behind this project quotes ~8x.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOT_HERE = "bench_cold_warm needs a GPU TensorRT-RTX supports; not run here"


def _parse_shapes(values: list[str]) -> dict[str, tuple[int, ...]]:
    from rtxpack.cli._bundle_cmds import parse_dims

    out = {}
    for v in values:
        name, _, dims = v.partition("=")
        out[name] = parse_dims(dims, f"--shape {name}")
    return out


def _first_inference(path: str, engine: str | None, warm: bool, shapes_json: str) -> None:
    """Child process: load, run the first inference, print timings as JSON."""
    import torch

    import rtxpack
    from rtxpack._loader import load

    with rtxpack.open(path) as b:
        info = b.manifest.engine(engine)
    shapes = {k: tuple(v) for k, v in json.loads(shapes_json).items()}
    for t in info.inputs:
        if t.name not in shapes:
            shapes[t.name] = info.profiles[0][t.name].opt if info.profiles else t.shape
    tensors = [
        torch.randn(shapes[t.name], device="cuda").to(getattr(torch, t.dtype)) for t in info.inputs
    ]
    t0 = time.perf_counter()
    module = load(path, engine=info.name, runtime_cache="auto" if warm else None)
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    module(*tensors)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    origin = getattr(module, "cache_origin", "?")
    module.close()
    print(json.dumps({"load": t1 - t0, "first": t2 - t1, "origin": str(origin)}))


def _run_child(path: Path, engine: str | None, warm: bool, shapes: dict, cache_dir: Path) -> dict:
    env_cmd = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        "--warm" if warm else "--cold",
        json.dumps(shapes),
    ]
    if engine:
        env_cmd += ["--engine", engine]
    import os

    env = dict(os.environ, RTXPACK_CACHE_DIR=str(cache_dir))  # an empty local cache
    out = subprocess.run(env_cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        path, mode, shapes_json = sys.argv[i + 1 : i + 4]
        engine = sys.argv[sys.argv.index("--engine") + 1] if "--engine" in sys.argv else None
        _first_inference(path, engine, mode == "--warm", shapes_json)
        return 0

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=DIMS")
    ap.add_argument("--engine")
    args = ap.parse_args()

    from rtxpack._caches import prewarm

    if prewarm._machine_environment() is None:
        print(NOT_HERE, file=sys.stderr)
        return 2
    shapes = _parse_shapes(args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        warm_bundle = Path(tmp) / "prewarmed.rtxpack"
        prewarm.prewarm(
            args.bundle, warm_bundle, shapes=[shapes] if shapes else None, engine=args.engine
        )
        cold = _run_child(args.bundle, args.engine, False, shapes, Path(tmp) / "c1")
        warm = _run_child(warm_bundle, args.engine, True, shapes, Path(tmp) / "c2")
    print("| run | cache | load s | first inference s | load + first s |")
    print("|---|---|---:|---:|---:|")
    for name, r in (("cold", cold), ("warm", warm)):
        total = r["load"] + r["first"]
        print(f"| {name} | {r['origin']} | {r['load']:.3f} | {r['first']:.3f} | {total:.3f} |")
    ratio = (cold["load"] + cold["first"]) / max(warm["load"] + warm["first"], 1e-9)
    print(f"\ncold / warm (load + first inference): {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
