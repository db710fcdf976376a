#!/usr/bin/env python
"""What a trust policy adds to opening and loading a bundle, against the same path without one.

    python bench/bench_signing.py                     # 64 MiB engine, 8 caches, repeat 30
    python bench/bench_signing.py --sizes 1M,256M     # other engine sizes

Builds a real TensorRT-RTX engine of each size on the CPU (bench_format's MLP), packs it with
several runtime caches (fake 1 MiB blobs), signs it twice (a builder's Ed25519 key for the
engines, a prewarm machine's ECDSA P-256 key for the caches), then times, interleaved in one
process with a warm page cache (median of ``--repeat`` runs each):

- ``open`` without a policy, ``open(trust=...)`` with ``require="engines"`` and ``"all"``;
- what ``load`` does before TensorRT-RTX (``open`` + ``read_engine()``, BLAKE3-verified) with no
  policy, with ``require="engines"`` and with ``"all"``.

The policy's cost is the difference to the no-policy run of the same line, and the ratio.
Prints a markdown report with the command (docs/performance.md quotes it).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bench_format import build_engine, parse_size  # noqa: E402

import rtxpack  # noqa: E402
from rtxpack._format.manifest import Environment  # noqa: E402

CACHES = 8


def make_bundle(folder: Path, size: int) -> tuple[Path, rtxpack.TrustPolicy, rtxpack.TrustPolicy]:
    engine = folder / f"e{size}.engine"
    build_engine(size, engine)
    path = folder / f"b{size}.rtxpack"
    rtxpack.save(engine, path)
    engine.unlink()
    for i in range(CACHES):
        env = Environment("1.7.1.116", f"NVIDIA GeForce RTX 40{i:02d}", "8.9", "580.65", "linux")
        rtxpack.add_cache(path, os.urandom(1024 * 1024), env)
    builder = rtxpack.PrivateKey.generate("ed25519")
    prewarm = rtxpack.PrivateKey.generate("ecdsa-p256")
    rtxpack.sign(path, builder)
    rtxpack.sign(path, prewarm, role="caches")
    engines = rtxpack.TrustPolicy(engines=(builder.public_key,))
    everything = rtxpack.TrustPolicy(
        engines=(builder.public_key,), caches=(prewarm.public_key,), require="all"
    )
    return path, engines, everything


def interleaved(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()  # warm up: page cache, imports
    for _ in range(repeat):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def opener(path: Path, trust: object) -> Callable[[], object]:
    def run() -> None:
        with rtxpack.open(path, trust=trust) as b:  # type: ignore[arg-type]
            assert b.trust is None or b.trust.ok

    return run


def loader(path: Path, trust: object) -> Callable[[], object]:
    def run() -> None:
        with rtxpack.open(path, trust=trust) as b:  # type: ignore[arg-type]
            view = b.read_engine()
            if isinstance(view, memoryview):
                view.release()

    return run


def fmt(s: float) -> str:
    return f"{s * 1e3:.3f} ms" if s < 1 else f"{s:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="64M", help="engine sizes, e.g. 1M,64M,256M")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for text in args.sizes.split(","):
            size = parse_size(text)
            print(f"building a {text} engine...", file=sys.stderr)
            path, engines, everything = make_bundle(Path(tmp), size)
            bundle = rtxpack.open(path, trust=False)
            t = interleaved(
                {
                    "check only (engines)": functools.partial(bundle.signatures, engines),
                    "check only (all)": functools.partial(bundle.signatures, everything),
                    "open": opener(path, False),
                    "open+engines": opener(path, engines),
                    "open+all": opener(path, everything),
                    "load": loader(path, False),
                    "load+engines": loader(path, engines),
                    "load+all": loader(path, everything),
                },
                args.repeat,
            )
            bundle.close()
            rows.append((text, path.stat().st_size, t))
    command = "python bench/bench_signing.py " + " ".join(sys.argv[1:])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"`{command.strip()}` — {platform.machine()}, {os.cpu_count()} cores (load average "
        f"{load} at the end), median of {args.repeat}, warm page cache, {CACHES} caches of "
        "1 MiB, 2 signers\n"
    )
    print('| engine | step | no policy | `require="engines"` | `require="all"` |')
    print("|---|---|---|---|---|")
    for text, _, t in rows:
        for step, base in (("open", "open"), ("open + read_engine (verified)", "load")):
            cells = [fmt(t[base])]
            for policy in ("engines", "all"):
                v = t[f"{base}+{policy}"]
                delta = (v - t[base]) * 1e3
                cells.append(f"{fmt(v)} ({delta:+.3f} ms, {v / t[base]:.2f}x)")
            print(f"| {text} | {step} | " + " | ".join(cells) + " |")
        only = (fmt(t["check only (engines)"]), fmt(t["check only (all)"]))
        print(f"| {text} | the policy check alone, on an open bundle | - | {only[0]} | {only[1]} |")


if __name__ == "__main__":
    main()
