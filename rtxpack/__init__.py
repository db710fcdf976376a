"""rtxpack: ship NVIDIA TensorRT-RTX engines as one safe, versioned bundle file.

This module is the whole public surface; everything else lives in private modules.
"""

from ._bundle import Bundle, EngineSpec, inspect, open, save
from ._errors import (
    BuildError,
    BundleFormatError,
    CompatibilityError,
    DamagedBundleError,
    ImportFormatError,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    RtxpackError,
    RuntimeFailure,
    TensorMismatchError,
    UnsupportedVersionError,
)
from ._format import FORMAT_VERSION
from ._manifest import CacheInfo, EngineInfo, Environment, Limits, Manifest, ShapeRange, TensorSpec
from ._strategy import AllocationStrategy, CudaGraphStrategy, DynamicShapesStrategy, RuntimeStrategy
from ._version import __version__

__all__ = [
    "FORMAT_VERSION",
    "AllocationStrategy",
    "BuildError",
    "Bundle",
    "BundleFormatError",
    "CacheInfo",
    "CompatibilityError",
    "CudaGraphStrategy",
    "DamagedBundleError",
    "DynamicShapesStrategy",
    "EngineInfo",
    "EngineSpec",
    "Environment",
    "ImportFormatError",
    "IntegrityError",
    "InvalidArgumentError",
    "Limits",
    "Manifest",
    "NotABundleError",
    "RtxpackError",
    "RuntimeFailure",
    "RuntimeStrategy",
    "ShapeRange",
    "TensorMismatchError",
    "TensorSpec",
    "UnsupportedVersionError",
    "__version__",
    "inspect",
    "open",
    "save",
]
