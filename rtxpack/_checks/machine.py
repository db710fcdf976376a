"""This machine, as a ``Target``: the installed TensorRT-RTX (and the CUDA major it was built
for), the first GPU's name and compute capability, the NVIDIA driver, the OS and platform.

Probing never raises and never hangs: what cannot be found is None. The driver and GPU come from
NVML (the driver's management library, through NVIDIA's binding nvidia-ml-py); without it, the
driver version from Linux's /proc/driver/nvidia/version or ``nvidia-smi``, and the GPU from
torch.cuda.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .. import _constants
from .._build.engine import current_platform
from .._exceptions import InvalidArgumentError
from .._facts import supports_cc
from .._format.manifest import CC_RE
from .._text import version_tuple
from .target import Target

__all__ = [
    "gpu_usable",
    "installed_cuda_major",
    "local_target",
    "missing_locally",
    "parse_proc_driver_version",
    "parse_smi_driver_version",
]


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
    """(driver version, first GPU's name, its compute capability) through NVML, the driver's
    management library, with NVIDIA's own binding (nvidia-ml-py, module ``pynvml``). All None
    when the library is not there (no driver); a part NVML refuses stays None."""
    try:
        import pynvml
    except ImportError:
        return None, None, None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None, None, None
    driver = gpu = cc = None
    try:
        with contextlib.suppress(pynvml.NVMLError):
            driver = _as_text(pynvml.nvmlSystemGetDriverVersion())
        with contextlib.suppress(pynvml.NVMLError):
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            with contextlib.suppress(pynvml.NVMLError):
                gpu = _as_text(pynvml.nvmlDeviceGetName(handle))
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            cc = f"{int(major)}.{int(minor)}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return driver, gpu, cc


def _as_text(value: object) -> str:
    """NVML strings come as str (nvidia-ml-py 11.515+) or bytes (older releases)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


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
            timeout=_constants.NVIDIA_SMI_TIMEOUT_S,
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
    """This machine: installed TensorRT-RTX (and the CUDA major its wheel was built for), first
    GPU's name and compute capability, NVIDIA driver version, OS and platform. Unknown parts
    are None. Never raises, never hangs.

    The GPU comes from NVML (nvidia-ml-py) or else from torch.cuda. torch is
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
    trt_version = _installed_trt_version()
    return Target(
        trt_version=trt_version,
        compute_capability=cc if cc and CC_RE.match(cc) else None,
        driver_version=driver if driver and _is_version(driver) else None,
        os=os_name,
        gpu_name=gpu,
        platform=current_platform(),
        cuda_major=installed_cuda_major() if trt_version is not None else None,
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
