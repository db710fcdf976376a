"""rtxpack.check: real bundles, real TensorRT-RTX version data; the GPU runtime only as a double."""

from __future__ import annotations

import json
import shutil
import struct
from dataclasses import replace
from pathlib import Path

import pytest
import tensorrt_rtx as trt
from conftest import MLP_SHAPES, build_mlp_engine
from doubles.tensorrt_rtx import ValidityRuntime

import rtxpack
from rtxpack._build.engine import current_platform
from rtxpack._checks import machine
from rtxpack._checks import validity as _validity
from rtxpack._checks.check import check
from rtxpack._checks.machine import (
    local_target,
)
from rtxpack._checks.report import CompatibilityReport, Finding
from rtxpack._checks.target import Target
from rtxpack._checks.validity import decode_validity
from rtxpack._format import container
from rtxpack._format.manifest import CacheInfo, Environment
from rtxpack._save import EngineSpec
from rtxpack._text import utc_now

TRT = trt.__version__
GPU = "NVIDIA GeForce RTX 3090"
HERE = Target(
    trt_version=TRT,
    compute_capability="8.6",
    driver_version="580.65.06",
    os="linux",
    gpu_name=GPU,
    platform=current_platform(),
)


def codes(report: CompatibilityReport, severity: str | None = None) -> set[str]:
    return {f.code for f in report.findings if severity is None or f.severity == severity}


def status(report: CompatibilityReport, engine: str = "main") -> str:
    return report.verdict(engine).status


