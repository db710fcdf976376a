"""Memory and time bounds of opening, inspecting and verifying any bundle (docs/performance.md).

    flock /tmp/heavy.lock python bench/bench_bounds.py [--gib 1]

Two families of bundles, each handled in a fresh process whose peak RSS (ru_maxrss) is reported
next to that of a process that only imports rtxpack (the baseline of the same run):

- hostile manifests of about 16 MiB, shaped to cost the most memory per byte once decoded (empty
  arrays and maps, short strings, numbers, long strings), and manifests at ``max_values``;
- bundles of growing size S (a stored engine and a zstd user file) for verify's time per GiB
  and its memory, which must not grow with S.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import blake3
import zstandard

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("mc", ROOT / "scripts/make_conformance.py")
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

CHILD = """
import json, resource, sys, time
import rtxpack
action, path = sys.argv[1], sys.argv[2]
start = time.perf_counter()
outcome = "ok"
try:
    if action == "open":
        rtxpack.open(path).close()
    elif action == "inspect":
        rtxpack.inspect(path)
    elif action == "verify":
        with rtxpack.open(path) as b:
            b.verify()
except rtxpack.RtxpackError as exc:
    outcome = type(exc).__name__
print(json.dumps({"seconds": time.perf_counter() - start, "outcome": outcome,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(action: str, path: Path) -> dict[str, float | str]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, action, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def hostile(tmp: Path, name: str, value: object) -> Path:
    raw = mc.edit(lambda m: m.update(future=value))
    path = tmp / f"{name}.rtxpack"
    path.write_bytes(raw)
    return path


def large(tmp: Path, size: int) -> Path:
    """A stored engine of size/2 bytes and a zstd user file of size/2 decoded bytes."""
    half = size // 2
    chunk = bytes(range(256)) * 32768  # 8 MiB
    engine_h, file_h = blake3.blake3(max_threads=blake3.blake3.AUTO), blake3.blake3()
    comp = zstandard.ZstdCompressor().compressobj(size=half)
    path = tmp / f"large-{size >> 20}MiB.rtxpack"
    with open(path, "wb") as f:
        f.write(bytes(4096))
        for _ in range(half // len(chunk)):
            engine_h.update(chunk)
            f.write(chunk)
        f.write(bytes(-f.tell() % 4096))
        zoff = f.tell()
        for _ in range(half // len(chunk)):
            file_h.update(chunk)
            f.write(comp.compress(chunk))
        f.write(comp.flush())
        zlen = f.tell() - zoff
        sections = [
            {"kind": "engine", "name": "main", "offset": 4096, "length": half, "codec": "stored",
             "size": half, "digest": "blake3:" + engine_h.hexdigest()},
            {"kind": "file", "name": "f", "offset": zoff, "length": zlen, "codec": "zstd",
             "size": half, "digest": "blake3:" + file_h.hexdigest()},
        ]  # fmt: skip
        manifest = mc.manifest(sections, [mc.engine_record(0)], files={"f": 1})
        blob = mc.enc(manifest)
        m_off = f.tell()
        f.write(blob)
        f.seek(0)
        f.write(mc.HEADER.pack(mc.MAGIC, 1, 0, 0, m_off, len(blob), blake3.blake3(blob).digest()))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0, help="largest bundle, in GiB")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rtxpack-bench-") as name:
        tmp = Path(name)
        base = run("open", hostile(tmp, "baseline", 0))
        print(f"baseline: import rtxpack + open a 12 KB bundle: {base['rss_mib']:.0f} MiB peak RSS")
        n = 512 * 1024 - 4096  # max_values, less the base manifest's own values
        cases = {
            "512K empty arrays (0.5 MiB)": [[[]] * 4096] * (n // 4097),
            "512K empty maps (0.5 MiB)": [[{}] * 4096] * (n // 4097),
            "512K 2-char strings (1.5 MiB)": [[f"{i % 99:02d}" for i in range(4096)]] * (n // 4097),
            "512K floats (4.5 MiB)": [[float(i) + 0.5 for i in range(4096)]] * (n // 4097),
            "4000 strings of 4096 chars (16 MiB)": [["x" * 4096] * 1000] * 4,
            "max_values exceeded (empty arrays)": [[[]] * 4096] * 128,
        }
        print(f"\n{'hostile manifest':40} {'action':8} {'outcome':20} {'peak RSS':>10} {'time':>8}")
        for label, value in cases.items():
            path = hostile(tmp, label.split()[0], value)
            size = path.stat().st_size
            for action in ("open", "inspect", "verify"):
                r = run(action, path)
                print(
                    f"{label:40} {action:8} {r['outcome']:20} "
                    f"{r['rss_mib'] - base['rss_mib']:+8.0f} MiB {r['seconds']:7.2f}s"
                    f"   (file {size / 2**20:.1f} MiB)"
                )
        print(
            f"\n{'bundle size':12} {'verify time':>12} {'s/GiB':>8} {'peak RSS over baseline':>24}"
        )
        size = 256 * 2**20
        while size <= args.gib * 2**30:
            path = large(tmp, size)
            r = run("verify", path)
            assert r["outcome"] == "ok", r
            gib = path.stat().st_size / 2**30
            print(
                f"{gib:9.2f} GiB {r['seconds']:11.2f}s {r['seconds'] / gib:8.2f} "
                f"{r['rss_mib'] - base['rss_mib']:+20.0f} MiB"
            )
            path.unlink()
            size *= 2
        _ = time


if __name__ == "__main__":
    main()
