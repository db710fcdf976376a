"""Probing this machine: NVML through NVIDIA's nvidia-ml-py (faked here: no machine here has an
NVIDIA driver), the no-driver paths (/proc, nvidia-smi, torch), and that probing never fails."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path
from typing import Any

import pynvml as real_pynvml
import pytest
import tensorrt_rtx as trt

from rtxpack import _constants
from rtxpack._build.engine import current_platform
from rtxpack._checks import machine
from rtxpack._checks.machine import (
    local_target,
    parse_proc_driver_version,
    parse_smi_driver_version,
)

TRT = trt.__version__


class FakeNVMLError(Exception):
    pass


def fake_pynvml(
    *,
    init_error: bool = False,
    driver: Any = "580.65.06",
    name: Any = "NVIDIA GeForce RTX 4090",
    cc: tuple[int, int] | None = (8, 9),
    fail: frozenset[str] = frozenset(),
) -> tuple[types.ModuleType, list[str]]:
    """A stand-in for the ``pynvml`` module of nvidia-ml-py, recording the calls made."""
    calls: list[str] = []
    mod = types.ModuleType("pynvml")

    def call(fn: str, value: Any = None) -> Any:
        calls.append(fn)
        if fn in fail:
            raise FakeNVMLError(fn)
        return value

    def nvml_init() -> None:
        if init_error:
            raise FakeNVMLError("NVML Shared Library Not Found")
        call("nvmlInit")

    functions = {
        "nvmlInit": nvml_init,
        "nvmlShutdown": lambda: call("nvmlShutdown"),
        "nvmlSystemGetDriverVersion": lambda: call("nvmlSystemGetDriverVersion", driver),
        "nvmlDeviceGetHandleByIndex": lambda i: call("nvmlDeviceGetHandleByIndex", object()),
        "nvmlDeviceGetName": lambda h: call("nvmlDeviceGetName", name),
        "nvmlDeviceGetCudaComputeCapability": lambda h: call(
            "nvmlDeviceGetCudaComputeCapability", cc
        ),
    }
    mod.__dict__.update(functions, NVMLError=FakeNVMLError)
    return mod, calls


def test_the_fake_uses_only_names_the_real_binding_has() -> None:
    mod, _ = fake_pynvml()
    names = [n for n in vars(mod) if n.startswith("nvml") or n == "NVMLError"]
    assert names and all(hasattr(real_pynvml, n) for n in names), names
    assert issubclass(real_pynvml.NVMLError_LibraryNotFound, real_pynvml.NVMLError)


def test_nvml_gives_driver_gpu_and_compute_capability(monkeypatch: pytest.MonkeyPatch) -> None:
    mod, calls = fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.setattr(machine, "_driver_without_nvml", lambda: pytest.fail("not needed"))
    here = local_target()
    assert here.driver_version == "580.65.06"
    assert here.gpu_name == "NVIDIA GeForce RTX 4090" and here.compute_capability == "8.9"
    assert here.trt_version == TRT and here.cuda_major == 13
    assert calls[0] == "nvmlInit" and calls[-1] == "nvmlShutdown"


def test_older_bindings_return_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    mod, _ = fake_pynvml(driver=b"535.104.05", name=b"NVIDIA RTX A4000")
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    here = local_target()
    assert (here.driver_version, here.gpu_name) == ("535.104.05", "NVIDIA RTX A4000")


def test_a_part_nvml_refuses_stays_unknown_and_nvml_is_shut_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mod, calls = fake_pynvml(fail=frozenset({"nvmlDeviceGetName"}))
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.setattr(machine, "_torch_gpu", lambda: (None, None))
    here = local_target()
    assert here.gpu_name is None and here.compute_capability == "8.9"
    assert here.driver_version == "580.65.06"
    assert calls[-1] == "nvmlShutdown"
    mod, calls = fake_pynvml(fail=frozenset({"nvmlDeviceGetHandleByIndex"}))
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    here = local_target()
    assert here.compute_capability is None and here.driver_version == "580.65.06"
    assert calls[-1] == "nvmlShutdown"


def test_without_nvml_the_driver_comes_from_proc_or_nvidia_smi(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mod, calls = fake_pynvml(init_error=True)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.setattr(machine, "_driver_without_nvml", lambda: "575.57.08")
    monkeypatch.setattr(machine, "_torch_gpu", lambda: ("NVIDIA GeForce RTX 3090", "8.6"))
    here = local_target()
    assert calls == []  # init failed: nothing else asked, nothing to shut down
    assert here.driver_version == "575.57.08"
    assert (here.gpu_name, here.compute_capability) == ("NVIDIA GeForce RTX 3090", "8.6")


def test_nonsense_from_nvml_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    mod, _ = fake_pynvml(driver="not a version", cc=(123, 4))
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    monkeypatch.setattr(machine, "_driver_without_nvml", lambda: None)
    here = local_target()
    assert here.driver_version is None and here.compute_capability is None


def test_a_binding_that_is_not_installed_is_no_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    assert machine._nvml_query() == (None, None, None)
    local_target()  # and the probe still answers


def test_local_target_answers_here_without_a_gpu() -> None:
    here = local_target()
    assert here.trt_version == TRT
    assert here.platform == current_platform() and here.os == "linux"


def test_a_hanging_nvidia_smi_is_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No NVML and no /proc answer: the probe asks nvidia-smi, and one that never answers is
    killed after NVIDIA_SMI_TIMEOUT_S; the driver is then unknown, and nothing raises."""
    started = tmp_path / "started"
    smi = tmp_path / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n: > {started}\nPATH=/usr/bin:/bin exec sleep 30\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(machine, "Path", lambda _: tmp_path / "no-proc-version")
    monkeypatch.setattr(_constants, "NVIDIA_SMI_TIMEOUT_S", 0.5)
    begin = time.monotonic()
    here = local_target()
    assert started.exists(), "the fake nvidia-smi was not asked"
    assert here.driver_version is None
    assert time.monotonic() - begin < 20  # the fake sleeps 30 s: it was not waited for


def test_nvidia_smi_answers_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 581.15\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "pynvml", None)
    monkeypatch.setattr(machine, "Path", lambda _: tmp_path / "no-proc-version")
    assert machine._driver_without_nvml() == "581.15"


def test_driver_version_parsers() -> None:
    proc = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 2025\nGCC ..."
    assert parse_proc_driver_version(proc) == "580.65.06"
    open_km = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.57.08  Release Build"
    assert parse_proc_driver_version(open_km) == "575.57.08"
    assert parse_proc_driver_version("nothing here") is None
    assert parse_smi_driver_version("581.42\n581.42\n") == "581.42"
    assert parse_smi_driver_version("NVIDIA-SMI has failed\n") is None
