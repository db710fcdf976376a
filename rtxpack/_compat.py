"""Will a bundle run on a machine? ``check`` answers engine by engine, before touching the GPU.

Every rule that decides what runs where lives in ``_target`` (TensorRT-RTX release, runtime
caches) or here (compute capability, platform, driver, format version). docs/compatibility.md
lists every finding code with its meaning and fix.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import _format
from ._build import current_platform
from ._bundle import Bundle
from ._exceptions import (
    BundleFormatError,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    RtxpackError,
    UnsupportedVersionError,
)
from ._facts import DRIVER_FLOOR, SUPPORTED_CCS, cc_tuple, supports_cc
from ._manifest import CC_RE, EngineInfo
from ._target import Target, cache_mismatches, same_release, version_tuple

__all__ = [
    "SEVERITIES",
    "STATUSES",
    "CompatibilityReport",
    "EngineVerdict",
    "Finding",
    "check",
    "decode_validity",
    "local_target",
]

SEVERITIES = ("error", "warning", "info")
#: Per-engine verdicts, best first.
STATUSES = ("loads", "loads_cold", "needs_rebuild", "cannot_run")
LOADABLE = ("loads", "loads_cold")

#: Error codes that rebuilding the engine from its source (``rtxpack rebuild``) fixes.
_REBUILDABLE = frozenset(
    {
        "trt.version_mismatch",
        "gpu.cc_not_targeted",
        "runtime.version_mismatch",
        "runtime.unsupported_cc",
    }
)


@dataclass(frozen=True)
class Finding:
    """One result of a check: a stable dotted ``code``, a severity and a message for people.

    The message says what was found, what was needed and what to do.
    """

    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    engine: str | None = None  # None: about the whole bundle

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidArgumentError(
                f"severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class EngineVerdict:
    """What will happen to one engine on the target.

    ``status``: ``loads``; ``loads_cold`` (runs, but no prewarmed runtime cache in the bundle fits
    the target, so the first runs compile kernels); ``needs_rebuild`` (will not load, but the
    bundle carries its model source, so ``rtxpack rebuild`` fixes it); ``cannot_run``.
    ``engine`` is None for a bundle that could not be read at all.
    """

    engine: str | None
    status: str
    reasons: tuple[str, ...] = ()

    @property
    def loads(self) -> bool:
        return self.status in LOADABLE

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "status": self.status, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class CompatibilityReport:
    """Everything ``check`` found about one bundle on one target."""

    bundle: str
    target: Target
    findings: tuple[Finding, ...]
    engines: tuple[EngineVerdict, ...]
    format_version: str | None = None  # None when the header could not be read

    @property
    def ok(self) -> bool:
        """No error findings: every checked engine can load (see ``engines`` for caches)."""
        return not self.errors

    @property
    def can_load(self) -> bool:
        """Every engine loads (``loads`` or ``loads_cold``)."""
        return bool(self.engines) and all(v.loads for v in self.engines)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def verdict(self, engine: str) -> EngineVerdict:
        for v in self.engines:
            if v.engine == engine:
                return v
        names = ", ".join(str(v.engine) for v in self.engines) or "none"
        raise InvalidArgumentError(f"no engine named {engine!r} in this report (it has: {names})")

    def summary(self) -> str:
        """One paragraph for an exception message: the errors, or that all engines load."""
        if self.ok:
            return f"{self.bundle}: every engine can load on the target"
        lines = [f"{self.bundle} cannot run on the target:"]
        lines += [f"- {f.message}" for f in self.errors]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "format_version": self.format_version,
            "target": self.target.to_dict(),
            "ok": self.ok,
            "can_load": self.can_load,
            "engines": [v.to_dict() for v in self.engines],
            "findings": [f.to_dict() for f in self.findings],
        }


# ---------------------------------------------------------------------------------------------
# This machine


def _installed_trt_version() -> str | None:
    try:
        import tensorrt_rtx
    except Exception:  # ImportError, or a broken install (missing .so)
        return None
    version = getattr(tensorrt_rtx, "__version__", None)
    return version if isinstance(version, str) and _is_version(version) else None


def installed_cuda_major() -> int | None:
    """The CUDA major version the installed TensorRT-RTX wheel was built for (12, 13), if known."""
    for major in (13, 12):
        for dist in (f"tensorrt_rtx_cu{major}", f"tensorrt-rtx-cu{major}-libs"):
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                importlib.metadata.version(dist)
                return major
    return None


def _is_version(text: str) -> bool:
    try:
        version_tuple(text)
    except InvalidArgumentError:
        return False
    return True


_PROC_VERSION_RE = re.compile(r"Kernel Module\s+(?:for\s+\S+\s+)?([0-9]+(?:\.[0-9]+)+)")


def parse_proc_driver_version(text: str) -> str | None:
    """The driver version from Linux's /proc/driver/nvidia/version text, if present."""
    m = _PROC_VERSION_RE.search(text)
    return m.group(1) if m else None


