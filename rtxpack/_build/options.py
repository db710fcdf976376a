"""Builder options an engine is built with, recorded in the bundle (``EngineInfo.build_options``).

Each maps to one setting of TensorRT-RTX's ``IBuilderConfig``; ``None`` leaves TensorRT-RTX's own
default. The runtime platform is not here: it is the engine's ``platform`` (``save(...,
platform="windows_x86_64")`` builds a Windows engine on Linux).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import Any

from .._exceptions import InvalidArgumentError

__all__ = ["BuildOptions", "TilingLevel", "build_platform"]


class TilingLevel(str, enum.Enum):
    """``IBuilderConfig.tiling_optimization_level``: how hard the builder searches tilings that
    keep data in the L2 cache (more is a slower build and maybe a faster engine)."""

    NONE = "none"
    FAST = "fast"
    MODERATE = "moderate"
    FULL = "full"


@dataclass(frozen=True)
class BuildOptions:
    """``weight_streaming``: build with ``BuilderFlag.WEIGHT_STREAMING``, so the runtime can keep
    only part of the weights on the GPU (the budget is ``RuntimeStrategy.weight_streaming_budget``,
    a runtime setting); ``tiling_optimization_level`` and ``l2_limit_for_tiling`` (bytes): L2
    tiling; ``max_aux_streams``: the most auxiliary CUDA streams an engine may use (0 = none)."""

    weight_streaming: bool = False
    tiling_optimization_level: TilingLevel = TilingLevel.NONE
    l2_limit_for_tiling: int | None = None
    max_aux_streams: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.weight_streaming, bool):
            raise InvalidArgumentError(
                f"weight_streaming: expected True or False, got {self.weight_streaming!r}"
            )
        level = self.tiling_optimization_level
        if not isinstance(level, TilingLevel):
            try:
                level = TilingLevel(str(level).lower())
            except ValueError:
                raise InvalidArgumentError(
                    f"tiling_optimization_level: got {level!r}, expected one of "
                    + ", ".join(m.value for m in TilingLevel)
                ) from None
            object.__setattr__(self, "tiling_optimization_level", level)
        for name, hi in (("l2_limit_for_tiling", 2**40), ("max_aux_streams", 64)):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= hi
            ):
                raise InvalidArgumentError(
                    f"{name}: got {value!r}, expected None or an integer in 0..{hi}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_streaming": self.weight_streaming,
            "tiling_optimization_level": self.tiling_optimization_level.value,
            "l2_limit_for_tiling": self.l2_limit_for_tiling,
            "max_aux_streams": self.max_aux_streams,
        }

    @classmethod
    def from_dict(cls, data: Any) -> BuildOptions:
        """From plain data; unknown keys are ignored (a newer minor format may add some)."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"build_options: expected a map, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def apply(self, trt: Any, config: Any) -> None:
        """Set these options on a ``tensorrt_rtx.IBuilderConfig``."""
        if self.weight_streaming:
            config.set_flag(trt.BuilderFlag.WEIGHT_STREAMING)
        config.tiling_optimization_level = getattr(
            trt.TilingOptimizationLevel, self.tiling_optimization_level.name
        )
        if self.l2_limit_for_tiling is not None:
            config.l2_limit_for_tiling = self.l2_limit_for_tiling
        if self.max_aux_streams is not None:
            config.max_aux_streams = self.max_aux_streams


#: Platforms a build on this machine can target, and TensorRT-RTX's ``RuntimePlatform`` for each
#: (Windows engines build on Linux; the reverse is not offered by TensorRT-RTX 1.7).
_TARGET_PLATFORMS = {"windows_x86_64": "WINDOWS_AMD64"}
_PLATFORM_ALIASES = {"windows": "windows_x86_64", "windows_amd64": "windows_x86_64"}


def build_platform(platform: str | None, here: str) -> tuple[str, str | None]:
    """(the platform tag to record, the ``RuntimePlatform`` member to set or None) for a build
    on ``here`` asked to target ``platform`` (None, ``linux``... or ``windows``)."""
    if platform is None:
        return here, None
    tag = _PLATFORM_ALIASES.get(str(platform).lower(), str(platform).lower())
    if tag == here or tag == here.split("_", 1)[0]:
        return here, None
    if tag in _TARGET_PLATFORMS:
        return tag, _TARGET_PLATFORMS[tag]
    raise InvalidArgumentError(
        f"platform {platform!r}: a build here ({here}) can target {here} or "
        + ", ".join(sorted(_TARGET_PLATFORMS))
        + " (TensorRT-RTX builds Windows engines on Linux; give 'windows')"
    )
