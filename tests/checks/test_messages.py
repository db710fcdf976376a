"""What ``check`` tells a person, word for word, over a table of bundles and targets.

The findings (severity, code, engine, message) and verdicts of every case below, and the reasons a
cache does not fit each target, are compared with ``messages.txt`` next to this file. The messages
are behaviour: they say what was found, what was expected and what to do, and a change to one is
reviewed there. After a deliberate change, rewrite the file and review its diff:

    RTXPACK_WRITE_MESSAGES=1 python -m pytest -q tests/checks/test_messages.py

The rules only read a ``Target`` and the manifest, so the bundles here are manifests written out
by hand (no engine is built) and every answer is the same on every machine.
"""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path

import pytest

from rtxpack._caches.fit import cache_mismatches, describe_environment
from rtxpack._checks.check import check_manifest
from rtxpack._checks.report import CompatibilityReport
from rtxpack._checks.target import Target
from rtxpack._format.manifest import CacheInfo, EngineInfo, Environment, Manifest
from rtxpack._strategy import RuntimeStrategy

GOLDEN = Path(__file__).with_name("messages.txt")

RTX_3090 = "NVIDIA GeForce RTX 3090"
RTX_4090 = "NVIDIA GeForce RTX 4090"
ALL_CCS = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")


def engine(
    name: str = "main",
    *,
    trt: str = "1.7.1",
    ccs: tuple[str, ...] = ("8.6",),
    portable: bool = False,
    platform: str = "linux_x86_64",
    source: int | None = None,
) -> EngineInfo:
    return EngineInfo(name, 0, trt, ccs, portable, platform, (), (), (), RuntimeStrategy(), source)


def bundle(*engines: EngineInfo, caches: tuple[CacheInfo, ...] = ()) -> Manifest:
    return Manifest("1.0.0", "2026-01-31T12:00:00Z", (), engines, caches)


HERE_ENV = Environment("1.7.1.116", RTX_3090, "8.6", "580.65.06", "linux")
OTHER_ENV = Environment("1.7.1.116", "NVIDIA RTX A6000", "8.6", "590.44.01", "linux")


def cache(cid: str, env: Environment) -> CacheInfo:
    return CacheInfo(cid, "main", 0, env, "2026-01-31T12:00:00Z")


BUNDLES = {
    # built from ONNX for CC 8.6 only, with its source: a rebuild fixes a version or GPU mismatch
    "src86": bundle(engine(source=1)),
    # packed engine bytes for CC 8.6 (platform unknown), TensorRT-RTX recorded with its build
    "raw86": bundle(engine(trt="1.7.1.116", platform="unknown")),
    # the default (portable) targets, built on Windows
    "portable": bundle(engine(ccs=ALL_CCS, portable=True, platform="windows_x86_64")),
    # portable, but only for 8.6 (older GPUs are not covered by PTX)
    "portable86": bundle(engine(portable=True, source=1)),
    # hand-made and third-party records: no targets, odd versions and platforms
    "odd": bundle(
        engine("nocc", ccs=(), platform="linux_aarch64", trt="1.7"),
        engine("rc", trt="1.7.1-rc1", platform="freebsd_x86_64", ccs=("8.9",), source=2),
        engine("one", trt="1", platform="windows", ccs=("8.6", "8.9")),
    ),
    "cached": bundle(
        engine(source=1), caches=(cache("c0ffee00", HERE_ENV), cache("c0ffee01", OTHER_ENV))
    ),
}

HERE = Target(
    trt_version="1.7.1.116",
    compute_capability="8.6",
    driver_version="580.65.06",
    os="linux",
    gpu_name=RTX_3090,
    platform="linux_x86_64",
    cuda_major=13,
)