def parse_smi_driver_version(text: str) -> str | None:
    """The first GPU's driver version from ``nvidia-smi --query-gpu=driver_version`` output."""
    for line in text.splitlines():
        line = line.strip()
        if line and _is_version(line):
            return line
    return None


def _nvml_query() -> tuple[str | None, str | None, str | None]:
    """(driver version, first GPU's name, its compute capability) through NVML, if available."""
    names = ["nvml.dll"] if sys.platform == "win32" else ["libnvidia-ml.so.1"]
    if sys.platform == "win32":
        names.append(
            os.path.join(
                os.environ.get("PROGRAMFILES", r"C:\Program Files"),
                "NVIDIA Corporation",
                "NVSMI",
                "nvml.dll",
            )
        )
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None or lib.nvmlInit_v2() != 0:
        return None, None, None
    driver = gpu = cc = None
    try:
        buf = ctypes.create_string_buffer(96)
        if lib.nvmlSystemGetDriverVersion(buf, ctypes.c_uint(96)) == 0:
            driver = buf.value.decode("ascii", "replace")
        handle = ctypes.c_void_p()
        if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(0), ctypes.byref(handle)) == 0:
            if lib.nvmlDeviceGetName(handle, buf, ctypes.c_uint(96)) == 0:
                gpu = buf.value.decode("utf-8", "replace")
            major, minor = ctypes.c_int(), ctypes.c_int()
            if (
                lib.nvmlDeviceGetCudaComputeCapability(
                    handle, ctypes.byref(major), ctypes.byref(minor)
                )
                == 0
            ):
                cc = f"{major.value}.{minor.value}"
    finally:
        lib.nvmlShutdown()
    return driver, gpu, cc


