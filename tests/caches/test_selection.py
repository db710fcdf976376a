"""Which runtime cache a load starts from: the selection rules, table-driven, on real bundles."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

import rtxpack
from rtxpack._caches.edit import add_cache
from rtxpack._caches.local import local_cache_path, persist_runtime_cache
from rtxpack._caches.selection import plan_runtime_cache
from rtxpack._checks.target import Target
from rtxpack._format.manifest import Environment

RTX4090 = "NVIDIA GeForce RTX 4090"
RTX5090 = "NVIDIA GeForce RTX 5090"
LINUX_4090 = Environment("1.7.1.116", RTX4090, "8.9", "580.65", "linux")
WIN_5090 = Environment("1.7.1.116", RTX5090, "12.0", "580.65", "windows")
OLD_DRIVER_4090 = Environment("1.7.1.116", RTX4090, "8.9", "570.10", "linux")
BLOBS = {"linux_4090": b"A" * 300, "win_5090": b"B" * 300, "old_driver_4090": b"C" * 300}


@pytest.fixture(scope="module")
def cached_bundle(tmp_path_factory: pytest.TempPathFactory, engine_bundle: Path) -> Path:
    """A bundle with two engines; three caches for 'main' and one for 'other'."""
    path = tmp_path_factory.mktemp("select") / "cached.rtxpack"
    with rtxpack.open(engine_bundle) as b:
        engine = bytes(b.read_engine())
    rtxpack.save({"main": engine, "other": engine}, path)
    add_cache(path, BLOBS["linux_4090"], LINUX_4090, engine="main")
    add_cache(path, BLOBS["win_5090"], WIN_5090, engine="main")
    add_cache(path, BLOBS["old_driver_4090"], OLD_DRIVER_4090, engine="main")
    # A cache that fits the 5090 target but belongs to another engine: never chosen for 'main'.
    add_cache(path, b"Z" * 300, WIN_5090, engine="other")
    return path


def target(trt="1.7.1.116", gpu=RTX4090, cc="8.9", driver="580.65", os="linux") -> Target:
    return Target(
        trt_version=trt, compute_capability=cc, driver_version=driver, os=os, gpu_name=gpu
    )


# (case, target, expected blob key or None, a phrase every "does not fit" note for the
# expected-to-fail caches must contain)
CASES = [
    ("same environment", target(), "linux_4090", None),
    ("same GPU, newer driver of the same major", target(driver="580.95"), "linux_4090", None),
    ("GPU name in other case/spacing", target(gpu=" nvidia geforce rtx 4090 "), "linux_4090", None),
    ("TensorRT-RTX given as major.minor.patch", target(trt="1.7.1"), "linux_4090", None),
    ("older driver of the cache's major", target(driver="570.20"), "old_driver_4090", None),
    ("same major but older driver than any cache", target(driver="570.05"), None, "older"),
    ("newer driver major", target(driver="590.10"), None, "major"),
    ("different GPU model", target(gpu="NVIDIA GeForce RTX 4080"), None, "GPU"),
    ("different TensorRT-RTX build", target(trt="1.7.1.117"), None, "TensorRT-RTX"),
    ("different TensorRT-RTX release", target(trt="1.8.0.10"), None, "TensorRT-RTX"),
    ("different OS", target(os="windows"), None, "windows"),
    ("driver unknown", target(driver=None), None, "driver"),
    (
        "other GPU and OS, both match",
        target(gpu=RTX5090, cc="12.0", os="windows"),
        "win_5090",
        None,
    ),
]


@pytest.mark.parametrize(("case", "tgt", "expected", "phrase"), CASES, ids=[c[0] for c in CASES])
def test_selection_rules(
    cached_bundle: Path,
    tmp_path: Path,
    case: str,
    tgt: Target,
    expected: str | None,
    phrase: str | None,
) -> None:
    with rtxpack.open(cached_bundle) as b:
        info = b.manifest.engine("main")
        plan = plan_runtime_cache(b, info, tgt, "auto", cache_dir=tmp_path)
        ids = {c.id: c for c in b.manifest.caches if c.engine == "main"}
        engine_digest = b.manifest.sections[info.section].digest
    # The run always persists to this machine's local cache file, warm or cold.
    assert plan.persist_path == local_cache_path(engine_digest, tgt, tmp_path)
    if expected is None:
        assert plan.blob is None and plan.cache_id is None and plan.origin == "none"
        assert len(plan.notes) == 3, plan.notes  # one reason per cache of this engine
        assert any(phrase in n for n in plan.notes), plan.notes
    else:
        assert plan.blob == BLOBS[expected]
        chosen = ids[plan.cache_id]
        assert plan.cache_id in plan.origin and chosen.environment.gpu_name in plan.origin
        assert plan.notes == ()  # notes explain a cold start only


def test_notes_name_each_cache_and_reason(cached_bundle: Path, tmp_path: Path) -> None:
    with rtxpack.open(cached_bundle) as b:
        plan = plan_runtime_cache(
            b, b.manifest.engine("main"), target(os="windows", driver="590.1"), cache_dir=tmp_path
        )
        for c in (c for c in b.manifest.caches if c.engine == "main"):
            (note,) = [n for n in plan.notes if c.id in n]
            assert c.environment.gpu_name in note
    assert any("driver major version must match" in n for n in plan.notes)
    assert any("made on linux, target runs windows" in n for n in plan.notes)


def test_runtime_cache_none_reads_and_writes_nothing(cached_bundle: Path) -> None:
    with rtxpack.open(cached_bundle) as b:
        plan = plan_runtime_cache(b, b.manifest.engine("main"), target(), None)
    assert plan.blob is None and plan.persist_path is None and plan.origin == "none"


def test_runtime_cache_path_uses_that_file(cached_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.cache"
    with rtxpack.open(cached_bundle) as b:
        info = b.manifest.engine("main")
        cold = plan_runtime_cache(b, info, target(), path)
        assert cold.blob is None and cold.persist_path == path  # missing file: cold, then created
        assert persist_runtime_cache(path, b"mine" * 10)
        warm = plan_runtime_cache(b, info, target(), str(path))
        assert warm.blob == b"mine" * 10 and str(path) in warm.origin
        # A raw TensorRT-RTX cache file (no rtxpack header) is passed through for TRT to judge.
        raw = tmp_path / "raw.cache"
        raw.write_bytes(b"raw tensorrt-rtx cache")
        assert plan_runtime_cache(b, info, target(), raw).blob == b"raw tensorrt-rtx cache"


def test_local_cache_used_when_no_prewarmed_cache_fits(cached_bundle: Path, tmp_path: Path) -> None:
    tgt = target(gpu="NVIDIA GeForce RTX 4080")
    with rtxpack.open(cached_bundle) as b:
        info = b.manifest.engine("main")
        first = plan_runtime_cache(b, info, tgt, cache_dir=tmp_path)
        assert first.blob is None
        assert persist_runtime_cache(first.persist_path, b"jit work" * 20)
        second = plan_runtime_cache(b, info, tgt, cache_dir=tmp_path)
    assert second.blob == b"jit work" * 20
    assert second.origin.startswith("local cache ") and second.cache_id is None
    assert len(second.notes) == 3  # still says why the prewarmed ones did not fit


def test_local_cache_grown_from_prewarmed_cache_wins(cached_bundle: Path, tmp_path: Path) -> None:
    with rtxpack.open(cached_bundle) as b:
        info = b.manifest.engine("main")
        first = plan_runtime_cache(b, info, target(), cache_dir=tmp_path)
        assert first.blob == BLOBS["linux_4090"]
        # The run JIT-compiles more and persists: prewarmed content + new kernels.
        assert persist_runtime_cache(first.persist_path, first.blob + b"+more")
        second = plan_runtime_cache(b, info, target(), cache_dir=tmp_path)
    assert second.blob == BLOBS["linux_4090"] + b"+more"
    assert f"grown from prewarmed cache {first.cache_id}" in second.origin


def test_new_prewarmed_cache_beats_local_cache_grown_from_another(
    cached_bundle: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.rtxpack"
    shutil.copyfile(cached_bundle, copy)
    with rtxpack.open(copy) as b:
        first = plan_runtime_cache(b, b.manifest.engine("main"), target(), cache_dir=tmp_path)
        assert persist_runtime_cache(first.persist_path, b"local")
    newer = add_cache(copy, b"N" * 50, LINUX_4090, engine="main")  # replaces the old one
    with rtxpack.open(copy) as b:
        plan = plan_runtime_cache(b, b.manifest.engine("main"), target(), cache_dir=tmp_path)
    assert plan.cache_id == newer.id and plan.blob == b"N" * 50


def test_newest_of_several_fitting_caches_is_chosen(engine_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "two.rtxpack"
    shutil.copyfile(engine_bundle, path)
    add_cache(path, b"old driver", dataclasses.replace(LINUX_4090, driver_version="580.10"))
    newest = add_cache(path, b"newer", LINUX_4090)
    with rtxpack.open(path) as b:
        plan = plan_runtime_cache(
            b, b.manifest.engine(), target(driver="580.95"), cache_dir=tmp_path
        )
    assert plan.cache_id == newest.id and plan.blob == b"newer"


def test_notes_are_capped_with_same_gpu_first(engine_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "many.rtxpack"
    shutil.copyfile(engine_bundle, path)
    from rtxpack._caches.edit import NewCache, rewrite

    others = [
        NewCache(b"x", None, dataclasses.replace(LINUX_4090, gpu_name=f"GPU {i}"))
        for i in range(30)
    ]
    same_gpu = NewCache(b"y", None, dataclasses.replace(LINUX_4090, driver_version="590.1"))
    rewrite(path, add=[*others, same_gpu])
    with rtxpack.open(path) as b:
        plan = plan_runtime_cache(b, b.manifest.engine(), target(), cache_dir=tmp_path)
    assert plan.blob is None and len(plan.notes) == 11
    assert "driver major version must match" in plan.notes[0]  # the closest miss comes first
    assert plan.notes[-1] == "... and 21 more prewarmed caches that do not fit"


def test_version_rules_are_exact_and_malformed_records_never_fit() -> None:
    from rtxpack import Environment, Target
    from rtxpack._caches.fit import cache_mismatches

    env = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
    here = Target("1.7.1.116", "8.9", "580.65", "linux", "NVIDIA GeForce RTX 4090")
    assert cache_mismatches(env, here) == []
    for other in ("1.7.1.117", "1.7", "1", "1.7.0.116"):
        reasons = cache_mismatches(env, Target(other, "8.9", "580.65", "linux", here.gpu_name))
        assert reasons and "TensorRT-RTX" in reasons[0], other
    bad = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65-open", "linux")
    assert "unreadable version" in cache_mismatches(bad, here)[0]  # no exception