@pytest.fixture(scope="module")
def raw86(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An engine for CC 8.6 only, packed without its source."""
    path = tmp_path_factory.mktemp("compat") / "raw86.rtxpack"
    rtxpack.save(build_mlp_engine(ccs=("8.6",)), path)
    return path


@pytest.fixture(scope="module")
def src86(tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path) -> Path:
    """An engine for CC 8.6 only, built from ONNX, with its source."""
    path = tmp_path_factory.mktemp("compat") / "src86.rtxpack"
    rtxpack.save(onnx_mlp, path, shapes=MLP_SHAPES, compute_capabilities=["8.6"])
    return path


def test_matching_target_loads(src86: Path) -> None:
    report = check(src86, HERE)
    assert report.ok and report.can_load
    assert status(report) == "loads"
    assert not report.errors and not report.warnings
    assert report.format_version == "1.1"
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data) == {
        "bundle",
        "format_version",
        "target",
        "ok",
        "can_load",
        "engines",
        "findings",
    }
    assert data["engines"] == [{"engine": "main", "status": "loads", "reasons": []}]


def test_other_release_needs_rebuild_with_source(src86: Path) -> None:
    report = check(src86, replace(HERE, trt_version="1.8.0"))
    assert not report.ok
    assert status(report) == "needs_rebuild"
    (finding,) = report.errors
    assert finding.code == "trt.version_mismatch" and finding.engine == "main"
    assert "1.7.1" in finding.message and "1.8.0" in finding.message
    assert "rtxpack rebuild" in finding.message
    assert report.verdict("main").reasons == (finding.message,)


def test_other_release_cannot_run_without_source(raw86: Path) -> None:
    report = check(raw86, replace(HERE, trt_version="1.6.0.5"))
    assert status(report) == "cannot_run"
    (finding,) = report.errors
    assert finding.code == "trt.version_mismatch"
    assert 'pip install "tensorrt-rtx>=1.7.1,<1.7.2"' in finding.message
    assert "does not carry its source" in finding.message


def test_same_release_other_build_number_loads(raw86: Path) -> None:
    report = check(raw86, replace(HERE, trt_version="1.7.1.999"))
    assert "trt.version_mismatch" not in codes(report)


def test_cc_not_targeted(src86: Path, raw86: Path) -> None:
    report = check(src86, replace(HERE, compute_capability="8.9", gpu_name="RTX 4090"))
    assert codes(report, "error") == {"gpu.cc_not_targeted"}
    assert status(report) == "needs_rebuild"
    assert "for CC 8.9" in report.errors[0].message and "8.6" in report.errors[0].message
    assert "`rtxpack rebuild BUNDLE -o NEW --cc 8.9`" in report.errors[0].message
    assert status(check(raw86, replace(HERE, compute_capability="8.9"))) == "cannot_run"


@pytest.mark.parametrize("cc", ["9.0", "10.0", "7.0", "6.1"])
def test_gpus_tensorrt_rtx_does_not_support(src86: Path, cc: str) -> None:
    report = check(src86, replace(HERE, compute_capability=cc, gpu_name="H100"))
    assert codes(report, "error") == {"gpu.unsupported_cc"}
    assert status(report) == "cannot_run"  # a rebuild does not help, even with the source
    assert "not supported by TensorRT-RTX" in report.errors[0].message
    assert report.errors[0].engine is None  # about the GPU, said once for all engines


def test_newer_gpu_with_portable_engine_is_a_warning(onnx_bundle: Path, raw86: Path) -> None:
    report = check(onnx_bundle, replace(HERE, compute_capability="13.0"))
    assert report.ok and status(report) == "loads"
    assert codes(report, "warning") == {"gpu.ptx_only"}
    assert "PTX" in report.warnings[0].message
    assert report.verdict("main").reasons == (report.warnings[0].message,)
    # a portable engine on a GPU it targets: nothing to say
    assert not check(onnx_bundle, replace(HERE, compute_capability="12.0")).findings
    # an engine for 8.6 only is not portable: a newer GPU cannot run it
    assert codes(check(raw86, replace(HERE, compute_capability="13.0")), "error") == {
        "gpu.cc_not_targeted"
    }


def test_engines_move_between_windows_and_linux(src86: Path, raw86: Path) -> None:
    """NVIDIA: TensorRT-RTX engines are portable to both Windows and Linux."""
    target = replace(HERE, os="windows", platform=None)
    report = check(src86, target)
    assert report.ok and status(report) == "loads"
    assert "platform.other_os" in codes(report, "info")
    # a packed engine's platform is unknown (the bytes do not say): not guessed, not checked
    packed = check(raw86, target)
    assert packed.ok and "platform.unknown" in codes(packed, "info")
    assert any("do not say which platform" in f.message for f in packed.findings)
    arm = check(src86, replace(HERE, platform="linux_aarch64"))
    assert arm.ok and "platform.other_arch" in codes(arm, "warning")
    assert "not between CPU architectures" in arm.warnings[0].message


def test_driver(raw86: Path) -> None:
    assert machine.installed_cuda_major() == 13  # the cu13 wheel is installed here
    assert local_target().cuda_major == 13  # ... and the probe says so in the local Target
    cu13 = replace(HERE, cuda_major=13)
    old = check(raw86, replace(cu13, driver_version="575.51.03"))
    assert codes(old, "error") == {"driver.too_old"}
    assert "580" in old.errors[0].message and status(old) == "cannot_run"
    cuda_number = check(raw86, replace(cu13, driver_version="13.0"))
    assert "not the CUDA version" in cuda_number.errors[0].message
    assert check(raw86, replace(cu13, driver_version="581.42")).ok
    cu12 = replace(HERE, cuda_major=12, driver_version="560.35")
    assert check(raw86, cu12).ok  # the CUDA 12.9 build runs from 525 on
    assert "525" in check(raw86, replace(cu12, driver_version="510.1")).errors[0].message
    # which CUDA build the target has is unknown: what any build needs
    other = replace(HERE, trt_version="1.9.0", driver_version="560.35")
    assert "driver.cuda12_only" in codes(check(raw86, other), "warning")
    assert "driver.too_old" in codes(check(raw86, replace(other, driver_version="510.1")))


def test_an_offline_target_is_judged_on_what_it_says_not_on_this_machine(
    raw86: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in issue 8: the driver rule asked which CUDA build of TensorRT-RTX is installed
    HERE, so a described fleet device got another answer on each machine that checked it."""
    described = replace(HERE, driver_version="575.51.03")  # cuda_major unknown
    before = check(raw86, described)
    for major in (12, 13, None):
        monkeypatch.setattr(machine, "installed_cuda_major", lambda major=major: major)
        after = check(raw86, described)
        assert [f.to_dict() for f in after.findings] == [f.to_dict() for f in before.findings]
    assert codes(before, "warning") == {"driver.cuda12_only"}


def test_unknown_target_fields_are_not_checked(raw86: Path) -> None:
    report = check(raw86, Target())
    assert report.ok and status(report) == "loads"
    assert codes(report) == {
        "trt.not_checked",
        "gpu.not_checked",
        "driver.not_checked",
        "platform.not_checked",
    }
    assert all(f.severity == "info" for f in report.findings)


def _patched_header(src: Path, dst: Path, *, major: int, minor: int) -> Path:
    shutil.copy(src, dst)
    with open(dst, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<HH", major, minor))
    return dst


def test_too_new_major_is_reported_not_raised(onnx_bundle: Path, tmp_path: Path) -> None:
    path = _patched_header(onnx_bundle, tmp_path / "future.rtxpack", major=2, minor=1)
    report = check(path, HERE)
    assert not report.ok and not report.can_load
    (finding,) = report.findings
    assert finding.code == "format.unsupported_version" and finding.severity == "error"
    assert "2.1" in finding.message and "1.1" in finding.message
    assert "upgrade rtxpack" in finding.message
    assert report.format_version == "2.1"
    (verdict,) = report.engines
    assert verdict.engine is None and verdict.status == "cannot_run"


def test_newer_minor_still_loads(onnx_bundle: Path, tmp_path: Path) -> None:
    path = _patched_header(onnx_bundle, tmp_path / "minor.rtxpack", major=1, minor=7)
    report = check(path, HERE)
    assert report.ok and status(report) == "loads"
    assert codes(report) == {"format.newer_minor"}
    assert "1.7" in report.findings[0].message


def test_unreadable_files_are_reported(onnx_bundle: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.rtxpack"
    junk.write_bytes(b"PK\x03\x04 not a bundle" * 10)
    assert codes(check(junk, HERE)) == {"format.not_a_bundle"}
    cut = tmp_path / "cut.rtxpack"
    cut.write_bytes(onnx_bundle.read_bytes()[:5000])
    report = check(cut, HERE)
    assert codes(report) == {"format.damaged"}
    assert [(v.engine, v.status) for v in report.engines] == [(None, "cannot_run")]


def test_bad_arguments_raise(onnx_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(rtxpack.InvalidArgumentError, match="no such bundle"):
        check(tmp_path / "missing.rtxpack", HERE)
    with pytest.raises(rtxpack.InvalidArgumentError, match="target"):
        check(onnx_bundle, "8.6")  # type: ignore[arg-type]
    with pytest.raises(rtxpack.InvalidArgumentError, match="bundle"):
        check(42, HERE)  # type: ignore[arg-type]
    with pytest.raises(rtxpack.InvalidArgumentError, match="no engine named 'nope'"):
        check(onnx_bundle, HERE, engine="nope")
    with pytest.raises(rtxpack.InvalidArgumentError, match="severity"):
        Finding("x.y", "fatal", "message")


def _with_cache(src: Path, dst: Path, env: Environment) -> Path:
    with rtxpack.open(src) as bundle, container.atomic_output(dst) as f:
        writer = container.BundleWriter(f)
        for section in bundle.manifest.sections:
            writer.copy_section(bundle._file, section)
        idx = writer.add_bytes("runtime_cache", "main", b"a prewarmed runtime cache")
        cache = CacheInfo("c0ffee00", "main", idx, env, utc_now())
        writer.finish(replace(bundle.manifest, sections=tuple(writer.sections), caches=(cache,)))
    return dst


def test_loads_cold_when_no_cache_fits(src86: Path, tmp_path: Path) -> None:
    env = Environment(TRT, GPU, "8.6", "580.65.06", "linux")
    path = _with_cache(src86, tmp_path / "cached.rtxpack", env)
    warm = check(path, HERE)
    assert status(warm) == "loads" and "cache.match" in codes(warm, "info")
    cold = check(path, replace(HERE, gpu_name="NVIDIA RTX A6000"))
    assert cold.ok and cold.can_load
    assert status(cold) == "loads_cold"
    assert codes(cold, "warning") == {"cache.none_match"}
    assert "c0ffee00" in cold.warnings[0].message and "RTX A6000" in cold.warnings[0].message
    # a newer driver of the same branch still takes the cache; another branch does not
    assert status(check(path, replace(HERE, driver_version="580.95.05"))) == "loads"
    assert status(check(path, replace(HERE, driver_version="590.44.01"))) == "loads_cold"
    # errors decide first: an engine that must be rebuilt does not "load cold"
    assert status(check(path, replace(HERE, trt_version="1.8.0"))) == "needs_rebuild"


def test_engines_are_judged_one_by_one(tmp_path: Path, mlp_engine: bytes) -> None:
    path = tmp_path / "two.rtxpack"
    rtxpack.save(
        {"portable": EngineSpec(mlp_engine), "only86": EngineSpec(build_mlp_engine(ccs=("8.6",)))},
        path,
    )
    target = replace(HERE, compute_capability="8.9")
    report = check(path, target)
    assert status(report, "portable") == "loads"
    assert status(report, "only86") == "cannot_run"
    assert not report.can_load
    assert {f.engine for f in report.errors} == {"only86"}
    one = check(path, target, engine="portable")
    assert one.can_load and [v.engine for v in one.engines] == ["portable"]


def test_accepts_an_open_bundle_and_leaves_it_open(onnx_bundle: Path) -> None:
    with rtxpack.open(onnx_bundle) as bundle:
        report = check(bundle, HERE)
        assert report.can_load and report.bundle == str(onnx_bundle)
        assert bytes(bundle.read_engine()[:4]) == b"vtrt"


# -- get_engine_validity, through a double of tensorrt_rtx.Runtime ------------------------------


def test_fake_runtime_matches_the_real_class() -> None:
    names = [n for n in vars(ValidityRuntime) if not n.startswith("_")] + ["__init__"]
    for name in names:
        assert hasattr(trt.Runtime, name), f"tensorrt_rtx.Runtime has no {name}"
    assert len(trt.EngineInvalidityDiagnostics.__members__) == len(_validity._DIAGNOSTICS)
    assert set(trt.EngineInvalidityDiagnostics.__members__) == set(_validity._DIAGNOSTICS)


def test_every_diagnostic_bit_becomes_a_finding() -> None:
    members = trt.EngineInvalidityDiagnostics.__members__
    all_bits = sum(int(m) for m in members.values())
    findings = decode_validity(trt.EngineValidity.INVALID, all_bits, "main")
    assert len(findings) == len(members) == 7
    assert {f.code for f in findings} == {
        "runtime.version_mismatch",
        "runtime.unsupported_cc",
        "runtime.old_cuda_driver",
        "runtime.old_cuda_runtime",
        "runtime.insufficient_gpu_memory",
        "runtime.malformed_engine",
        "runtime.cuda_error",
    }
    assert all(f.severity == "error" and f.engine == "main" for f in findings)
    for f, name in zip(findings, members):
        assert name in f.message
    assert decode_validity(trt.EngineValidity.VALID, 0, "main") == []
    (sub,) = decode_validity(trt.EngineValidity.SUBOPTIMAL, 0, "main")
    assert (sub.code, sub.severity) == ("runtime.suboptimal", "warning")
    (bare,) = decode_validity(trt.EngineValidity.INVALID, 0, "main")
    assert bare.code == "engine.invalid"
    unknown = decode_validity(trt.EngineValidity.INVALID, 1 | 512, "main")
    assert [f.code for f in unknown] == ["runtime.version_mismatch", "runtime.unknown_diagnostic"]


@pytest.fixture
def fake_gpu_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine, as check() sees it, has an RTX 3090 and TensorRT-RTX."""
    monkeypatch.setattr(machine, "local_target", lambda: HERE)


def _use_runtime(monkeypatch: pytest.MonkeyPatch, runtime: ValidityRuntime) -> None:
    monkeypatch.setattr(_validity, "_make_runtime", lambda: runtime)


def test_local_check_asks_the_runtime(
    monkeypatch: pytest.MonkeyPatch, fake_gpu_machine: None, src86: Path
) -> None:
    bits = int(trt.EngineInvalidityDiagnostics.VERSION_MISMATCH)
    runtime = ValidityRuntime(trt.EngineValidity.INVALID, bits)
    _use_runtime(monkeypatch, runtime)
    report = check(src86)
    assert runtime.seen == [b"vtrt"]  # the engine's bytes were handed over
    assert codes(report, "error") == {"runtime.version_mismatch"}
    assert status(report) == "needs_rebuild"

    runtime = ValidityRuntime(
        trt.EngineValidity.INVALID, int(trt.EngineInvalidityDiagnostics.INSUFFICIENT_GPU_MEMORY)
    )
    _use_runtime(monkeypatch, runtime)
    assert status(check(src86)) == "cannot_run"

    _use_runtime(monkeypatch, ValidityRuntime(trt.EngineValidity.SUBOPTIMAL, 0))
    report = check(src86)
    assert status(report) == "loads" and codes(report, "warning") == {"runtime.suboptimal"}

    _use_runtime(monkeypatch, ValidityRuntime(trt.EngineValidity.VALID, 0))
    assert not check(src86).findings
    # an explicit target never asks this machine's runtime
    _use_runtime(monkeypatch, ValidityRuntime(trt.EngineValidity.INVALID, 64))
    assert not check(src86, HERE).findings


# -- this machine ------------------------------------------------------------------------------


def test_this_machine_without_gpu_cannot_run(onnx_bundle: Path) -> None:
    here = local_target()
    if here.compute_capability is not None or here.driver_version is not None:
        pytest.skip("this machine has an NVIDIA driver or GPU")
    report = check(onnx_bundle)
    assert "gpu.not_found" in codes(report, "error")
    assert status(report) == "cannot_run"
    # says what helps, with no Python advice (check is also a command line tool)
    assert "can also run with ONNX Runtime" in report.errors[0].message
    assert "fallback=" not in report.errors[0].message


@pytest.mark.gpu
def test_real_runtime_on_a_supported_gpu(onnx_bundle: Path) -> None:
    here = local_target()
    if not machine.gpu_usable(here):
        pytest.skip(
            "needs a GPU that TensorRT-RTX supports (RTX, CC 7.5-12.x); this machine has "
            f"{here.gpu_name or 'none'} (CC {here.compute_capability or '-'})"
        )
    report = check(onnx_bundle)
    assert report.can_load, report.summary()