#: (bundle, target, missing): each exercises a finding or a boundary of one.
CASES: list[tuple[str, Target, frozenset[str]]] = [
    ("src86", HERE, frozenset()),
    ("raw86", HERE, frozenset()),
    ("portable", HERE, frozenset()),
    ("odd", HERE, frozenset()),
    # nothing known about the target / nothing installed on this machine
    ("raw86", Target(), frozenset()),
    ("odd", Target(), frozenset({"trt", "gpu"})),
    ("raw86", replace(HERE, trt_version=None), frozenset({"trt"})),
    ("src86", replace(HERE, compute_capability=None, driver_version=None), frozenset({"gpu"})),
    ("src86", replace(HERE, os="windows", platform=None), frozenset()),
    ("src86", replace(HERE, os=None), frozenset()),
    # TensorRT-RTX release
    ("src86", replace(HERE, trt_version="1.8.0"), frozenset()),
    ("raw86", replace(HERE, trt_version="1.6.0.5"), frozenset()),
    ("raw86", replace(HERE, trt_version="1.7.1.999"), frozenset()),
    ("odd", replace(HERE, trt_version="1.8.0"), frozenset()),
    # GPUs
    ("src86", replace(HERE, compute_capability="8.9", gpu_name=RTX_4090), frozenset()),
    ("raw86", replace(HERE, compute_capability="8.9", gpu_name=None), frozenset()),
    ("src86", replace(HERE, compute_capability="08.6"), frozenset()),
    (
        "portable",
        replace(HERE, compute_capability="13.0", gpu_name="NVIDIA RTX 6000 Next"),
        frozenset(),
    ),
    ("src86", replace(HERE, compute_capability="13.0", gpu_name=None), frozenset()),
    ("raw86", replace(HERE, compute_capability="13.0", gpu_name=None), frozenset()),
    (
        "portable86",
        replace(HERE, compute_capability="7.5", gpu_name="NVIDIA GeForce RTX 2080"),
        frozenset(),
    ),
    ("portable86", replace(HERE, compute_capability="8.9", gpu_name=RTX_4090), frozenset()),
    ("src86", replace(HERE, compute_capability="9.0", gpu_name="NVIDIA H100 PCIe"), frozenset()),
    ("odd", replace(HERE, compute_capability="8.9", gpu_name=None), frozenset()),
    # platforms
    ("src86", replace(HERE, os=None, platform="windows_x86_64"), frozenset()),
    ("src86", replace(HERE, platform="linux_aarch64"), frozenset()),
    ("odd", replace(HERE, os="windows", platform="windows_arm64"), frozenset()),
    ("portable", replace(HERE, os="windows", platform="windows_AMD64"), frozenset()),
    ("portable", replace(HERE, os=None, platform="linux"), frozenset()),
    ("odd", replace(HERE, os=None, platform="linux_x86_64"), frozenset()),
    ("raw86", Target(platform="windows_x86_64"), frozenset()),
    # drivers: the target's CUDA build known ...
    ("raw86", replace(HERE, driver_version="575.51.03"), frozenset()),
    ("raw86", replace(HERE, driver_version="580"), frozenset()),
    ("raw86", replace(HERE, driver_version="13.0"), frozenset()),
    ("raw86", replace(HERE, cuda_major=12, driver_version="524.99"), frozenset()),
    ("raw86", replace(HERE, cuda_major=12, driver_version="525"), frozenset()),
    # ... and not known (None, or a CUDA major rtxpack has no floor for): what any build needs
    ("raw86", replace(HERE, cuda_major=None, driver_version="510.1"), frozenset()),
    ("raw86", replace(HERE, cuda_major=None, driver_version="99.1"), frozenset()),
    ("raw86", replace(HERE, cuda_major=None, driver_version="100.0"), frozenset()),
    ("raw86", replace(HERE, cuda_major=None, driver_version="525.0"), frozenset()),
    ("raw86", replace(HERE, cuda_major=14, driver_version="579.99"), frozenset()),
    ("raw86", replace(HERE, cuda_major=None, driver_version="580.0"), frozenset()),
    # prewarmed runtime caches
    ("cached", HERE, frozenset()),
    ("cached", replace(HERE, gpu_name="NVIDIA GeForce RTX 3090 Ti"), frozenset()),
    ("cached", replace(HERE, gpu_name="NVIDIA RTX A6000", driver_version="590.48.01"), frozenset()),
    ("cached", replace(HERE, trt_version="1.8.0"), frozenset()),
]

#: Targets a cache made on HERE_ENV (one reason per line, all of them) is compared with.
CACHE_TARGETS = [
    Target(),
    replace(HERE, trt_version="1.7"),
    replace(HERE, trt_version="1.7.2"),
    replace(HERE, trt_version="1.7.1.200"),
    replace(HERE, gpu_name=" nvidia geforce rtx 3090 "),
    replace(HERE, compute_capability="8.9", gpu_name=RTX_4090),
    replace(HERE, compute_in_graphics=True),
    replace(HERE, os="windows"),
    replace(HERE, driver_version="590.44.01"),
    replace(HERE, driver_version="580.10"),
    replace(HERE, driver_version="580.65.06.1"),
]


def _described(target: Target) -> str:
    default = Target()
    given = [
        f"{f.name}={getattr(target, f.name)!r}"
        for f in fields(Target)
        if getattr(target, f.name) != getattr(default, f.name)
    ]
    return ", ".join(given) or "nothing known"


def _render_report(report: CompatibilityReport) -> list[str]:
    lines = []
    for f in report.findings:
        lines.append(f"  {f.severity:8} {f.code} [{f.engine or 'bundle'}]")
        lines.append(f"           {f.message}")
    for v in report.engines:
        lines.append(f"  verdict  {v.engine}: {v.status}")
    return lines


def render() -> str:
    out = [
        "# Written by tests/checks/test_messages.py (see its docstring); review every change.",
        "",
    ]
    out.append("## check: findings and verdicts")
    for name, target, missing in CASES:
        out.append("")
        absent = f"; absent: {', '.join(sorted(missing))}" if missing else ""
        out.append(f"### {name} on {_described(target)}{absent}")
        report = check_manifest(BUNDLES[name], (1, 1), target, missing=missing)
        out += _render_report(report)
    out += ["", "## check: a bundle of a newer minor format version", ""]
    out += _render_report(check_manifest(BUNDLES["src86"], (1, 9), HERE))
    out += ["", f"## why a cache made on {describe_environment(HERE_ENV)} does not fit"]
    for target in CACHE_TARGETS:
        out += ["", f"### {_described(target)}"]
        out += [f"  - {why}" for why in cache_mismatches(HERE_ENV, target)] or ["  (it fits)"]
    return "\n".join(out) + "\n"


def test_every_message_is_as_reviewed() -> None:
    text = render()
    if os.environ.get("RTXPACK_WRITE_MESSAGES"):
        GOLDEN.write_text(text)
        pytest.skip(f"wrote {GOLDEN}")
    assert text == GOLDEN.read_text(), (
        "check's findings changed; if on purpose, rewrite and review tests/checks/messages.txt "
        "(see tests/checks/test_messages.py)"
    )
