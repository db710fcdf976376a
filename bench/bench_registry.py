#!/usr/bin/env python
"""Registry benchmark: push / pull through a real CNCF registry on 127.0.0.1, in one run.

    python bench/bench_registry.py                     # a 1 GiB engine, 8 caches of 16 MiB
    python bench/bench_registry.py --engine 64M --cache 1M --repeat 1   # smoke test, seconds

Writes a bundle whose engine section is N random bytes under a real small engine's record (push
and pull never parse engines, and this needs no 1 GiB TensorRT-RTX build), with 8 prewarmed
runtime caches for 8 GPU models (random bytes standing in for caches), starts Debian's
``docker-registry`` on a free loopback port, and measures:

- blob download throughput of the engine: ``curl -o FILE`` (a plain HTTP GET writing to disk)
  against rtxpack's fetch into the content store (sha256 while streaming, rename; no fsync) and
  against a whole ``rtxpack.pull`` (fetch + write a verified bundle), each in a fresh process with
  an empty store, interleaved, ``--repeat`` times (median); peak RSS of each pull process;
- bytes the registry sent for a device pulling for one GPU (access log), against the engine + one
  cache + the two manifests;
- bytes a cache-only update uploads (``push_caches``) and the bytes a device that holds the
  engine then downloads.

Prints a markdown report with the command; docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from bench_format import build_engine, fmt_b, parse_size, rss_now  # noqa: E402


def reset_peak_rss() -> None:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def vm_hwm() -> int:
    """Peak RSS since the last reset, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


TRT = "1.7.1.116"
GPUS = [
    ("NVIDIA GeForce RTX 4090", "8.9"),
    ("NVIDIA GeForce RTX 4080", "8.9"),
    ("NVIDIA GeForce RTX 4070", "8.9"),
    ("NVIDIA GeForce RTX 3090", "8.6"),
    ("NVIDIA GeForce RTX 3080", "8.6"),
    ("NVIDIA RTX A4000", "8.6"),
    ("NVIDIA GeForce RTX 5090", "12.0"),
    ("NVIDIA GeForce RTX 2080", "7.5"),
]


def big_engine_bundle(size: int, scratch: Path, out: Path) -> None:
    """A bundle whose engine section holds ``size`` random bytes under the record of a real
    small TensorRT-RTX engine. Push and pull never parse engine bytes, so what they move is what
    a real engine of that size would move, without the RAM a 1 GiB TensorRT-RTX build needs."""
    import dataclasses

    import rtxpack
    from rtxpack._format.container import BundleWriter, atomic_output

    small = scratch / "small.trt"
    build_engine(1 << 20, small)
    record = scratch / "small.rtxpack"
    rtxpack.save(small, record)
    with rtxpack.open(record) as b:
        manifest = b.manifest
    payload = scratch / "payload.bin"
    with open(payload, "wb") as f:
        for left in range(size, 0, -(8 << 20)):
            f.write(os.urandom(min(left, 8 << 20)))
    with atomic_output(out) as f:
        writer = BundleWriter(f)
        writer.add_path("engine", manifest.engines[0].name, payload)
        info = dataclasses.replace(manifest.engines[0], section=0, source=None, samples=None)
        writer.finish(
            dataclasses.replace(
                manifest, sections=tuple(writer.sections), engines=(info,), caches=()
            )
        )
    payload.unlink()
    small.unlink()
    record.unlink()


def child(op: str, args: list[str]) -> dict[str, Any]:
    """One measured operation in a fresh process (its own peak RSS)."""
    import rtxpack
    from rtxpack._registry.client import RegistryClient
    from rtxpack._registry.store import ContentStore

    before = rss_now()
    reset_peak_rss()
    t0 = time.perf_counter()
    if op == "fetch":
        registry, repo, digest, size = args[0], args[1], args[2], int(args[3])
        handle, _ = ContentStore().fetch(RegistryClient(registry), repo, digest, size)
        handle.close()
    elif op == "pull":
        ref, out, gpu, cc = args
        target = rtxpack.Target(
            trt_version=TRT,
            compute_capability=cc,
            driver_version="580.95",
            os="linux",
            gpu_name=gpu,
        )
        rtxpack.pull(ref, out, target=target)
    else:
        raise SystemExit(f"unknown op {op}")
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "peak_rss": vm_hwm(), "rss_before": before}


