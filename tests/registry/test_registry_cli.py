"""The registry commands of the CLI: push, pull, cache push, store."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from registry.registry_server import PASSWORD, USER, RegistryServer, needs_registry

import rtxpack
from rtxpack import Environment
from rtxpack.cli import main

pytestmark = [needs_registry, pytest.mark.usefixtures("private_store_and_auth")]

TRT = "1.7.1.116"
ENV_4090 = Environment(TRT, "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
ENV_3090 = Environment(TRT, "NVIDIA GeForce RTX 3090", "8.6", "580.65", "linux")
FLAGS_3090 = ["--trt-version", TRT, "--cc", "8.6", "--gpu", "NVIDIA GeForce RTX 3090"]
FLAGS_3090 += ["--driver", "580.65", "--os", "linux"]


@pytest.fixture
def bundle(tmp_path: Path, onnx_bundle: Path) -> Path:
    path = tmp_path / "b.rtxpack"
    shutil.copy(onnx_bundle, path)
    rtxpack.add_cache(path, b"4090" * 5000, ENV_4090)
    rtxpack.add_cache(path, b"3090" * 5000, ENV_3090)
    return path


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)  # type: ignore[no-any-return]


def test_push_pull_cache_push_and_store_from_the_command_line(
    registry: RegistryServer, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = registry.ref("cli/mlp:1")
    pushed = run_json(capsys, "push", str(bundle), ref, "--annotation", "team=vision")
    assert pushed["uploaded"] == 6  # engine, source, samples, 2 caches, bundle manifest
    out = tmp_path / "device.rtxpack"
    pulled = run_json(capsys, "pull", ref, "-o", str(out), *FLAGS_3090)
    assert pulled["engines"] == ["main"]
    assert len(pulled["caches"]) == 1  # type: ignore[arg-type]
    with rtxpack.open(out) as b:
        b.verify()
        assert b.manifest.caches[0].environment == ENV_3090

    warm = tmp_path / "warm.rtxpack"
    shutil.copy(bundle, warm)
    rtxpack.add_cache(
        warm, b"new" * 7000, Environment(TRT, "NVIDIA RTX A4000", "8.6", "580.65", "linux")
    )
    added = run_json(capsys, "cache", "push", str(warm), ref)
    assert len(added["caches_added"]) == 1  # type: ignore[arg-type]
    assert main(["cache", "push", str(warm), ref]) == 0
    assert "already has every cache" in capsys.readouterr().out

    info = run_json(capsys, "store", "info")
    assert info["blobs"] >= 3  # type: ignore[operator]
    pruned = run_json(capsys, "store", "prune")
    assert pruned["removed"] >= 3  # type: ignore[operator]
    assert run_json(capsys, "store", "info")["blobs"] == 0


def test_pull_prints_one_line_per_run(
    registry: RegistryServer, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = registry.ref("cli/mlp:2")
    assert main(["push", str(bundle), ref]) == 0
    assert "pushed oci://" in capsys.readouterr().out
    assert main(["pull", ref, "-o", str(tmp_path / "p.rtxpack"), *FLAGS_3090]) == 0
    line = capsys.readouterr().out
    assert "engines main" in line and "2 blobs downloaded" in line


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["pull", "docker://x/y", "-o", "o.rtxpack"], "not a valid registry reference"),
        (["push", "missing.rtxpack", "oci://127.0.0.1:9/a:b"], "missing.rtxpack"),
        (["pull", "oci://127.0.0.1:9/a:b", "-o", "o.rtxpack"], "could not reach"),
    ],
)
def test_errors_are_one_line(
    argv: list[str],
    says: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rtxpack._constants.REGISTRY_BACKOFF_FIRST_S", 0.0)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_an_auth_failure_never_prints_the_password(
    basic_registry: RegistryServer,
    bundle: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RTXPACK_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("RTXPACK_REGISTRY_PASSWORD", PASSWORD + "-wrong")
    ref = basic_registry.ref("cli/mlp:1")
    assert main(["push", str(bundle), ref, "--ca-file", str(basic_registry.ca_file)]) == 1
    captured = capsys.readouterr()
    assert "refused" in captured.err
    assert PASSWORD not in captured.err + captured.out


@pytest.mark.parametrize("days", ["-1", "nan", "inf", "soon"])
def test_store_prune_takes_a_finite_number_of_days(
    capsys: pytest.CaptureFixture[str], days: str
) -> None:
    # NaN compared false with every age: `--older-than nan` emptied the whole store
    with pytest.raises(SystemExit) as exc:
        main(["store", "prune", "--older-than", days])
    assert exc.value.code == 2
    assert f"argument --older-than: {days!r}: expected a number of days" in capsys.readouterr().err
