"""``rtxpack check``: exit codes, the table, --json, unreadable bundles as rows."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tensorrt_rtx as trt
from conftest import MLP_SHAPES

import rtxpack
from rtxpack._checks.check import check
from rtxpack._checks.machine import local_target
from rtxpack._checks.target import Target
from rtxpack._format import container
from rtxpack._format.manifest import CacheInfo, Environment
from rtxpack._text import utc_now
from rtxpack.cli import main
from rtxpack.cli._check_cmds import describe_target, render_table

TRT = trt.__version__
HERE_FLAGS = ["--trt-version", TRT, "--cc", "8.6", "--driver", "580.65.06", "--os", "linux"]


@pytest.fixture(scope="module")
def src86(tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path) -> Path:
    path = tmp_path_factory.mktemp("cli_check") / "src86.rtxpack"
    rtxpack.save(onnx_mlp, path, shapes=MLP_SHAPES, compute_capabilities=["8.6"])
    return path


@pytest.fixture(scope="module")
def future(tmp_path_factory: pytest.TempPathFactory, onnx_bundle: Path) -> Path:
    """A bundle whose header says format 3.0 (the manifest digest does not cover the header)."""
    path = tmp_path_factory.mktemp("cli_check") / "future.rtxpack"
    shutil.copy(onnx_bundle, path)
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<HH", 3, 0))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("BUNDLE"))
    rows = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        rows.append(line.split(None, 3))
    return rows


def test_all_load_exits_0(capsys: pytest.CaptureFixture[str], src86: Path) -> None:
    code, out, err = run(capsys, str(src86), *HERE_FLAGS, "--gpu", "RTX 3090")
    assert (code, err) == (0, "")
    assert out.startswith(f"Target: TensorRT-RTX {TRT} | RTX 3090 (CC 8.6) | driver 580.65.06")
    assert table_rows(out) == [[str(src86), "main", "loads", "-"]]
    assert "1 bundle(s), 1 engine(s): 1 loads" in out


def test_upgrade_planning_needs_rebuild_exits_1(
    capsys: pytest.CaptureFixture[str], src86: Path
) -> None:
    flags = [*HERE_FLAGS]
    flags[1] = "1.8.0.10"
    code, out, _ = run(capsys, str(src86), *flags)
    assert code == 1
    (row,) = table_rows(out)
    assert row[:3] == [str(src86), "main", "needs_rebuild"]
    assert row[3].startswith("built with TensorRT-RTX 1.7.1") and len(row[3]) <= 72
    assert "target has 1.8.0.10" in row[3]
    # the full message is below the table
    assert "error    trt.version_mismatch [main]: " in out
    assert "rtxpack rebuild BUNDLE -o NEW" in out


def test_unreadable_bundle_is_a_row_not_a_crash(
    capsys: pytest.CaptureFixture[str], src86: Path, future: Path
) -> None:
    code, out, err = run(capsys, str(src86), str(future), *HERE_FLAGS)
    assert code == 1 and err == ""
    rows = table_rows(out)
    assert rows[0][:3] == [str(src86), "main", "loads"]
    assert rows[1][:3] == [str(future), "-", "cannot_run"]
    assert "format.unsupported_version" in out and "3.0" in out
    assert "2 bundle(s), 2 engine(s): 1 loads, 1 cannot_run" in out


def test_json_for_ci(capsys: pytest.CaptureFixture[str], src86: Path, future: Path) -> None:
    code, out, _ = run(capsys, str(src86), str(future), *HERE_FLAGS, "--cc", "8.9", "--json")
    assert code == 1
    data = json.loads(out)
    assert [d["bundle"] for d in data] == [str(src86), str(future)]
    for d in data:
        assert set(d) == {
            "bundle",
            "format_version",
            "target",
            "ok",
            "can_load",
            "engines",
            "findings",
        }
    assert data[0]["target"]["compute_capability"] == "8.9"  # the last --cc wins
    assert data[0]["engines"][0]["status"] == "needs_rebuild"
    assert data[0]["findings"][0]["code"] == "gpu.cc_not_targeted"
    assert data[1]["engines"] == [
        {"engine": None, "status": "cannot_run", "reasons": [data[1]["findings"][0]["message"]]}
    ]
    assert data[1]["format_version"] == "3.0"


def test_flags_not_given_come_from_this_machine(
    capsys: pytest.CaptureFixture[str], src86: Path
) -> None:
    code, out, _ = run(capsys, str(src86), "--cc", "8.6", "--json")
    (report,) = json.loads(out)
    here = local_target()
    assert report["target"]["trt_version"] == here.trt_version == TRT
    assert report["target"]["os"] == here.os
    assert report["target"]["driver_version"] == here.driver_version
    if here.driver_version is None:  # an unknown part of a described target: not checked
        assert "driver.not_checked" in {f["code"] for f in report["findings"]}
    assert code == 0


def test_no_flags_checks_this_machine(capsys: pytest.CaptureFixture[str], src86: Path) -> None:
    here = local_target()
    if here.compute_capability is not None or here.driver_version is not None:
        pytest.skip("this machine has an NVIDIA driver or GPU")
    code, out, _ = run(capsys, str(src86))
    assert code == 1
    assert table_rows(out)[0][2] == "cannot_run"
    assert "gpu.not_found" in out


def test_loads_cold_exits_0(
    capsys: pytest.CaptureFixture[str], src86: Path, tmp_path: Path
) -> None:
    """A cache made on another GPU: the engine still loads (exit 0), only cold."""
    path = tmp_path / "cached.rtxpack"
    env = Environment(TRT, "NVIDIA RTX A6000", "8.6", "580.65.06", "linux")
    with rtxpack.open(src86) as bundle, container.atomic_output(path) as f:
        writer = container.BundleWriter(f)
        for section in bundle.manifest.sections:
            writer.copy_section(bundle._file, section)
        idx = writer.add_bytes("runtime_cache", "main", b"cache blob")
        cache = CacheInfo("a6000c01", "main", idx, env, utc_now())
        writer.finish(replace(bundle.manifest, sections=tuple(writer.sections), caches=(cache,)))
    code, out, _ = run(capsys, str(path), *HERE_FLAGS, "--gpu", "RTX 3090")
    assert code == 0
    (row,) = table_rows(out)
    assert row[2] == "loads_cold" and "a6000c01" in row[3]
    code, out, _ = run(capsys, str(path), *HERE_FLAGS, "--gpu", "NVIDIA RTX A6000")
    assert code == 0 and table_rows(out)[0][2] == "loads"


def test_bad_arguments(capsys: pytest.CaptureFixture[str], src86: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.rtxpack"), *HERE_FLAGS)
    assert code == 1 and "no such bundle" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        main(["check", str(src86), "--os", "macos"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--cc", "eight", "compute capability 'eight': expected X.Y"),
        ("--cc", "99", "compute capability '99': expected X.Y"),
        ("--driver", "abc", "version 'abc': expected numbers separated by dots"),
        ("--trt-version", "1.x", "version '1.x': expected numbers separated by dots"),
    ],
)
@pytest.mark.parametrize("command", ["check", "pull"])
def test_a_malformed_target_flag_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    src86: Path,
    tmp_path: Path,
    command: str,
    flag: str,
    value: str,
    message: str,
) -> None:
    # exit 2 before any work (docs/api.md), as for --os macos: no bundle read, no registry asked
    where = [str(src86)] if command == "check" else ["oci://127.0.0.1:9/x:1", "-o", "o.rtxpack"]
    with pytest.raises(SystemExit) as exc:
        main([command, *where, flag, value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: {message}" in err and "Traceback" not in err


def test_a_gpu_tensorrt_rtx_does_not_support_is_still_a_target(
    capsys: pytest.CaptureFixture[str], src86: Path
) -> None:
    # well-formed but unsupported (Hopper): a finding about the target, not a usage error
    code, out, _ = run(capsys, str(src86), "--trt-version", TRT, "--cc", "9.0", "--os", "linux")
    assert code == 1 and "cannot_run" in out


def test_help_says_flags_default_to_this_machine(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "default to" in text and "detected here" in text
    assert "loads_cold" in text and "Exit status" in text


def test_render_table_shortens_reasons(src86: Path) -> None:
    report = check(src86, Target(trt_version="1.8.0", compute_capability="8.9", os="windows"))
    text = render_table([report])
    row = next(line for line in text.splitlines() if line.startswith(str(src86)))
    assert row.endswith("…") and "needs_rebuild" in row
    assert text.count("error    ") == 2  # every finding in full below the table
    assert "platform.other_os" in text
    assert describe_target(Target()) == (
        "TensorRT-RTX unknown | GPU unknown | driver unknown | OS unknown"
    )


def test_entry_point(src86: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtxpack", "check", str(src86), *HERE_FLAGS, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["engines"][0]["status"] == "loads"


def test_cuda_flag_sets_the_driver_floor_of_the_target(
    capsys: pytest.CaptureFixture[str], src86: Path
) -> None:
    flags = ["--trt-version", "1.9.0", "--cc", "8.6", "--driver", "575.51.03", "--os", "linux"]

    def driver_codes(*extra: str) -> set[str]:
        _, out, _ = run(capsys, str(src86), *flags, *extra, "--json")
        (report,) = json.loads(out)
        return {f["code"] for f in report["findings"] if f["code"].startswith("driver.")}

    assert driver_codes() == {"driver.cuda12_only"}  # another release: its CUDA build unknown
    assert driver_codes("--cuda", "13") == {"driver.too_old"}
    assert driver_codes("--cuda", "12") == set()
    with pytest.raises(SystemExit):
        main(["check", str(src86), "--cuda", "11"])
    capsys.readouterr()
