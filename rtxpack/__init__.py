"""rtxpack: ship NVIDIA TensorRT-RTX engines as one safe, versioned bundle file.

This module is the whole public surface; everything else lives in private modules.
The loader's names import torch, an optional extra, so they are imported on first use.
"""

from typing import TYPE_CHECKING, Any

from ._bundle import Bundle, EngineSpec, inspect, open, save
from ._cache import CachePlan
from ._compat import CompatibilityReport, EngineVerdict, Finding, check, local_target
from ._edit import add_cache, list_caches, remove_cache
from ._exceptions import (
    BackendError,
    BuildError,
    BundleFormatError,
    BundleNotFoundError,
    CaptureWarning,
    CompatibilityError,
    DamagedBundleError,
    FallbackWarning,
    ImportFormatError,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    OutputError,
    RebuildWarning,
    RtxpackError,
    RtxpackWarning,
    RuntimeCacheWarning,
    RuntimeFailure,
    TensorMismatchError,
    UnsupportedVersionError,
)
from ._format import FORMAT_VERSION
from ._manifest import CacheInfo, EngineInfo, Environment, Limits, Manifest, ShapeRange, TensorSpec
from ._migrate import migrate, rebuild
from ._prewarm import prewarm
from ._strategy import AllocationStrategy, CudaGraphStrategy, DynamicShapesStrategy, RuntimeStrategy
from ._target import Target
from ._torch_trt import import_torch_tensorrt
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "__version__",
    "AllocationStrategy",
    "BackendError",
    "BundleNotFoundError",
    "CaptureWarning",
    "RebuildWarning",
    "RtxpackWarning",
    "BuildError",
    "Bundle",
    "BundleFormatError",
    "CacheInfo",
    "CachePlan",
    "CompatibilityError",
    "CompatibilityReport",
    "CudaGraphStrategy",
    "DamagedBundleError",
    "DynamicShapesStrategy",
    "EngineInfo",
    "EngineSpec",
    "EngineVerdict",
    "Environment",
    "FallbackWarning",
    "Finding",
    "ImportFormatError",
    "IntegrityError",
    "InvalidArgumentError",
    "Limits",
    "Manifest",
    "NotABundleError",
    "OutputError",
    "OnnxRuntimeModule",
    "RtxpackError",
    "RuntimeCacheWarning",
    "RuntimeFailure",
    "RuntimeStrategy",
    "ShapeRange",
    "Target",
    "TensorMismatchError",
    "TensorRTModule",
    "TensorSpec",
    "UnsupportedVersionError",
    "add_cache",
    "check",
    "import_torch_tensorrt",
    "inspect",
    "list_caches",
    "load",
    "local_target",
    "migrate",
    "open",
    "prewarm",
    "rebuild",
    "remove_cache",
    "save",
]

_LAZY = {
    "load": "._loader",
    "TensorRTModule": "._runtime",
    "OnnxRuntimeModule": "._ort",
}

if TYPE_CHECKING:
    from ._loader import load
    from ._ort import OnnxRuntimeModule
    from ._runtime import TensorRTModule


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rtxpack' has no attribute {name!r}")
