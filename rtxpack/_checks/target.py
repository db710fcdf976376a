"""A machine a bundle should run on: this one (``machine.local_target``), or a fleet device
described offline. ``None`` fields are unknown; the rules do not check what is unknown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidArgumentError
from .._format.manifest import CC_RE, OS_NAMES, Environment
from .._text import version_tuple

__all__ = ["Target"]


@dataclass(frozen=True)
class Target:
    """A machine to run on. ``None`` fields are unknown and not checked."""

    trt_version: str | None = None
    compute_capability: str | None = None
    driver_version: str | None = None
    os: str | None = None  # "linux" or "windows"
    gpu_name: str | None = None
    platform: str | None = None  # e.g. "linux_x86_64"; derived from os when not given
    #: The CUDA major version the target's TensorRT-RTX build was made for (12 or 13); it sets
    #: the oldest driver that works. ``local_target`` reads it from the installed wheel.
    cuda_major: int | None = None
    #: Runs engines in a CUDA context with Compute-in-Graphics (CiG) enabled. rtxpack's loader
    #: creates ordinary contexts (False); an application that shares a CiG context says True.
    compute_in_graphics: bool = False

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
        if self.cuda_major is not None and (
            not isinstance(self.cuda_major, int) or isinstance(self.cuda_major, bool)
        ):
            raise InvalidArgumentError(
                f"cuda_major {self.cuda_major!r}: expected the CUDA major version, e.g. 13"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "trt_version": self.trt_version,
            "compute_capability": self.compute_capability,
            "driver_version": self.driver_version,
            "os": self.os,
            "gpu_name": self.gpu_name,
            "platform": self.platform,
            "cuda_major": self.cuda_major,
            "compute_in_graphics": self.compute_in_graphics,
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
        return Environment(*parts, compute_in_graphics=self.compute_in_graphics)  # type: ignore[arg-type]
