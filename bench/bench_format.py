#!/usr/bin/env python
"""Bundle format benchmark: rtxpack bundles against the raw engine file, measured in one run.

    python bench/bench_format.py                  # a 256 MiB engine
    python bench/bench_format.py --sizes 256M,1G  # also a 1 GiB engine (needs ~4 GiB RAM, minutes)

Builds real TensorRT-RTX engines on the CPU (an MLP whose weight constant is N bytes), then
measures, each in a fresh subprocess so peak RSS (``resource.getrusage``) belongs to one operation:

- save (``rtxpack.save`` from bytes and from a path) vs writing the raw file; fsync in all cases
- open / inspect time (reads the header and manifest only: must not grow with engine size)
- ``read_engine`` + verify vs reading the raw file (alone, + sha256, + blake3), page cache warm and
  cold (``posix_fadvise(POSIX_FADV_DONTNEED)``)
- peak RSS while reading, against the engine size (no needless copies)
- digest throughput of sha256, blake3 (1 thread, all threads) and xxh3_128 on this machine

Prints a markdown report (results/ratios + the exact command); docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def parse_size(text: str) -> int:
    units = {"K": 1024, "M": MiB, "G": 1024 * MiB}
    text = text.strip().upper()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def rss_split() -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes now: mapped file pages are reclaimable cache."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out.get("RssAnon", 0), out.get("RssFile", 0)


def drop_cache(path: Path) -> None:
    """Evict the file from the page cache (it is clean: every writer here fsyncs)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def fsync_write(path: Path, data: bytes | memoryview) -> None:
    with open(path, "wb") as f:
        view = memoryview(data)
        for i in range(0, len(view), 8 * MiB):
            f.write(view[i : i + 8 * MiB])
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------
# Operations, each run in a fresh child process: `bench_format.py --child OP ARGS...`


