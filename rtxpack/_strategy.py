"""Runtime settings that travel with an engine (Torch-TensorRT leaves them out of its ABI)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from ._exceptions import InvalidArgumentError
from ._text import string_keys

__all__ = [
    "AllocationStrategy",
    "CudaGraphStrategy",
    "DynamicShapesStrategy",
    "RuntimeStrategy",
    "check_setting_names",
]


class DynamicShapesStrategy(str, enum.Enum):
    """``IRuntimeConfig.dynamic_shapes_kernel_specialization_strategy``."""

    LAZY = "lazy"  # compile shape-specialized kernels in the background (TensorRT-RTX default)
    EAGER = "eager"  # compile them before the first inference with a new shape returns
    NONE = "none"  # never specialize; always run the fallback kernels


class CudaGraphStrategy(str, enum.Enum):
    """``IRuntimeConfig.cuda_graph_strategy``."""

    DISABLED = "disabled"
    WHOLE_GRAPH_CAPTURE = "whole_graph_capture"


class AllocationStrategy(str, enum.Enum):
    """``IRuntimeConfig.set_execution_context_allocation_strategy``."""

    STATIC = "static"
    ON_PROFILE_CHANGE = "on_profile_change"
    USER_MANAGED = "user_managed"


def _coerce(enum_type: type[enum.Enum], value: Any, field: str) -> Any:
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str):
        try:
            return enum_type(value.lower())
        except ValueError:
            pass
    allowed = ", ".join(m.value for m in enum_type)
    raise InvalidArgumentError(f"{field}: got {value!r}, expected one of: {allowed}")


@dataclass(frozen=True)
class RuntimeStrategy:
    """How the TensorRT-RTX runtime runs an engine. Frozen and validated on construction.

    Strings are accepted and turned into the enums, so
    ``RuntimeStrategy(dynamic_shapes_kernel_specialization_strategy="eager")`` works.
    """

    dynamic_shapes_kernel_specialization_strategy: DynamicShapesStrategy = (
        DynamicShapesStrategy.LAZY
    )
    cuda_graph_strategy: CudaGraphStrategy = CudaGraphStrategy.DISABLED
    execution_context_allocation_strategy: AllocationStrategy = AllocationStrategy.STATIC
    #: For engines built with weight streaming (``BuildOptions(weight_streaming=True)``): how many
    #: bytes of weights stay on the GPU (``ICudaEngine.weight_streaming_budget_v2``), ``"auto"``
    #: for TensorRT-RTX's automatic budget, or None to leave TensorRT-RTX's default (all weights).
    weight_streaming_budget: int | str | None = None

    def __post_init__(self) -> None:
        budget = self.weight_streaming_budget
        if isinstance(budget, str) and budget.lower() == "auto":
            object.__setattr__(self, "weight_streaming_budget", "auto")
        elif budget is not None and (
            not isinstance(budget, int) or isinstance(budget, bool) or not 0 <= budget <= 2**50
        ):
            raise InvalidArgumentError(
                f"weight_streaming_budget: got {budget!r}, expected None, 'auto' or a number of "
                "bytes (0 or more)"
            )
        for f, enum_type in (
            ("dynamic_shapes_kernel_specialization_strategy", DynamicShapesStrategy),
            ("cuda_graph_strategy", CudaGraphStrategy),
            ("execution_context_allocation_strategy", AllocationStrategy),
        ):
            object.__setattr__(self, f, _coerce(enum_type, getattr(self, f), f))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            f.name: getattr(self, f.name).value
            for f in fields(self)
            if isinstance(getattr(self, f.name), enum.Enum)
        }
        out["weight_streaming_budget"] = self.weight_streaming_budget
        return out

    @classmethod
    def from_dict(cls, data: Any) -> RuntimeStrategy:
        """Build from plain data; unknown keys are ignored (newer minor formats may add some)."""
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"strategy: expected a map, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_overrides(self, **changes: Any) -> RuntimeStrategy:
        """A copy with some settings changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def check_setting_names(settings: Mapping[Any, Any]) -> None:
    """A strategy given as a map by the caller (``save`` and ``load``) names only settings of
    ``RuntimeStrategy``, as strings."""
    string_keys(settings, "strategy", "RuntimeStrategy's field names")
    known = set(RuntimeStrategy().to_dict())
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InvalidArgumentError(
            f"strategy: unknown settings {unknown}; expected some of {sorted(known)}"
        )
