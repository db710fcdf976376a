"""The one cache-fit rule, and that selection, the local cache and edits all follow it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rtxpack._caches.fit import (
    cache_mismatches,
    could_fit,
    environment_fits,
    recorded_environment_fits,
    same_environment,
    same_gpu,
    target_of,
)
from rtxpack._caches.local import environment_key, persist_runtime_cache, read_cache_file
from rtxpack._exceptions import RuntimeCacheWarning
from rtxpack._format.manifest import Environment

ENV = Environment("1.7.1.116", "NVIDIA GeForce RTX 4090", "8.9", "580.65", "linux")
HERE = target_of(ENV)


@pytest.mark.parametrize(
    ("change", "fits"),
    [
        ({}, True),
        ({"driver_version": "580.95"}, True),  # newer driver, same major
        ({"driver_version": "580.10"}, False),  # older driver
        ({"driver_version": "590.1"}, False),  # another major
        ({"trt_version": "1.7.1"}, True),  # a release named without its build matches
        ({"trt_version": "1.7.1.200"}, False),
        ({"gpu_name": "  nvidia geforce rtx 4090 "}, True),
        ({"gpu_name": "NVIDIA GeForce RTX 4080"}, False),
        ({"os": "windows"}, False),
        ({"compute_capability": "8.6"}, False),
        ({"gpu_name": None}, False),  # unknown counts as a mismatch for caches
        ({"compute_in_graphics": True}, False),  # CiG state must match (TensorRT-RTX 1.6+)
        ({"trt_version": None}, False),  # unknown
        ({"trt_version": "1.7"}, False),  # too short to name a release
        ({"driver_version": None}, False),
        ({"os": None}, False),
        ({"compute_capability": None}, True),  # the GPU name decides; CC unknown is no mismatch
    ],
)
def test_the_rule(change: dict[str, object], fits: bool) -> None:
    target = replace(HERE, **change)
    assert environment_fits(ENV, target) is fits
    assert (cache_mismatches(ENV, target) == []) is fits
    if fits:
        assert could_fit(ENV, target)


def test_the_cig_state_must_match_both_ways() -> None:
    cig = replace(ENV, compute_in_graphics=True)
    assert environment_fits(cig, replace(HERE, compute_in_graphics=True))
    assert not environment_fits(cig, HERE)
    (reason,) = cache_mismatches(cig, HERE)
    assert "Compute-in-Graphics on, target runs with it off" in reason
    assert target_of(cig).compute_in_graphics and not same_environment(cig, ENV)
    # recorded in bundles and local files; absent (older bundles and files) means off
    assert cig.to_dict()["compute_in_graphics"] is True
    assert (
        Environment.from_dict(
            {k: v for k, v in cig.to_dict().items() if k != "compute_in_graphics"}, "e"
        )
        == ENV
    )
    assert environment_key(replace(HERE, compute_in_graphics=True)) != environment_key(HERE)
    assert "compute_in_graphics" not in environment_key(HERE)  # old local file names unchanged


@pytest.mark.parametrize(
    "key", ["trt_version", "gpu_name", "compute_capability", "driver_version", "os"]
)
def test_an_environment_record_names_the_field_it_lacks_or_has_wrong(key: str) -> None:
    from rtxpack import DamagedBundleError

    record = ENV.to_dict()
    del record[key]
    with pytest.raises(DamagedBundleError, match=rf"caches\[0\]\.environment\.{key} is 'missing'"):
        Environment.from_dict(record, "caches[0].environment")
    record[key] = 7
    with pytest.raises(DamagedBundleError, match=rf"caches\[0\]\.environment\.{key} is 7"):
        Environment.from_dict(record, "caches[0].environment")
    with pytest.raises(DamagedBundleError, match=r"caches\[0\]\.environment is 'list'"):
        Environment.from_dict([], "caches[0].environment")


def test_same_environment_is_mutual_fit() -> None:
    assert same_environment(ENV, replace(ENV, gpu_name="nvidia geforce rtx 4090"))
    assert not same_environment(ENV, replace(ENV, driver_version="580.95"))  # fits one way only
    assert not same_environment(ENV, replace(ENV, trt_version="not a version"))


def test_a_recorded_environment_must_be_well_formed(tmp_path: Path) -> None:
    assert recorded_environment_fits(ENV.to_dict(), HERE)
    for bad in (None, "x", [], {**ENV.to_dict(), "compute_capability": "eight"}, {"os": "linux"}):
        assert not recorded_environment_fits(bad, HERE)


def test_the_local_cache_follows_the_same_rule(tmp_path: Path) -> None:
    """A local file made in ENV is reused exactly where the rule says a cache fits."""
    path = tmp_path / "c.rtxcache"
    digest = "blake3:" + "ab" * 32
    persist_runtime_cache(
        path, b"kernels", meta={"engine_digest": digest, "environment": environment_key(HERE)}
    )
    for target in (
        HERE,
        replace(HERE, driver_version="580.95"),
        replace(HERE, os="windows"),
        replace(HERE, compute_in_graphics=True),
    ):
        expect = {"engine_digest": digest, "environment": environment_key(target)}
        if environment_fits(ENV, target):
            assert read_cache_file(path, expect=expect) == b"kernels"
        else:
            with pytest.warns(RuntimeCacheWarning, match="different environment"):
                assert read_cache_file(path, expect=expect) is None


def test_could_fit_needs_both_the_os_and_the_gpu() -> None:
    """The cheap pre-filter never lets through a cache the full rule would refuse for its OS or
    its GPU, and never drops one that fits."""
    assert could_fit(ENV, HERE) and could_fit(
        ENV, replace(HERE, gpu_name="nvidia GEFORCE rtx 4090")
    )
    assert not could_fit(ENV, replace(HERE, os="windows"))
    assert not could_fit(ENV, replace(HERE, gpu_name="NVIDIA GeForce RTX 4080"))
    assert not could_fit(ENV, replace(HERE, gpu_name=None))
    assert not could_fit(ENV, replace(HERE, os=None))


def test_an_unknown_target_gpu_is_never_the_same_gpu() -> None:
    for name in ("", " ", "unknown", "XXXX"):
        env = replace(ENV, gpu_name=name)
        assert not same_gpu(env, replace(HERE, gpu_name=None))
        assert same_gpu(env, replace(HERE, gpu_name=name.upper()))


def test_target_of_describes_every_part_of_the_environment() -> None:
    cig = replace(ENV, compute_in_graphics=True)
    target = target_of(cig)
    assert target.environment() == cig  # nothing lost, nothing made up
    # caches made on two GPUs of one name but another compute capability are not the same
    other_cc = replace(ENV, compute_capability="8.6")
    assert not same_environment(ENV, other_cc) and not same_environment(other_cc, ENV)