def build_engine(size: int, out: Path) -> None:
    """An MLP y = relu(x @ W) whose constant W has ``size`` bytes (float32, random)."""
    import numpy as np
    import tensorrt_rtx as trt

    k = 4096
    m = max(1, size // (4 * k))
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    net = builder.create_network(0)
    x = net.add_input("x", trt.float32, (1, k))
    w = np.random.default_rng(0).random((k, m), dtype=np.float32)
    const = net.add_constant((k, m), trt.Weights(w))
    mm = net.add_matrix_multiply(
        x, trt.MatrixOperation.NONE, const.get_output(0), trt.MatrixOperation.NONE
    )
    act = net.add_activation(mm.get_output(0), trt.ActivationType.RELU)
    act.get_output(0).name = "y"
    net.mark_output(act.get_output(0))
    config = builder.create_builder_config()
    data = builder.build_serialized_network(net, config)
    if data is None:
        raise SystemExit("TensorRT-RTX failed to build the benchmark engine")
    del w, net, const
    fsync_write(out, memoryview(data))


def child(op: str, args: list[str]) -> dict[str, Any]:
    import blake3  # imports happen before any timing
    import numpy  # noqa: F401

    import rtxpack

    before = rss_now()
    result: dict[str, Any] = {}
    if op == "build":
        t = time.perf_counter()
        build_engine(int(args[0]), Path(args[1]))
        result["seconds"] = time.perf_counter() - t
    elif op in ("write_raw", "save_bytes"):
        src, dst = Path(args[0]), Path(args[1])
        dst.unlink(missing_ok=True)  # neither write pays for freeing a previous file
        data = src.read_bytes()
        before = rss_now()
        t = time.perf_counter()
        if op == "write_raw":
            fsync_write(dst, data)
        else:
            rtxpack.save(data, dst)
        result["seconds"] = time.perf_counter() - t
    elif op == "save_path":
        Path(args[1]).unlink(missing_ok=True)
        t = time.perf_counter()
        rtxpack.save(Path(args[0]), Path(args[1]))
        result["seconds"] = time.perf_counter() - t
    elif op == "read_raw":  # read the raw engine file into memory, then hash it (or not)
        path, algo, cold = Path(args[0]), args[1], args[2] == "cold"
        if cold:
            drop_cache(path)
        before = rss_now()
        t = time.perf_counter()
        data = path.read_bytes()
        if algo == "sha256":
            hashlib.sha256(data).hexdigest()
        elif algo == "blake3":
            blake3.blake3(data, max_threads=blake3.blake3.AUTO).hexdigest()
        result["seconds"] = time.perf_counter() - t
    elif op == "read_bundle":  # what a loader does: open, read_engine (verified), ready for TRT
        path, cold = Path(args[0]), args[1] == "cold"
        if cold:
            drop_cache(path)
        before = rss_now()
        anon0, file0 = rss_split()
        t = time.perf_counter()
        with rtxpack.open(path) as b:
            view = b.read_engine()
            result["seconds"] = time.perf_counter() - t
            result["bytes"] = len(view)
            anon1, file1 = rss_split()
            result["anon"], result["file"] = anon1 - anon0, file1 - file0
            del view
    else:
        raise SystemExit(f"unknown op {op}")
    result["peak_rss"] = peak_rss() - before
    return result


def run_child(op: str, *args: Any) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", op, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {op} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def interleaved(ops: dict[Any, tuple[Any, ...]], repeat: int) -> dict[Any, dict[str, Any]]:
    """Run each op ``repeat`` times in fresh processes, round-robin (so that a burst of disk
    traffic from elsewhere hits baseline and bundle alike); median seconds, max peak RSS."""
    runs: dict[Any, list[dict[str, Any]]] = {key: [] for key in ops}
    for _ in range(repeat):
        for key, (op, *args) in ops.items():
            runs[key].append(run_child(op, *args))
    out = {}
    for key, rs in runs.items():
        out[key] = dict(rs[-1])
        out[key]["seconds"] = statistics.median(r["seconds"] for r in rs)
        out[key]["peak_rss"] = max(r["peak_rss"] for r in rs)
    return out


# ---------------------------------------------------------------------------------------------
# In-process measurements


def time_best(fn: Any, n: int) -> float:
    best = float("inf")
    for _ in range(n):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def digest_throughput(nbytes: int) -> dict[str, float]:
    import blake3
    import xxhash

    data = os.urandom(nbytes)
    algos = {
        "sha256 (hashlib, OpenSSL)": lambda: hashlib.sha256(data).digest(),
        "blake3, 1 thread": lambda: blake3.blake3(data).digest(),
        f"blake3, all threads ({os.cpu_count()})": lambda: blake3.blake3(
            data, max_threads=blake3.blake3.AUTO
        ).digest(),
        "xxh3_128 (not cryptographic)": lambda: xxhash.xxh3_128(data).digest(),
    }
    return {name: nbytes / time_best(fn, 3) / 1e9 for name, fn in algos.items()}


def open_inspect_times(path: Path) -> tuple[float, float]:
    import rtxpack

    def do_open() -> None:
        rtxpack.open(path).close()

    def do_inspect() -> None:
        rtxpack.inspect(path)

    return time_best(do_open, 50), time_best(do_inspect, 50)


def fmt_s(s: float) -> str:
    return f"{s * 1000:.2f} ms" if s < 1 else f"{s:.2f} s"


def fmt_b(n: float) -> str:
    return f"{n / MiB:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="256M", help="engine weight sizes, e.g. 256M,1G")
    parser.add_argument("--dir", help="working folder (default: a temporary one, removed after)")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per measurement")
    parser.add_argument("--hash-bytes", default="256M", help="buffer size for digest throughput")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return

    command = "python bench/bench_format.py " + " ".join(sys.argv[1:])
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="rtxpack-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        rows = []
        for size in sizes:
            label = fmt_b(size)
            print(f"# {label}: building the engine ...", file=sys.stderr, flush=True)
            engine = work / f"{label.replace(' ', '')}.engine"
            build = run_child("build", size, engine)
            n = engine.stat().st_size
            bundle = work / f"{label.replace(' ', '')}.rtxpack"
            print(f"# {label}: writing ...", file=sys.stderr, flush=True)
            writes = interleaved(
                {
                    "raw": ("write_raw", engine, work / "copy.engine"),
                    "bytes": ("save_bytes", engine, bundle),
                    "path": ("save_path", engine, bundle),
                },
                args.repeat,
            )
            t_open, t_inspect = open_inspect_times(bundle)
            print(f"# {label}: reading ...", file=sys.stderr, flush=True)
            reads = {}
            for cache in ("warm", "cold"):
                if cache == "warm":  # fill the page cache
                    engine.read_bytes()
                    bundle.read_bytes()
                ops: dict[Any, tuple[Any, ...]] = {
                    (cache, algo): ("read_raw", engine, algo, cache)
                    for algo in ("none", "sha256", "blake3")
                }
                ops[(cache, "bundle")] = ("read_bundle", bundle, cache)
                reads.update(interleaved(ops, args.repeat))
            rows.append(
                dict(
                    size=size,
                    engine_bytes=n,
                    bundle_bytes=bundle.stat().st_size,
                    build=build,
                    raw_write=writes["raw"],
                    save_bytes=writes["bytes"],
                    save_path=writes["path"],
                    open=t_open,
                    inspect=t_inspect,
                    reads=reads,
                )
            )
            for p in (engine, bundle, work / "copy.engine"):
                p.unlink(missing_ok=True)
        print("# digest throughput ...", file=sys.stderr, flush=True)
        digests = digest_throughput(parse_size(args.hash_bytes))
    print(report(command, rows, digests, parse_size(args.hash_bytes)))


def report(
    command: str, rows: list[dict[str, Any]], digests: dict[str, float], hash_bytes: int
) -> str:
    import blake3
    import tensorrt_rtx as trt

    import rtxpack

    lines = [
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, TensorRT-RTX {trt.__version__}, rtxpack "
        f"{rtxpack.__version__}, blake3 {blake3.__version__}. Times are medians of "
        "fresh processes, baseline and bundle interleaved; peak RSS is the growth of "
        "`ru_maxrss` during the operation.",
        "",
        "| engine | build (CPU) | build peak RSS | engine file | bundle file | overhead |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        n = row["engine_bytes"]
        lines.append(
            f"| {fmt_b(row['size'])} | {fmt_s(row['build']['seconds'])} | "
            f"{fmt_b(row['build']['peak_rss'])} | {n:,} B | {row['bundle_bytes']:,} B | "
            f"{row['bundle_bytes'] - n:,} B |"
        )
    lines += [
        "",
        "Writing (baseline: write the raw engine file + fsync):",
        "",
        "| engine | raw write | `save(bytes)` | ratio | `save(path)` | ratio | save peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        base = row["raw_write"]["seconds"]
        sb, sp = row["save_bytes"]["seconds"], row["save_path"]["seconds"]
        lines.append(
            f"| {fmt_b(row['size'])} | {fmt_s(base)} | {fmt_s(sb)} | {sb / base:.2f}x | "
            f"{fmt_s(sp)} | {sp / base:.2f}x | {fmt_b(row['save_path']['peak_rss'])} (path) |"
        )
    lines += [
        "",
        "Opening (header + manifest only; best of 50):",
        "",
        "| engine | `open()` + close | `inspect()` |",
        "|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {fmt_b(row['size'])} | {fmt_s(row['open'])} | {fmt_s(row['inspect'])} |")
    lines += [
        "",
        "Reading for a load: `open` + `read_engine()` (mmap, BLAKE3-verified, zero-copy view) vs "
        "reading the raw file into memory, alone or then hashing it:",
        "",
        "| engine | cache | raw read | raw read + sha256 | raw read + blake3 | "
        "bundle `read_engine` + verify | ratio vs read | vs read+sha256 | vs read+blake3 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for cache in ("warm", "cold"):
            rd = row["reads"]
            t0, ts, tb = (rd[(cache, a)]["seconds"] for a in ("none", "sha256", "blake3"))
            tx = rd[(cache, "bundle")]["seconds"]
            lines.append(
                f"| {fmt_b(row['size'])} | {cache} | {fmt_s(t0)} | {fmt_s(ts)} | {fmt_s(tb)} | "
                f"{fmt_s(tx)} | {tx / t0:.2f}x | {tx / ts:.2f}x | {tx / tb:.2f}x |"
            )
    lines += [
        "",
        "Peak memory while reading (warm cache), against the engine size N:",
        "",
        "| engine | raw read (+ blake3) | bundle `read_engine` + verify | bundle: growth of "
        "anonymous memory (copies) | bundle: growth of file-backed (mapped page cache) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        n = row["engine_bytes"]
        raw = row["reads"][("warm", "blake3")]["peak_rss"]
        bun = row["reads"][("warm", "bundle")]
        lines.append(
            f"| {fmt_b(row['size'])} | {fmt_b(raw)} ({raw / n:.2f} N) | {fmt_b(bun['peak_rss'])} "
            f"({bun['peak_rss'] / n:.2f} N) | {fmt_b(bun['anon'])} | {fmt_b(bun['file'])} |"
        )
    lines += [
        "",
        f"Digest throughput on {fmt_b(hash_bytes)} in memory (best of 3):",
        "",
        "| digest | GB/s |",
        "|---|---|",
    ]
    lines += [f"| {name} | {gbps:.2f} |" for name, gbps in digests.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