def run_child(op: str, *args: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", op, *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def curl_get(url: str, out: Path) -> tuple[float, float]:
    """Seconds for ``curl -o FILE``, and for that plus an fsync of FILE (a durable copy)."""
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", str(out), url], check=True)
    elapsed = time.perf_counter() - t0
    fd = os.open(out, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    durable = time.perf_counter() - t0
    out.unlink()
    return elapsed, durable


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="1G", help="engine size (default 1G)")
    ap.add_argument("--cache", default="16M", help="size of each of the 8 caches (default 16M)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per throughput figure")
    ap.add_argument("--dir", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1:])))
        return

    from registry.registry_server import RegistryServer

    import rtxpack
    from rtxpack._caches.edit import NewCache, rewrite
    from rtxpack._registry import artifact as oci
    from rtxpack._registry.client import RegistryClient

    engine_size, cache_size = parse_size(args.engine), parse_size(args.cache)
    scratch = Path(tempfile.mkdtemp(prefix="rtxpack-bench-registry-", dir=args.dir))
    server = None
    try:
        log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
        log(f"writing a bundle with a {fmt_b(engine_size)} engine section ...")
        bundle = scratch / "fleet.rtxpack"
        big_engine_bundle(engine_size, scratch, bundle)
        rng = os.urandom
        caches = [
            NewCache(rng(cache_size), None, rtxpack.Environment(TRT, gpu, cc, "580.65", "linux"))
            for gpu, cc in GPUS
        ]
        rewrite(bundle, add=caches)
        with rtxpack.open(bundle) as b:
            m = b.manifest
            engine_len = m.sections[m.engines[0].section].length
            cache_len = m.sections[m.caches[0].section].length
            bundle_size = bundle.stat().st_size

        server = RegistryServer(scratch / "registry").start()
        env = dict(os.environ, RTXPACK_CACHE_DIR=str(scratch / "store"))
        os.environ["RTXPACK_CACHE_DIR"] = env["RTXPACK_CACHE_DIR"]
        ref = server.ref("fleet/model:1")
        log("pushing ...")
        t0 = time.perf_counter()
        pushed = rtxpack.push(bundle, ref)
        push_s = time.perf_counter() - t0
        client = RegistryClient(server.registry)
        doc = oci.parse_manifest(client.get_manifest("fleet/model", "1", oci.OCI_MANIFEST)[0], "")
        engine_desc = doc.layers[m.engines[0].section]
        blob_url = f"http://{server.registry}/v2/fleet/model/blobs/{engine_desc.digest}"

        log("throughput ...")
        curl_s, curl_sync_s, fetch_s, pull_s = [], [], [], []
        pull_rss, fetch_rss, base_rss = [], [], []
        for i in range(args.repeat):
            plain, durable = curl_get(blob_url, scratch / "curl.out")
            curl_s.append(plain)
            curl_sync_s.append(durable)
            shutil.rmtree(scratch / "store", ignore_errors=True)
            r = run_child(
                "fetch",
                server.registry,
                "fleet/model",
                engine_desc.digest,
                str(engine_desc.size),
                env=env,
            )
            fetch_s.append(r["seconds"])
            fetch_rss.append(r["peak_rss"])
            shutil.rmtree(scratch / "store", ignore_errors=True)
            out = scratch / f"pulled{i}.rtxpack"
            r = run_child("pull", ref, str(out), *GPUS[3], env=env)
            pull_s.append(r["seconds"])
            pull_rss.append(r["peak_rss"])
            base_rss.append(r["rss_before"])
            out.unlink()

        log("bytes moved by a device pull ...")
        shutil.rmtree(scratch / "store", ignore_errors=True)
        mark = server.log_mark()
        device = scratch / "device.rtxpack"
        rtxpack.pull(ref, device, target=_target(*GPUS[3]))
        device_bytes = server.bytes_sent(mark)
        manifest_bytes = sum(r[3] for r in server.requests(mark) if "/manifests/" in r[1])
        config_bytes = doc.config.size

        log("cache-only update ...")
        new_gpu = ("NVIDIA RTX 4000 Ada Generation", "8.9")
        # a device of a new GPU class already pulled the tag (engine, no cache fits yet)
        rtxpack.pull(ref, scratch / "before.rtxpack", target=_target(*new_gpu))
        warm = scratch / "warm.rtxpack"
        rewrite(bundle, warm, add=[NewCache(rng(cache_size), None, _env(*new_gpu))])
        update = rtxpack.push_caches(warm, ref)
        new_manifest = client.get_manifest("fleet/model", "1", oci.OCI_MANIFEST)[0]
        new_doc = oci.parse_manifest(new_manifest, "")
        mark = server.log_mark()
        rtxpack.pull(ref, scratch / "after.rtxpack", target=_target(*new_gpu))
        after_bytes = server.bytes_sent(mark)

        report(
            args=args,
            engine_len=engine_len,
            cache_len=cache_len,
            bundle_size=bundle_size,
            pushed=pushed.to_dict(),
            push_s=push_s,
            curl_s=curl_s,
            curl_sync_s=curl_sync_s,
            fetch_s=fetch_s,
            pull_s=pull_s,
            pull_rss=pull_rss,
            fetch_rss=fetch_rss,
            base_rss=base_rss,
            device_bytes=device_bytes,
            manifest_bytes=manifest_bytes,
            config_bytes=config_bytes,
            update=update.to_dict(),
            update_manifest=len(new_manifest),
            update_config=new_doc.config.size,
            after_bytes=after_bytes,
        )
    finally:
        if server is not None:
            server.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _env(gpu: str, cc: str) -> Any:
    import rtxpack

    return rtxpack.Environment(TRT, gpu, cc, "580.65", "linux")


