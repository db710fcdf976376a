"""Cost of choosing a runtime cache in a bundle that holds many of them.

    python bench/bench_caches.py [--repeat 200]

Builds a tiny real engine (CPU, TensorRT-RTX), then bundles holding 1, 10, 100 and 1000 small
caches (one per environment; one of them fits the target), and times ``rtxpack.open`` +
``plan_runtime_cache`` (what every load does). Selection reads the manifest's cache table and
only the one cache it picks, so the time should stay near-flat; ratios are against the 1-cache
bundle measured in the same run. Also times ``add_cache`` (a rewrite: it copies every section,
so it grows with the file, not with the table). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rtxpack
from rtxpack._caches.edit import NewCache, add_cache, rewrite
from rtxpack._caches.selection import plan_runtime_cache
from rtxpack._checks.target import Target
from rtxpack._format.manifest import Environment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import build_mlp_engine

FIT = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
TARGET = Target("1.7.1.116", "8.9", "580.65", "linux", "NVIDIA GeForce RTX 4090")
BLOB_BYTES = 16 * 1024


def make_bundle(folder: Path, engine: bytes, n: int) -> Path:
    path = folder / f"caches-{n}.rtxpack"
    rtxpack.save(engine, path)
    others = [
        NewCache(
            os.urandom(BLOB_BYTES),
            None,
            dataclasses.replace(FIT, gpu_name=f"NVIDIA RTX test {i}", driver_version=f"580.{i}"),
        )
        for i in range(n - 1)
    ]
    # The fitting cache sits in the middle of the table, not first.
    half = len(others) // 2
    fit = NewCache(os.urandom(BLOB_BYTES), None, FIT)
    rewrite(path, add=[*others[:half], fit, *others[half:]])
    return path


def time_select(path: Path, cache_dir: Path, repeat: int) -> tuple[float, float]:
    """Median seconds of (rtxpack.open, plan_runtime_cache) over ``repeat`` loads."""
    opens, plans = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with rtxpack.open(path) as b:
            t1 = time.perf_counter()
            plan = plan_runtime_cache(b, b.manifest.engine(), TARGET, cache_dir=cache_dir)
            t2 = time.perf_counter()
        opens.append(t1 - t0)
        plans.append(t2 - t1)
        assert plan.cache_id is not None
    return statistics.median(opens), statistics.median(plans)


def time_add(path: Path, folder: Path, repeat: int) -> float:
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        add_cache(path, os.urandom(BLOB_BYTES), FIT, output=folder / f"added-{i}.rtxpack")
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    engine = build_mlp_engine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n in (1, 10, 100, 1000):
            path = make_bundle(folder, engine, n)
            with rtxpack.open(path) as b:
                manifest_kb = b._file.header.manifest_length / 1024
            opened, select = time_select(path, folder / "local", args.repeat)
            add = time_add(path, folder, max(3, args.repeat // 40))
            rows.append((n, path.stat().st_size / 1024**2, manifest_kb, opened, select, add))
    base = rows[0]
    print(
        f"`python bench/bench_caches.py --repeat {args.repeat}` — {platform.platform()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; caches of "
        f"{BLOB_BYTES // 1024} KiB; medians of {args.repeat} runs\n"
    )
    print(
        "| caches | bundle MiB | manifest KiB | open ms | vs 1 | select ms | vs 1 "
        "| add_cache ms | vs 1 |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, size, mkb, opened, select, add in rows:
        print(
            f"| {n} | {size:.1f} | {mkb:.1f} | {opened * 1e3:.2f} | {opened / base[3]:.1f}x "
            f"| {select * 1e3:.3f} | {select / base[4]:.1f}x "
            f"| {add * 1e3:.1f} | {add / base[5]:.1f}x |"
        )


if __name__ == "__main__":
    main()