def _driver_without_nvml() -> str | None:
    with contextlib.suppress(OSError):
        version = parse_proc_driver_version(Path("/proc/driver/nvidia/version").read_text())
        if version:
            return version
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run(
            [smi, "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_smi_driver_version(out.stdout) if out.returncode == 0 else None


def _torch_gpu() -> tuple[str | None, str | None]:
    try:
        import torch

        if not torch.cuda.is_available():
            return None, None
        major, minor = torch.cuda.get_device_capability(0)
        return str(torch.cuda.get_device_name(0)), f"{major}.{minor}"
    except Exception:
        return None, None


def local_target() -> Target:
    """This machine: installed TensorRT-RTX, first GPU's name and compute capability, NVIDIA
    driver version, OS and platform. Unknown parts are None. Never raises, never hangs.

    The GPU comes from NVML (the driver's management library) or else from torch.cuda. torch is
    imported only when a driver is present, since without one it cannot see a GPU either.
    """
    driver = gpu = cc = None
    with contextlib.suppress(Exception):
        driver, gpu, cc = _nvml_query()
    if driver is None:
        with contextlib.suppress(Exception):
            driver = _driver_without_nvml()
    if cc is None and (driver is not None or "torch" in sys.modules):
        gpu, cc = _torch_gpu()
    os_name = {"win32": "windows", "linux": "linux"}.get(sys.platform)
    return Target(
        trt_version=_installed_trt_version(),
        compute_capability=cc if cc and CC_RE.match(cc) else None,
        driver_version=driver if driver and _is_version(driver) else None,
        os=os_name,
        gpu_name=gpu,
        platform=current_platform(),
    )


def missing_locally(here: Target) -> frozenset[str]:
    """What ``local_target()`` did not find because it is not there: "trt" (TensorRT-RTX not
    importable) and "gpu" (no GPU and no NVIDIA driver at all)."""
    out = set()
    if here.trt_version is None:
        out.add("trt")
    if here.compute_capability is None and here.driver_version is None:
        out.add("gpu")
    return frozenset(out)


def gpu_usable(here: Target) -> bool:
    """This machine has TensorRT-RTX and a GPU it supports, so its runtime can be asked."""
    return (
        here.trt_version is not None
        and here.compute_capability is not None
        and supports_cc(here.compute_capability)
    )


# ---------------------------------------------------------------------------------------------
# The checks


def _cc_list(ccs: Iterable[str]) -> str:
    return ", ".join(ccs) or "none"


def _pip_spec(version: str) -> str:
    parts = version_tuple(version)
    if len(parts) >= 4:
        return f"tensorrt-rtx=={version}"
    major, minor, patch = (*parts, 0, 0, 0)[:3]
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
    prefix = platform.split("_", 1)[0]
    return prefix if prefix in ("linux", "windows") else None


@dataclass
class _Run:
    """Findings collected while checking one bundle."""

    target: Target
    findings: list[Finding] = field(default_factory=list)

    def add(self, code: str, severity: str, message: str, engine: str | None = None) -> None:
        self.findings.append(Finding(code, severity, message, engine))


def _check_format(run: _Run, version: tuple[int, int]) -> None:
    if version[1] > _format.FORMAT_VERSION[1]:
        found = _format.format_version_str(version)
        run.add(
            "format.newer_minor",
            "info",
            f"bundle format {found} is newer than the {_format.format_version_str()} this "
            "rtxpack writes; it still loads and fields this version does not know are ignored "
            "(upgrade rtxpack to use them: pip install -U rtxpack)",
        )


def _check_unknown_fields(run: _Run, missing: frozenset[str]) -> None:
    t = run.target
    if t.compute_capability is None and "gpu" in missing:
        run.add(
            "gpu.not_found",
            "error",
            "no NVIDIA GPU or driver found on this machine (asked NVML, /proc/driver/nvidia, "
            "nvidia-smi and torch.cuda); TensorRT-RTX engines need an RTX GPU and its driver: "
            'run on such a machine, or use rtxpack.load(..., fallback="onnxruntime") when the '
            "bundle carries its source",
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


def _check_trt(run: _Run, info: EngineInfo, missing: frozenset[str]) -> None:
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
    try:
        same = same_release(built, have)
    except InvalidArgumentError:
        run.add(
            "engine.unknown_version",
            "warning",
            f"engine {name!r}: records TensorRT-RTX version {built!r}, which is not a version "
            "number, so it was not compared with the target's; rebuild the bundle",
            name,
        )
        return
    if not same:
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


def _check_gpu_supported(run: _Run) -> None:
    cc = run.target.compute_capability
    if cc is not None and not supports_cc(cc):
        run.add(
            "gpu.unsupported_cc",
            "error",
            f"the target GPU {_gpu_label(run.target)} is not supported by TensorRT-RTX at all "
            f"(it supports CC {_cc_list(SUPPORTED_CCS)} and newer RTX GPUs; not Hopper 9.0, "
            "data-center Blackwell 10.x or GPUs below 7.5); no rebuild helps: run on an RTX "
            'GPU, or use rtxpack.load(..., fallback="onnxruntime") when the bundle carries its '
            "source",
        )


def _check_cc(run: _Run, info: EngineInfo) -> None:
    cc, name = run.target.compute_capability, info.name
    if cc is None:
        return
    gpu = _gpu_label(run.target)
    if not supports_cc(cc):
        return  # reported once for the bundle by _check_gpu_supported
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
    if cc in targets:
        return
    if info.hardware_portable and all(cc_tuple(cc) > cc_tuple(t) for t in targets):
        run.add(
            "gpu.ptx_only",
            "warning",
            f"engine {name!r}: targets CC {_cc_list(targets)}; the target GPU {gpu} is newer, "
            "so it runs through PTX (like EngineValidity.SUBOPTIMAL): it works but is slower "
            "than a native build; a TensorRT-RTX release that knows this GPU builds a native "
            "engine (upgrade it, then `rtxpack rebuild`)",
            name,
        )
        return
    if cc in SUPPORTED_CCS:
        what, flags = f"for CC {cc}", f" --cc {cc}"
    else:
        what, flags = (
            "for the portable default targets (newer GPUs run it through PTX)",
            (" --portable"),
        )
    run.add(
        "gpu.cc_not_targeted",
        "error",
        f"engine {name!r}: built for CC {_cc_list(targets)}"
        f"{' (plus PTX for newer GPUs)' if info.hardware_portable else ''}, not for the "
        f"target GPU {gpu}; " + _rebuild_hint(info, what, flags),
        name,
    )


def _arch_of(platform: str) -> str | None:
    _, sep, arch = platform.partition("_")
    return arch if sep and arch else None


def _check_platform(run: _Run, info: EngineInfo) -> None:
    """TensorRT-RTX engines move between Windows and Linux (NVIDIA's TensorRT-RTX docs, "CPU-Only
    AOT and TensorRT-RTX Engines": "The engine is portable to both Windows and Linux operating
    systems"), so another OS is only worth an info; another CPU architecture is not documented
    as portable, so it is a warning."""
    t, name = run.target, info.name
    engine_os, engine_arch = _os_of(info.platform), _arch_of(info.platform)
    if engine_os is None:
        if t.os is not None or t.platform is not None:
            run.add(
                "platform.unknown",
                "info",
                f"engine {name!r}: records platform {info.platform!r}, which rtxpack does not "
                "know; it was not checked",
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
            "or rebuild it there with `rtxpack rebuild`",
            name,
        )


def _check_driver(run: _Run) -> None:
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
    cuda = None
    local = _installed_trt_version()
    if t.trt_version is not None and local is not None and same_release(t.trt_version, local):
        cuda = installed_cuda_major()
    if cuda is not None:
        floor = DRIVER_FLOOR[cuda]
        if have < floor:
            run.add(
                "driver.too_old",
                "error",
                f"the target's NVIDIA driver {t.driver_version} is older than {floor}, the "
                f"oldest that runs the CUDA {cuda} build of TensorRT-RTX installed here; update "
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


def _check_caches(run: _Run, bundle: Bundle, info: EngineInfo) -> bool:
    """True when the engine has caches and none fits the target (it will load cold)."""
    caches = [c for c in bundle.manifest.caches if c.engine == info.name]
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

_DIAGNOSTICS = {
    # bit name: (code, message, fix)
    "VERSION_MISMATCH": (
        "runtime.version_mismatch",
        "was built by a different TensorRT-RTX release than the installed one",
        "install the release that built it, or rebuild it with `rtxpack rebuild`",
    ),
    "UNSUPPORTED_CC": (
        "runtime.unsupported_cc",
        "does not support this GPU's compute capability",
        "rebuild it for this GPU with `rtxpack rebuild` (if TensorRT-RTX supports the GPU)",
    ),
    "OLD_CUDA_DRIVER": (
        "runtime.old_cuda_driver",
        "needs a newer CUDA driver than the installed one",
        "update the NVIDIA driver",
    ),
    "OLD_CUDA_RUNTIME": (
        "runtime.old_cuda_runtime",
        "needs a newer CUDA runtime than the one TensorRT-RTX uses here",
        "install the TensorRT-RTX build for the newer CUDA (tensorrt-rtx-cu13) and its runtime",
    ),
    "INSUFFICIENT_GPU_MEMORY": (
        "runtime.insufficient_gpu_memory",
        "needs more GPU memory than is free",
        "close other programs using the GPU, or use a GPU with more memory",
    ),
    "MALFORMED_ENGINE": (
        "runtime.malformed_engine",
        "is malformed (TensorRT-RTX cannot read it)",
        "re-download or rebuild the bundle",
    ),
    "CUDA_ERROR": (
        "runtime.cuda_error",
        "could not be checked because CUDA reported an error",
        "check the GPU and driver (nvidia-smi) and that no other process broke the CUDA context",
    ),
}


def decode_validity(validity: Any, diagnostics: int, engine: str) -> list[Finding]:
    """Findings for the result of ``tensorrt_rtx.Runtime.get_engine_validity``: one per
    ``EngineInvalidityDiagnostics`` bit set, a warning for SUBOPTIMAL, nothing for VALID."""
    import tensorrt_rtx as trt

    out: list[Finding] = []
    if validity == trt.EngineValidity.VALID:
        return out
    if validity == trt.EngineValidity.SUBOPTIMAL:
        return [
            Finding(
                "runtime.suboptimal",
                "warning",
                f"engine {engine!r}: TensorRT-RTX says it is suboptimal here: the GPU is "
                "newer than this TensorRT-RTX knows, so it runs through PTX, slower than a "
                "native build; upgrade TensorRT-RTX and rebuild with `rtxpack rebuild`",
                engine,
            )
        ]
    remaining = int(diagnostics)
    for bit_name, member in trt.EngineInvalidityDiagnostics.__members__.items():
        bit = int(member)
        if not remaining & bit:
            continue
        remaining &= ~bit
        code, what, fix = _DIAGNOSTICS.get(
            bit_name,
            (f"runtime.{bit_name.lower()}", f"is invalid here ({bit_name})", "rebuild it"),
        )
        out.append(
            Finding(
                code,
                "error",
                f"engine {engine!r}: TensorRT-RTX says it {what} (EngineInvalidityDiagnostics."
                f"{bit_name}); {fix}",
                engine,
            )
        )
    if remaining:
        out.append(
            Finding(
                "runtime.unknown_diagnostic",
                "error",
                f"engine {engine!r}: TensorRT-RTX says it is invalid here, with diagnostic bits "
                f"{remaining:#x} this rtxpack does not know; upgrade rtxpack for a description",
                engine,
            )
        )
    if not out:
        out.append(
            Finding(
                "engine.invalid",
                "error",
                f"engine {engine!r}: TensorRT-RTX says it is invalid here and gives no reason; "
                "check the GPU and driver, or rebuild the engine with `rtxpack rebuild`",
                engine,
            )
        )
    return out


def _make_runtime() -> Any:
    import tensorrt_rtx as trt

    return trt.Runtime(trt.Logger(trt.Logger.INTERNAL_ERROR))


def _runtime_findings(bundle: Bundle, engines: Iterable[EngineInfo]) -> list[Finding]:
    try:
        runtime = _make_runtime()
    except Exception as exc:
        return [
            Finding(
                "runtime.not_checked",
                "info",
                f"could not create a TensorRT-RTX runtime to ask it about the engines ({exc})",
            )
        ]
    out: list[Finding] = []
    for info in engines:
        try:
            data = bundle.read_engine(info.name, verify=False)
            try:
                validity, diagnostics = runtime.get_engine_validity(data)
            finally:
                del data
        except RtxpackError as exc:
            out.append(Finding("format.damaged", "error", str(exc), info.name))
            continue
        except Exception as exc:
            out.append(
                Finding(
                    "runtime.not_checked",
                    "info",
                    f"TensorRT-RTX could not check engine {info.name!r} ({exc})",
                    info.name,
                )
            )
            continue
        out += decode_validity(validity, diagnostics, info.name)
    return out


# -- the verdicts ------------------------------------------------------------------------------


def _verdict(info: EngineInfo, findings: list[Finding], cold: bool) -> EngineVerdict:
    mine = [f for f in findings if f.engine in (None, info.name)]
    errors = [f for f in mine if f.severity == "error"]
    if errors:
        fixable = info.source is not None and all(f.code in _REBUILDABLE for f in errors)
        status = "needs_rebuild" if fixable else "cannot_run"
        return EngineVerdict(info.name, status, tuple(f.message for f in errors))
    warnings = [f for f in mine if f.severity == "warning"]
    if cold:
        cache = [f for f in warnings if f.code == "cache.none_match"]
        rest = [f for f in warnings if f.code != "cache.none_match"]
        return EngineVerdict(info.name, "loads_cold", tuple(f.message for f in cache + rest))
    return EngineVerdict(info.name, "loads", tuple(f.message for f in warnings))


def _unreadable(path: str, target: Target, exc: RtxpackError) -> CompatibilityReport:
    if isinstance(exc, UnsupportedVersionError):
        code = "format.unsupported_version"
    elif isinstance(exc, NotABundleError):
        code = "format.not_a_bundle"
    else:  # DamagedBundleError, IntegrityError (the manifest digest does not match)
        code = "format.damaged"
    finding = Finding(code, "error", str(exc))
    return CompatibilityReport(
        bundle=path,
        target=target,
        findings=(finding,),
        engines=(EngineVerdict(None, "cannot_run", (finding.message,)),),
        format_version=getattr(exc, "found", None),
    )


def run_check(
    bundle: str | os.PathLike[str] | Bundle,
    target: Target,
    *,
    engine: str | None = None,
    missing: Iterable[str] = (),
    ask_runtime: bool = False,
) -> CompatibilityReport:
    """``check`` with the knobs the CLI needs.

    ``missing``: parts of the target known to be absent rather than unknown: ``"trt"`` (an
    unknown TensorRT-RTX version means it is not installed) and ``"gpu"`` (no GPU): errors, not
    "not checked" infos. ``ask_runtime``: also ask this machine's TensorRT-RTX runtime
    (``get_engine_validity``); only meaningful when the target is this machine.
    """
    if not isinstance(target, Target):
        raise InvalidArgumentError(
            f"target: expected an rtxpack.Target or None, got {type(target).__name__}"
        )
    absent = frozenset(missing)
    if not absent <= {"trt", "gpu"}:
        raise InvalidArgumentError(f"missing: {sorted(absent)}; expected 'trt' and/or 'gpu'")
    if isinstance(bundle, Bundle):
        return _check_open(bundle, target, engine, absent, ask_runtime)
    if not isinstance(bundle, (str, os.PathLike)):
        raise InvalidArgumentError(
            f"bundle: expected a path or an open rtxpack.Bundle, got {type(bundle).__name__}"
        )
    path = str(bundle)
    try:
        opened = Bundle(bundle)
    except InvalidArgumentError:
        raise  # no such file, a folder: the argument is wrong
    except (BundleFormatError, IntegrityError) as exc:
        return _unreadable(path, target, exc)
    with opened:
        report = _check_open(opened, target, engine, absent, ask_runtime)
    return replace(report, bundle=path)


def _check_open(
    bundle: Bundle,
    target: Target,
    engine: str | None,
    missing: frozenset[str],
    ask_runtime: bool,
) -> CompatibilityReport:
    engines = (bundle.manifest.engine(engine),) if engine is not None else bundle.manifest.engines
    run = _Run(target)
    _check_format(run, bundle._file.version)
    _check_unknown_fields(run, missing)
    _check_driver(run)
    _check_gpu_supported(run)
    for info in engines:
        _check_trt(run, info, missing)
        _check_cc(run, info)
        _check_platform(run, info)
    if ask_runtime:
        run.findings += _runtime_findings(bundle, engines)
    verdicts = []
    for info in engines:
        mine = [f for f in run.findings if f.engine in (None, info.name)]
        has_errors = any(f.severity == "error" for f in mine)
        cold = not has_errors and _check_caches(run, bundle, info)
        verdicts.append(_verdict(info, run.findings, cold))
    return CompatibilityReport(
        bundle=str(bundle.path),
        target=target,
        findings=tuple(run.findings),
        engines=tuple(verdicts),
        format_version=bundle.format_version,
    )


def check(
    bundle: str | os.PathLike[str] | Bundle,
    target: Target | None = None,
    *,
    engine: str | None = None,
) -> CompatibilityReport:
    """Can the bundle's engines run on ``target`` (default: this machine)? Never touches a GPU
    unless ``target`` is None and this machine has one that TensorRT-RTX can use.

    A bundle that cannot be read (damaged, too new, not a bundle) gives a report with an error
    finding and status ``cannot_run``; wrong arguments raise ``InvalidArgumentError``.
    """
    if target is None:
        here = local_target()
        return run_check(
            bundle, here, engine=engine, missing=missing_locally(here), ask_runtime=gpu_usable(here)
        )
    return run_check(bundle, target, engine=engine)
