"""THE cache-fit rule: does a runtime cache made in one environment load on a target?

TensorRT-RTX loads a runtime cache only with the same TensorRT-RTX version (exactly; a target
given as major.minor.patch matches every build of it), the same GPU model, OS family, CUDA
driver major version and Compute-in-Graphics (CiG) state of the CUDA context (since 1.6), and a
driver the same or newer than the one that made it. Unknown target
fields count as mismatches: a cache is only worth attaching when TensorRT-RTX will accept it.
Choosing a prewarmed cache, reusing a local cache file, replacing a cache in a bundle and
``check`` all ask this module; nothing else restates the rule.
"""

from __future__ import annotations

from typing import Any

from .._checks.target import Target
from .._exceptions import InvalidArgumentError, RtxpackError
from .._format.manifest import Environment
from .._text import version_tuple

__all__ = [
    "cache_mismatches",
    "could_fit",
    "describe_environment",
    "environment_fits",
    "target_of",
    "recorded_environment_fits",
    "same_environment",
    "same_gpu",
]


def cache_mismatches(env: Environment, target: Target) -> list[str]:
    """Why a cache made in ``env`` would not load on ``target`` (empty list: it loads).

    Unknown target fields count as mismatches for caches: a cache is only worth attaching when
    TensorRT-RTX will accept it, and it checks all of these.
    """
    reasons: list[str] = []
    made_trt, made_driver = _version_or_none(env.trt_version), _version_or_none(env.driver_version)
    if made_trt is None or made_driver is None:
        # A malformed record (a hostile or hand-made bundle) never fits; it must not break loading.
        return [
            f"records an unreadable version (TensorRT-RTX {env.trt_version!r}, driver "
            f"{env.driver_version!r}); it is ignored"
        ]
    want = version_tuple(target.trt_version) if target.trt_version else None
    # Exact match; a target described offline as major.minor.patch (all an engine header or a
    # person may know) matches every build of that release. A shorter target matches nothing.
    if want is None or len(want) < 3 or made_trt[: len(want)] != want[: len(made_trt)]:
        reasons.append(
            f"made with TensorRT-RTX {env.trt_version}, "
            + (f"target has {target.trt_version}" if want else "target's version unknown")
            + (" (give at least major.minor.patch)" if want and len(want) < 3 else "")
        )
    if not same_gpu(env, target):
        gpu = f"has {target.gpu_name!r}" if target.gpu_name is not None else "GPU unknown"
        reasons.append(f"made on GPU {env.gpu_name!r}, target {gpu}")
    if (
        target.compute_capability is not None
        and env.compute_capability != target.compute_capability
    ):
        reasons.append(
            f"made on compute capability {env.compute_capability}, "
            f"target has {target.compute_capability}"
        )
    if env.compute_in_graphics != target.compute_in_graphics:
        reasons.append(
            f"made in a CUDA context with Compute-in-Graphics {_on(env.compute_in_graphics)}, "
            f"target runs with it {_on(target.compute_in_graphics)}; TensorRT-RTX loads a cache "
            "only in a context of the same CiG state"
        )
    if target.os is None or env.os != target.os:
        reasons.append(
            f"made on {env.os}, target " + (f"runs {target.os}" if target.os else "OS unknown")
        )
    if target.driver_version is None:
        reasons.append(f"made with driver {env.driver_version}, target driver unknown")
    else:
        made, have = made_driver, version_tuple(target.driver_version)
        if made[0] != have[0]:
            reasons.append(
                f"made with driver {env.driver_version} (major {made[0]}), target has "
                f"{target.driver_version} (major {have[0]}); the driver major version must match"
            )
        elif have < made:
            reasons.append(
                f"made with driver {env.driver_version}, target has the older "
                f"{target.driver_version}; the driver must be the same or newer"
            )
    return reasons


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _version_or_none(text: str) -> tuple[int, ...] | None:
    try:
        return version_tuple(text)
    except InvalidArgumentError:
        return None


def same_gpu(env: Environment, target: Target) -> bool:
    """The cache was made on the target's GPU model (names compared as the driver reports them,
    ignoring case and surrounding spaces); an unknown target GPU is not the same."""
    return target.gpu_name is not None and _gpu_key(env.gpu_name) == _gpu_key(target.gpu_name)


def could_fit(env: Environment, target: Target) -> bool:
    """A cheap necessary condition of ``environment_fits`` (same OS, same GPU), to narrow a
    bundle's caches before the full rule runs."""
    return env.os == target.os and same_gpu(env, target)


def _gpu_key(name: str) -> str:
    return name.strip().casefold()  # Python's caseless matching (str.casefold docs)


def environment_fits(env: Environment, target: Target) -> bool:
    """A cache made in ``env`` loads on ``target``."""
    return not cache_mismatches(env, target)


def target_of(env: Environment) -> Target:
    """The machine ``env`` describes, as a target."""
    return Target(
        trt_version=env.trt_version,
        compute_capability=env.compute_capability,
        driver_version=env.driver_version,
        os=env.os,
        gpu_name=env.gpu_name,
        compute_in_graphics=env.compute_in_graphics,
    )


def same_environment(a: Environment, b: Environment) -> bool:
    """Caches made in ``a`` and ``b`` are interchangeable: each fits where the other was made
    (so one replaces the other in a bundle). Unreadable versions are never the same."""
    try:
        return environment_fits(a, target_of(b)) and environment_fits(b, target_of(a))
    except InvalidArgumentError:
        return False


def recorded_environment_fits(made: Any, target: Target) -> bool:
    """An environment recorded in a local cache file's header (a JSON object, from disk) fits
    ``target``; anything malformed does not fit."""
    try:
        env = Environment.from_dict(made, "the cache file's environment")
    except RtxpackError:
        return False
    return environment_fits(env, target)


def describe_environment(env: Environment) -> str:
    """``NVIDIA GeForce RTX 4090 (CC 8.9), driver 580.65, linux, TensorRT-RTX 1.7.1.116``."""
    return (
        f"{env.gpu_name} (CC {env.compute_capability}), driver {env.driver_version}, "
        f"{env.os}, TensorRT-RTX {env.trt_version}"
    )
