"""Caches inside bundles: `rtxpack cache add/list/remove`, safe rewrites, and prewarm."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import rtxpack
from rtxpack import _constants
from rtxpack._caches import edit, prewarm
from rtxpack._caches.local import persist_runtime_cache
from rtxpack._exceptions import CompatibilityError, InvalidArgumentError
from rtxpack._format import container
from rtxpack._format.manifest import Environment
from rtxpack.cli import main

ENV_4090 = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
FLAGS_4090 = [
    "--trt-version", "1.7.1.116", "--gpu", "NVIDIA GeForce RTX 4090",
    "--cc", "8.9", "--driver", "580.65", "--os", "linux",
]  # fmt: skip
FLAGS_5090_WIN = [
    "--trt-version", "1.7.1.116", "--gpu", "NVIDIA GeForce RTX 5090",
    "--cc", "12.0", "--driver", "581.15", "--os", "windows",
]  # fmt: skip


@pytest.fixture
def bundle(tmp_path: Path, onnx_bundle: Path) -> Path:
    """A copy of the ONNX bundle (engine + source + samples + metadata) with a user file and an
    unknown top-level manifest key, as a newer rtxpack minor version might write."""
    path = tmp_path / "b.rtxpack"
    src = container.open_bundle_file(onnx_bundle)
    try:
        with container.atomic_output(path) as f:
            w = container.BundleWriter(f)
            for s in src.manifest.sections:
                w.copy_section(src, s)
            idx = w.add_bytes("file", "labels.txt", b"cat\ndog\n", "zstd")
            m = dataclasses.replace(
                src.manifest,
                sections=tuple(w.sections),
                files={"labels.txt": idx},
                extra={"x_future": {"keep": [1, 2]}},
            )
            w.finish(m)
    finally:
        src.close()
    return path


def engine_bytes(path: Path) -> tuple[str, bytes]:
    with rtxpack.open(path) as b:
        s = b.manifest.sections[b.manifest.engine().section]
        return s.digest, bytes(b._file.raw_view(s))


def cache_file(tmp_path: Path, content: bytes, name: str = "c.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def test_add_list_remove_keeps_engine_bytes_and_everything_else(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest, raw = engine_bytes(bundle)
    with rtxpack.open(bundle) as b:
        before = b.manifest
        onnx, samples = b.read_source(), b.read_samples()

    a = cache_file(tmp_path, b"A" * 5000, "a.bin")
    c = cache_file(tmp_path, b"C" * 7000, "c.bin")
    assert main(["cache", "add", str(bundle), "--cache", str(a), *FLAGS_4090]) == 0
    assert main(["cache", "add", str(bundle), "--cache", str(c), *FLAGS_5090_WIN,
                 "--shape", "x=4x16"]) == 0  # fmt: skip
    capsys.readouterr()

    assert main(["cache", "list", str(bundle), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["environment"]["gpu_name"], r["size"]) for r in rows] == [
        ("NVIDIA GeForce RTX 4090", 5000),
        ("NVIDIA GeForce RTX 5090", 7000),
    ]
    assert rows[1]["shapes"] == [{"x": [4, 16]}] and rows[1]["engine"] == "main"
    # docs/format.md: ids rtxpack writes are 8 hex digits (short enough to type)
    assert all(re.fullmatch("[0-9a-f]{8}", r["id"]) for r in rows), rows
    assert main(["cache", "list", str(bundle)]) == 0
    table = capsys.readouterr().out
    assert rows[0]["id"] in table and "NVIDIA GeForce RTX 5090" in table and "x=4x16" in table

    assert main(["cache", "remove", str(bundle), rows[0]["id"]]) == 0
    with rtxpack.open(bundle) as b:
        b.verify()
        assert [c.id for c in b.manifest.caches] == [rows[1]["id"]]
        assert b.read_cache(rows[1]["id"]) == b"C" * 7000  # the other cache is intact
        m = b.manifest
        assert m.metadata == before.metadata == {"team": "vision"}
        assert m.extra == {"x_future": {"keep": [1, 2]}}
        assert (
            m.created_at == before.created_at
            and m.engines[0].profiles == before.engines[0].profiles
        )
        assert b.read_file("labels.txt") == b"cat\ndog\n"
        assert b.read_source() == onnx
        assert b.read_samples()["inputs"]["x"].tolist() == samples["inputs"]["x"].tolist()
    assert engine_bytes(bundle) == (digest, raw)  # engine bytes identical, byte for byte


def test_output_option_leaves_the_original_untouched(bundle: Path, tmp_path: Path) -> None:
    original = bundle.read_bytes()
    out = tmp_path / "out.rtxpack"
    a = cache_file(tmp_path, b"A" * 100)
    assert main(["cache", "add", str(bundle), "--cache", str(a), *FLAGS_4090, "-o", str(out)]) == 0
    assert bundle.read_bytes() == original
    (info,) = edit.list_caches(out)
    out2 = tmp_path / "out2.rtxpack"
    assert main(["cache", "remove", str(out), info.id, "-o", str(out2)]) == 0
    assert len(edit.list_caches(out)) == 1 and edit.list_caches(out2) == ()


def test_adding_for_the_same_environment_replaces_the_old_cache(bundle: Path) -> None:
    first = edit.add_cache(bundle, b"old", ENV_4090)
    other = edit.add_cache(bundle, b"windows", dataclasses.replace(ENV_4090, os="windows"))
    second = edit.add_cache(bundle, b"new", ENV_4090)
    with rtxpack.open(bundle) as b:
        assert {c.id for c in b.manifest.caches} == {other.id, second.id}
        assert b.read_cache(second.id) == b"new" and first.id != second.id


def test_interrupted_rewrite_leaves_bundle_and_folder_as_they_were(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = bundle.read_bytes()
    listing = sorted(p.name for p in bundle.parent.iterdir())

    def interrupted(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(container.BundleWriter, "add_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        edit.add_cache(bundle, b"cache", ENV_4090)
    assert bundle.read_bytes() == original
    assert sorted(p.name for p in bundle.parent.iterdir()) == listing  # no temp file left


def test_damaged_engine_is_not_copied(bundle: Path) -> None:
    with rtxpack.open(bundle) as b:
        s = b.manifest.sections[b.manifest.engine().section]
    data = bytearray(bundle.read_bytes())
    data[s.offset + 100] ^= 0xFF
    bundle.write_bytes(bytes(data))
    with pytest.raises(rtxpack.IntegrityError):
        edit.add_cache(bundle, b"cache", ENV_4090)
    assert bundle.read_bytes() == bytes(data)


def test_rtxpack_local_cache_file_can_be_attached(bundle: Path, tmp_path: Path) -> None:
    framed = tmp_path / "local.rtxcache"
    assert persist_runtime_cache(framed, b"payload" * 10)
    assert main(["cache", "add", str(bundle), "--cache", str(framed), *FLAGS_4090]) == 0
    (info,) = edit.list_caches(bundle)
    with rtxpack.open(bundle) as b:
        assert b.read_cache(info.id) == b"payload" * 10  # our header stripped


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--trt-version": "1.7"}, "at least major.minor.patch"),
        ({"--gpu": " "}, "GPU name"),
    ],
)
def test_bad_environment_flags_are_refused(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    flags = list(FLAGS_4090)
    for flag, value in change.items():
        flags[flags.index(flag) + 1] = value
    original = bundle.read_bytes()
    a = cache_file(tmp_path, b"A" * 10)
    assert main(["cache", "add", str(bundle), "--cache", str(a), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rtxpack: error: ") and message in err
    assert bundle.read_bytes() == original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--trt-version": "one"}, "numbers separated by dots"),
        ({"--driver": "580.x"}, "version '580.x'"),
        ({"--cc": "89"}, "expected X.Y"),
        ({"--os": "macos"}, "invalid choice: 'macos'"),
    ],
)
def test_malformed_environment_flags_are_usage_errors(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str],
    message: str,
) -> None:
    flags = list(FLAGS_4090)
    for flag, value in change.items():
        flags[flags.index(flag) + 1] = value
    original = bundle.read_bytes()
    a = cache_file(tmp_path, b"A" * 10)
    with pytest.raises(SystemExit) as exit_:
        main(["cache", "add", str(bundle), "--cache", str(a), *flags])
    assert exit_.value.code == 2  # docs/api.md: 2 is a usage error
    err = capsys.readouterr().err
    assert f"argument {next(iter(change))}: " in err and message in err
    assert bundle.read_bytes() == original


def test_empty_missing_or_huge_cache_file_is_refused(
    bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty = cache_file(tmp_path, b"")
    assert main(["cache", "add", str(bundle), "--cache", str(empty), *FLAGS_4090]) == 1
    assert "empty" in capsys.readouterr().err
    assert main(["cache", "add", str(bundle), "--cache", str(tmp_path / "no"), *FLAGS_4090]) == 1
    assert "no such file" in capsys.readouterr().err
    monkeypatch.setattr(_constants, "MAX_CACHE_BYTES", 100)
    big = cache_file(tmp_path, b"x" * 101, "big.bin")
    assert main(["cache", "add", str(bundle), "--cache", str(big), *FLAGS_4090]) == 1
    assert "above the limit" in capsys.readouterr().err
    assert edit.list_caches(bundle) == ()


def test_unknown_engine_and_unknown_id_are_clear_errors(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = cache_file(tmp_path, b"A" * 10)
    assert (
        main(["cache", "add", str(bundle), "--cache", str(a), "--engine", "nope", *FLAGS_4090]) == 1
    )
    assert "no engine named 'nope'" in capsys.readouterr().err
    assert main(["cache", "remove", str(bundle), "deadbeef"]) == 1
    assert "no runtime cache with id 'deadbeef'" in capsys.readouterr().err
    with pytest.raises(InvalidArgumentError, match="bytes"):
        edit.add_cache(bundle, "not bytes", ENV_4090)  # type: ignore[arg-type]


# --- prewarm -----------------------------------------------------------------------------------


def test_prewarm_refuses_early_without_a_supported_gpu(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if prewarm._machine_environment() is not None:
        pytest.skip("this machine has a GPU TensorRT-RTX supports")
    out = tmp_path / "warm.rtxpack"
    with pytest.raises(CompatibilityError, match="prewarm needs a GPU TensorRT-RTX supports"):
        prewarm.prewarm(bundle, out)
    assert main(["prewarm", str(bundle), "-o", str(out)]) == 1
    assert "no NVIDIA GPU or CUDA driver was found" in capsys.readouterr().err
    assert not out.exists()


def test_prewarm_names_a_gpu_it_found_but_tensorrt_rtx_does_not_support(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtxpack._checks import machine

    h100 = dataclasses.replace(
        machine.local_target(),
        compute_capability="9.0",
        gpu_name="NVIDIA H100",
        driver_version="580.65",
    )
    monkeypatch.setattr(machine, "local_target", lambda: h100)
    with pytest.raises(CompatibilityError) as info:
        prewarm.prewarm(bundle, tmp_path / "warm.rtxpack")
    assert "GPU (NVIDIA H100, compute capability 9.0) is not one" in str(info.value)
    assert "has none" not in str(info.value)


class FakeModule:
    """Stands in for the loader's module: records calls; close() persists a cache like it does."""

    def __init__(self, runtime_cache: Path, calls: list[Any]) -> None:
        self.runtime_cache = runtime_cache
        self.calls = calls

    def __call__(self, *tensors: Any) -> Any:
        self.calls.append(tuple(t.shape for t in tensors))
        return tensors[0]

    def close(self) -> None:
        persist_runtime_cache(self.runtime_cache, b"JIT:" + repr(self.calls).encode())