def _target(gpu: str, cc: str) -> Any:
    import rtxpack

    return rtxpack.Target(
        trt_version=TRT, compute_capability=cc, driver_version="580.95", os="linux", gpu_name=gpu
    )


def report(**r: Any) -> None:
    args = r["args"]
    med = statistics.median
    mb_s = lambda s: r["engine_len"] / s / 1e6  # noqa: E731
    curl, fetch, pull = med(r["curl_s"]), med(r["fetch_s"]), med(r["pull_s"])
    want = r["engine_len"] + r["cache_len"] + r["manifest_bytes"] + r["config_bytes"]
    upd = r["update"]
    cmd = "python bench/bench_registry.py" + (
        f" --engine {args.engine} --cache {args.cache} --repeat {args.repeat}"
    )
    print(f"### Registry: push / pull ({platform.machine()}, {os.cpu_count()} cores)\n")
    print(
        f"Command: `{cmd}` (median of {args.repeat}, fresh process and empty store each; "
        f"load average at the end {os.getloadavg()[0]:.1f})\n"
    )
    print(
        f"Bundle: engine {fmt_b(r['engine_len'])} + 8 caches of {fmt_b(r['cache_len'])} "
        f"({fmt_b(r['bundle_size'])}); push took {r['push_s']:.2f} s "
        f"({r['pushed']['uploaded']} blobs, {fmt_b(r['pushed']['uploaded_bytes'])}).\n"
    )
    print("| download of the engine blob | time | MB/s | vs curl |")
    print("|---|---|---|---|")
    print(f"| `curl -o FILE` (plain HTTP GET) | {curl:.2f} s | {mb_s(curl):.0f} | 1.00x |")
    sync = med(r["curl_sync_s"])
    print(f"| `curl -o FILE` + fsync | {sync:.2f} s | {mb_s(sync):.0f} | {curl / sync:.2f}x |")
    print(
        f"| rtxpack fetch into the content store (sha256, no fsync) | {fetch:.2f} s | "
        f"{mb_s(fetch):.0f} | {curl / fetch:.2f}x |"
    )
    print(
        f"| whole `rtxpack.pull` (fetch + verified bundle written) | {pull:.2f} s | "
        f"{mb_s(pull):.0f} | {curl / pull:.2f}x |"
    )
    print(
        f"\nPeak RSS during the operation (VmHWM reset after the imports): fetch "
        f"{fmt_b(max(r['fetch_rss']))}, whole pull {fmt_b(max(r['pull_rss']))}; resident "
        f"before it: {fmt_b(max(r['base_rss']))}; engine {fmt_b(r['engine_len'])}.\n"
    )
    print("| bytes moved | measured | target |")
    print("|---|---|---|")
    print(
        f"| device pull (1 engine + 8 caches in the bundle), registry sent | "
        f"{r['device_bytes']:,} | engine + 1 cache + manifests = {want:,} |"
    )
    print(
        f"| cache-only update, blobs uploaded | {upd['uploaded_bytes']:,} "
        f"({upd['uploaded']} blobs) + OCI manifest {r['update_manifest']:,} | "
        f"cache {r['cache_len']:,} + bundle manifest {r['update_config']:,} + OCI manifest |"
    )
    print(
        f"| device holding the engine, pull after the update, registry sent | "
        f"{r['after_bytes']:,} | cache {r['cache_len']:,} + manifests |"
    )


if __name__ == "__main__":
    main()
