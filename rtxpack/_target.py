"""A machine a bundle should run on, and the rules that decide what runs where.

``Target`` describes a machine (this one, or a fleet device asked about offline). The rules here
are the single place that knows TensorRT-RTX's compatibility policy (../shared/facts, docs):

- engines load only on the TensorRT-RTX release that built them (major.minor.patch);
- a runtime cache loads only with the same TensorRT-RTX version (exactly; a target given as
  major.minor.patch matches every build of it), GPU model, OS family and CUDA
  driver major version, with a driver the same or newer than the one that made it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._exceptions import InvalidArgumentError
from ._manifest import CC_RE, OS_NAMES, Environment

__all__ = ["Target", "cache_mismatches", "shorten", "release_of", "same_release", "version_tuple"]

_VERSION_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,5}$")


def shorten(value: object, limit: int = 60) -> object:
    """A value fit to quote in a message: long strings are cut (they may come from anyone)."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def version_tuple(text: str) -> tuple[int, ...]:
    """``"1.7.1.116"`` -> (1, 7, 1, 116); raises InvalidArgumentError on anything else."""
    if not isinstance(text, str) or not _VERSION_RE.match(text.strip()):
        raise InvalidArgumentError(
            f"version {shorten(text)!r}: expected numbers separated by dots, e.g. 1.7.1"
        )
    return tuple(int(p) for p in text.strip().split("."))


def release_of(version: str) -> tuple[int, ...]:
    """The part of a TensorRT-RTX version that engines and caches are tied to: major.minor.patch."""
    return version_tuple(version)[:3]


def same_release(a: str, b: str) -> bool:
    return release_of(a) == release_of(b)


@dataclass(frozen=True)
class Target:
    """A machine to run on. ``None`` fields are unknown and not checked."""

    trt_version: str | None = None
    compute_capability: str | None = None
    driver_version: str | None = None
    os: str | None = None  # "linux" or "windows"
    gpu_name: str | None = None
    platform: str | None = None  # e.g. "linux_x86_64"; derived from os when not given

    def __post_init__(self) -> None:
        if self.trt_version is not None:
            version_tuple(self.trt_version)
        if self.driver_version is not None:
            version_tuple(self.driver_version)
        if self.compute_capability is not None and not CC_RE.match(self.compute_capability):
            raise InvalidArgumentError(
                f"compute capability {self.compute_capability!r}: expected X.Y, e.g. 8.9"
            )
        if self.os is not None and self.os not in OS_NAMES:
            raise InvalidArgumentError(f"os {self.os!r}: expected one of {', '.join(OS_NAMES)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "trt_version": self.trt_version,
            "compute_capability": self.compute_capability,
            "driver_version": self.driver_version,
            "os": self.os,
            "gpu_name": self.gpu_name,
            "platform": self.platform,
        }

    def environment(self) -> Environment | None:
        """The cache environment of this target, if every part of it is known."""
        parts = (
            self.trt_version,
            self.gpu_name,
            self.compute_capability,
            self.driver_version,
            self.os,
        )
        if any(p is None for p in parts):
            return None
        return Environment(*parts)  # type: ignore[arg-type]


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
            f"target has {target.trt_version or 'unknown'}"
            + (" (give at least major.minor.patch)" if want is not None and len(want) < 3 else "")
        )
    if target.gpu_name is None or env.gpu_name.strip().lower() != target.gpu_name.strip().lower():
        reasons.append(f"made on GPU {env.gpu_name!r}, target has {target.gpu_name or 'unknown'!r}")
    if (
        target.compute_capability is not None
        and env.compute_capability != target.compute_capability
    ):
        reasons.append(
            f"made on compute capability {env.compute_capability}, "
            f"target has {target.compute_capability}"
        )
    if target.os is None or env.os != target.os:
        reasons.append(f"made on {env.os}, target runs {target.os or 'an unknown OS'}")
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


def _version_or_none(text: str) -> tuple[int, ...] | None:
    try:
        return version_tuple(text)
    except InvalidArgumentError:
        return None
