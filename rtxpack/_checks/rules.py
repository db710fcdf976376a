"""The compatibility rules: what a described machine (a ``Target``) can run.

Every rule here takes a ``Target`` and what the bundle records, and nothing else: no rule asks
this machine anything, so checking a fleet device offline gives the same answer on every machine.
(What this machine is, is ``machine.local_target``'s job; asking its TensorRT-RTX runtime is
``validity``'s.) docs/compatibility.md lists every finding code with its meaning and fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .._build.engine import ARCH_ALIASES
from .._caches.fit import cache_mismatches
from .._exceptions import InvalidArgumentError
from .._facts import DRIVER_FLOOR, SUPPORTED_CCS, cc_tuple, same_release, supports_cc
from .._format.container import FORMAT_VERSION, format_version_str
from .._format.manifest import OS_NAMES, CacheInfo, EngineInfo
from .._text import version_tuple
from .report import Finding
from .target import Target

__all__ = [
    "Run",
    "check_caches",
    "check_cc",
    "check_driver",
    "check_format",
    "check_gpu_supported",
    "check_platform",
    "check_trt",
    "check_unknown_fields",
]


def _cc_list(ccs: Iterable[str]) -> str:
    return ", ".join(ccs)


def _release(version: str) -> tuple[int, ...] | None:
    """An engine's recorded TensorRT-RTX version, if it names a release (major.minor.patch, and
    maybe a build); None for anything else (a hand-made or damaged record)."""
    try:
        parts = version_tuple(version)
    except InvalidArgumentError:
        return None
    return parts if len(parts) >= 3 else None


def _pip_spec(version: str) -> str:
    parts = _release(version)
    if parts is None:
        return "tensorrt-rtx"
    if len(parts) > 3:
        return f"tensorrt-rtx=={version}"
    major, minor, patch = parts
    return f'"tensorrt-rtx>={major}.{minor}.{patch},<{major}.{minor}.{patch + 1}"'


def _rebuild_hint(info: EngineInfo, what: str, flags: str = "") -> str:
    if info.source is not None:
        return (
            f"rebuild it {what} with `rtxpack rebuild BUNDLE -o NEW{flags}` (the bundle carries "
            "its source)"
        )
    return (
        f"build a new engine {what} from the original model with `rtxpack build` (the bundle "
        "does not carry its source)"
    )


def _os_of(platform: str) -> str | None:
    prefix = platform.partition("_")[0]
    return prefix if prefix in OS_NAMES else None


@dataclass
class Run:
    """Findings collected while checking one bundle."""

    target: Target
    findings: list[Finding] = field(default_factory=list)

    def add(self, code: str, severity: str, message: str, engine: str | None = None) -> None:
        self.findings.append(Finding(code, severity, message, engine))


def check_format(run: Run, version: tuple[int, int]) -> None:
    if version[1] > FORMAT_VERSION[1]:
        found = format_version_str(version)
        run.add(
            "format.newer_minor",
            "info",
            f"bundle format {found} is newer than the {format_version_str()} this "
            "rtxpack writes; it still loads and fields this version does not know are ignored "
            "(upgrade rtxpack to use them: pip install -U rtxpack)",
        )


def check_unknown_fields(run: Run, missing: frozenset[str]) -> None:
    t = run.target
    if t.compute_capability is None and "gpu" in missing:
        run.add(
            "gpu.not_found",
            "error",
            "no NVIDIA GPU or driver found on this machine (asked NVML, /proc/driver/nvidia, "
            "nvidia-smi and torch.cuda); TensorRT-RTX engines need an RTX GPU and its driver: "
            "run on such a machine (a bundle that carries its ONNX source can also run with "
            "ONNX Runtime)",
        )
    if t.trt_version is None and "trt" not in missing:
        run.add(
            "trt.not_checked",
            "info",
            "the target's TensorRT-RTX version is unknown, so engine versions were not checked "
            "(give --trt-version / Target(trt_version=...))",
        )
    if t.compute_capability is None and "gpu" not in missing:
        run.add(
            "gpu.not_checked",
            "info",
            "the target's GPU is unknown (no GPU detected or none given), so compute "
            "capabilities were not checked (give --cc / Target(compute_capability=...))",
        )
    if t.driver_version is None and "gpu" not in missing:
        run.add(
            "driver.not_checked",
            "info",
            "the target's NVIDIA driver version is unknown, so the driver was not checked "
            "(give --driver / Target(driver_version=...))",
        )
    if t.os is None and t.platform is None:
        run.add(
            "platform.not_checked",
            "info",
            "the target's OS is unknown, so engine platforms were not checked "
            "(give --os / Target(os=...))",
        )


def check_trt(run: Run, info: EngineInfo, missing: frozenset[str]) -> None:
    name, built, have = info.name, info.trt_version, run.target.trt_version
    if have is None:
        if "trt" in missing:
            run.add(
                "trt.not_installed",
                "error",
                f"engine {name!r}: needs TensorRT-RTX {built}, and TensorRT-RTX is not installed "
                f"on the target: pip install {_pip_spec(built)}",
                name,
            )
        return
    if _release(built) is None:
        run.add(
            "engine.unknown_version",
            "warning",
            f"engine {name!r}: records TensorRT-RTX version {built!r}, which does not name a "
            f"release (major.minor.patch, e.g. 1.7.1), so it was not compared with the target's "
            f"{have}; if it does not load, " + _rebuild_hint(info, f"under TensorRT-RTX {have}"),
            name,
        )
        return
    if not same_release(built, have):
        run.add(
            "trt.version_mismatch",
            "error",
            f"engine {name!r}: built with TensorRT-RTX {built}, target has {have}; "
            "engines only load on the TensorRT-RTX release that built them. Either install "
            f"that release (pip install {_pip_spec(built)}) or "
            + _rebuild_hint(info, f"under TensorRT-RTX {have}"),
            name,
        )


def _gpu_label(t: Target) -> str:
    cc = f"CC {t.compute_capability}"
    return f"{t.gpu_name} ({cc})" if t.gpu_name else cc


def check_gpu_supported(run: Run) -> None:
    cc = run.target.compute_capability
    if cc is not None and not supports_cc(cc):
        run.add(
            "gpu.unsupported_cc",
            "error",
            f"the target GPU {_gpu_label(run.target)} is not supported by TensorRT-RTX at all "
            f"(it supports CC {_cc_list(SUPPORTED_CCS)} and newer RTX GPUs; not Hopper 9.0, "
            "data-center Blackwell 10.x or GPUs below 7.5); no rebuild helps: run on an RTX "
            "GPU (a bundle that carries its ONNX source can also run with ONNX Runtime)",
        )


def check_cc(run: Run, info: EngineInfo) -> None:
    cc, name = run.target.compute_capability, info.name
    if cc is None:
        return
    gpu = _gpu_label(run.target)
    if not supports_cc(cc):
        return  # reported once for the bundle by check_gpu_supported
    targets = info.compute_capabilities
    if not targets:
        run.add(
            "gpu.targets_unknown",
            "info",
            f"engine {name!r}: does not record which compute capabilities it targets, so "
            f"{gpu} was not checked against them",
            name,
        )
        return
    have = cc_tuple(cc)  # compared as numbers: "8.6" and "08.6" name the same GPUs
    if have in {cc_tuple(t) for t in targets}:
        return
    through_ptx = info.hardware_portable and all(have > cc_tuple(t) for t in targets)
    if cc in SUPPORTED_CCS:  # this TensorRT-RTX builds for it
        fix = _rebuild_hint(info, f"for CC {cc}", f" --cc {cc}")
    elif through_ptx:
        fix = "upgrade TensorRT-RTX to a release that knows this GPU, then " + _rebuild_hint(
            info, "under it"
        )
    else:
        fix = _rebuild_hint(
            info, "for the portable default targets (newer GPUs run it through PTX)", " --portable"
        )
    if through_ptx:
        run.add(
            "gpu.ptx_only",
            "warning",
            f"engine {name!r}: targets CC {_cc_list(targets)}; the target GPU {gpu} is newer, "
            "so it runs through PTX (like EngineValidity.SUBOPTIMAL): it works but is slower "
            f"than a native engine; to get one, {fix}",
            name,
        )
        return
    run.add(
        "gpu.cc_not_targeted",
        "error",
        f"engine {name!r}: built for CC {_cc_list(targets)}"
        f"{' (plus PTX for newer GPUs)' if info.hardware_portable else ''}, not for the "
        f"target GPU {gpu}; {fix}",
        name,
    )


def _arch_of(platform: str) -> str | None:
    arch = platform.partition("_")[2].lower()
    return ARCH_ALIASES.get(arch, arch) or None


def check_platform(run: Run, info: EngineInfo) -> None:
    """TensorRT-RTX engines move between Windows and Linux (NVIDIA's TensorRT-RTX docs, "CPU-Only
    AOT and TensorRT-RTX Engines": "The engine is portable to both Windows and Linux operating
    systems"), so another OS is only worth an info; another CPU architecture is not documented
    as portable, so it is a warning."""
    t, name = run.target, info.name
    engine_os, engine_arch = _os_of(info.platform), _arch_of(info.platform)
    if engine_os is None:
        if t.os is not None or t.platform is not None:
            why = (
                "was packed from engine bytes, which do not say which platform it was built "
                "for (a Windows and a Linux plan can be byte-identical)"
                if info.platform == "unknown"
                else f"records platform {info.platform!r}, which rtxpack does not know"
            )
            run.add(
                "platform.unknown",
                "info",
                f"engine {name!r} {why}; its platform was not checked",
                name,
            )
        return
    target_os = t.os or (_os_of(t.platform) if t.platform else None)
    if target_os is not None and target_os != engine_os:
        run.add(
            "platform.other_os",
            "info",
            f"engine {name!r}: built on {info.platform}, the target runs {target_os}; "
            "TensorRT-RTX engines are portable between Windows and Linux, so this is fine",
            name,
        )
    target_arch = _arch_of(t.platform) if t.platform else None
    if target_arch is not None and engine_arch is not None and target_arch != engine_arch:
        run.add(
            "platform.other_arch",
            "warning",
            f"engine {name!r}: built on {info.platform}, the target is {t.platform}; NVIDIA "
            "documents TensorRT-RTX engines as portable between operating systems, not between "
            "CPU architectures: check it on the device (`rtxpack check` there asks the runtime), "
            "or " + _rebuild_hint(info, "there"),
            name,
        )


def check_driver(run: Run) -> None:
    t = run.target
    if t.driver_version is None:
        return
    have = version_tuple(t.driver_version)[0]
    hint = (
        " (give the NVIDIA driver version that nvidia-smi shows, e.g. 580.65.06, not the CUDA "
        "version)"
        if have < 100
        else ""
    )
    cuda = t.cuda_major
    if cuda is not None and cuda in DRIVER_FLOOR:
        floor = DRIVER_FLOOR[cuda]
        if have < floor:
            run.add(
                "driver.too_old",
                "error",
                f"the target's NVIDIA driver {t.driver_version} is older than {floor}, the "
                f"oldest that runs the target's CUDA {cuda} build of TensorRT-RTX; update "
                f"the driver to {floor} or newer{hint}",
            )
        return
    low, high = min(DRIVER_FLOOR.values()), max(DRIVER_FLOOR.values())
    if have < low:
        run.add(
            "driver.too_old",
            "error",
            f"the target's NVIDIA driver {t.driver_version} is older than {low}, the oldest "
            f"any TensorRT-RTX build supports (CUDA 12.9 builds: {low}+, CUDA 13 builds: "
            f"{high}+); update the driver{hint}",
        )
    elif have < high:
        run.add(
            "driver.cuda12_only",
            "warning",
            f"the target's NVIDIA driver {t.driver_version} runs only the CUDA 12.9 build of "
            f"TensorRT-RTX; the CUDA 13 build (the default tensorrt-rtx wheel) needs {high}+. "
            f"Install tensorrt-rtx-cu12 on the target or update the driver to {high}+",
        )


def check_caches(run: Run, caches: Sequence[CacheInfo], info: EngineInfo) -> bool:
    """True when the engine has caches and none fits the target (it will load cold)."""
    caches = [c for c in caches if c.engine == info.name]
    if not caches:
        return False
    misses = {c.id: cache_mismatches(c.environment, run.target) for c in caches}
    fitting = [cid for cid, why in misses.items() if not why]
    if fitting:
        run.add(
            "cache.match",
            "info",
            f"engine {info.name!r}: prewarmed runtime cache {fitting[0]} fits the target",
            info.name,
        )
        return False
    detail = "; ".join(f"{cid}: {why[0]}" for cid, why in misses.items())
    run.add(
        "cache.none_match",
        "warning",
        f"engine {info.name!r}: loads cold, no prewarmed runtime cache fits the target: "
        f"{detail}; the first runs compile kernels. "
        "To ship a warm start, run `rtxpack prewarm BUNDLE -o NEW` on a target machine "
        "(or attach a cache made there with `rtxpack cache add`)",
        info.name,
    )
    return True


# -- get_engine_validity (only with a GPU TensorRT-RTX can use) --------------------------------


# -- the verdicts ------------------------------------------------------------------------------