def fake_environment(monkeypatch: pytest.MonkeyPatch, env: Environment) -> list[dict[str, Any]]:
    """Pretend this machine has ``env``; replace rtxpack._loader.load and the torch bits."""
    import numpy as np

    loads: list[dict[str, Any]] = []

    def load(path: Any, *, engine: str, strategy: Any, runtime_cache: Any) -> FakeModule:
        loads.append({"engine": engine, "strategy": strategy})
        return FakeModule(Path(runtime_cache), loads[-1].setdefault("calls", []))

    monkeypatch.setitem(sys.modules, "rtxpack._loader", types.SimpleNamespace(load=load))
    monkeypatch.setattr(prewarm, "_machine_environment", lambda: env)
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(synchronize=lambda: None))
    monkeypatch.setattr(prewarm, "_torch", lambda: fake_torch)
    monkeypatch.setattr(prewarm, "_random_tensor", lambda torch, dtype, shape: np.zeros(shape))
    return loads


def test_prewarm_runs_every_profile_shape_eagerly_and_stores_the_cache(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = fake_environment(monkeypatch, ENV_4090)
    windows = edit.add_cache(bundle, b"win", dataclasses.replace(ENV_4090, os="windows"))
    out = tmp_path / "warm.rtxpack"
    assert main(["prewarm", str(bundle), "-o", str(out), "--shape", "x=5x16"]) == 0
    (load,) = loads
    assert load["strategy"] == {"dynamic_shapes_kernel_specialization_strategy": "eager"}
    # MLP_SHAPES: min 1x16, opt 4x16, max 8x16, then the given shape.
    assert load["calls"] == [((1, 16),), ((4, 16),), ((8, 16),), ((5, 16),)]
    with rtxpack.open(out) as b:
        new = [c for c in b.manifest.caches if c.id != windows.id]
        assert len(b.manifest.caches) == 2 and len(new) == 1  # the windows cache was kept
        assert new[0].environment == ENV_4090 and new[0].engine == "main"
        assert [s["x"] for s in new[0].shapes] == [(1, 16), (4, 16), (8, 16), (5, 16)]
        assert b.read_cache(new[0].id).startswith(b"JIT:")
    assert engine_bytes(out) == engine_bytes(bundle)

    # Prewarming again in the same environment replaces that cache, not the others.
    out2 = tmp_path / "warm2.rtxpack"
    added = prewarm.prewarm(out, out2)
    assert {c.id for c in edit.list_caches(out2)} == {windows.id, added[0].id}


def test_prewarm_shapes_must_name_engine_inputs(
    bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_environment(monkeypatch, ENV_4090)
    with pytest.raises(InvalidArgumentError, match="does not have"):
        prewarm.prewarm(bundle, bundle, shapes={"y": (1, 8)})


def test_prewarm_needs_recorded_inputs(engine_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="no recorded inputs"):
        prewarm.prewarm(engine_bundle, tmp_path / "out.rtxpack")


@pytest.mark.gpu
def test_prewarm_on_a_real_gpu(bundle: Path, tmp_path: Path) -> None:
    if prewarm._machine_environment() is None:
        pytest.skip("needs a GPU TensorRT-RTX supports (CC 7.5/8.x/12.x); this machine has none")
    out = tmp_path / "warm.rtxpack"
    (info,) = prewarm.prewarm(bundle, out)
    from rtxpack._caches.selection import plan_runtime_cache
    from rtxpack._checks.machine import local_target

    with rtxpack.open(out) as b:
        assert len(b.read_cache(info.id)) > 0
        plan = plan_runtime_cache(b, b.manifest.engine(), local_target(), cache_dir=tmp_path)
    assert plan.cache_id == info.id, plan.notes  # this machine picks the cache it just made


def test_cache_add_never_writes_a_bundle_it_could_not_read_back(
    tmp_path: Path, mlp_engine: bytes
) -> None:
    """Out-of-range input is refused before the bundle is replaced (found in review: a shape of
    2e12 or a 250-character engine name used to leave an unreadable bundle, exit 0)."""
    from rtxpack import Environment, InvalidArgumentError, add_cache

    env = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    long_name = "e" * 250
    path = rtxpack.save({long_name: mlp_engine}, tmp_path / "b.rtxpack")
    before = path.read_bytes()
    add_cache(path, b"cache", env)  # a long (legal) engine name is fine
    with rtxpack.open(path) as b:
        assert [c.engine for c in b.manifest.caches] == [long_name]
    before = path.read_bytes()
    for shapes in ([{"x": (2_000_000_000_000, 16)}], [{"x": (-1, 16)}], [{"x": ("a", 16)}]):
        with pytest.raises(InvalidArgumentError, match="shapes"):
            add_cache(path, b"cache", env, shapes=shapes)
    huge = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "5" * 5000, "linux")
    with pytest.raises(InvalidArgumentError, match=r"driver '5{57}\.\.\.'"):
        add_cache(path, b"cache", huge)
    assert path.read_bytes() == before
    with rtxpack.open(path) as b:
        b.verify()
