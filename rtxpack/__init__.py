"""rtxpack: ship NVIDIA TensorRT-RTX engines as one safe, versioned bundle file.

This module is the whole public surface; everything else lives in private modules, and every
exported name reports ``rtxpack`` as its module. The loader's names import torch, an optional
extra, and the registry's names import urllib3, so both are imported on first use.
``rtxpack.open`` and ``rtxpack.inspect`` are the short names of ``open_bundle`` and
``inspect_bundle``; they are left out of ``__all__`` so that ``from rtxpack import *`` does not
shadow the builtin ``open`` or the ``inspect`` module.
"""

from typing import TYPE_CHECKING, Any

from ._build.options import BuildOptions, TilingLevel
from ._bundle import Bundle, inspect_bundle, open_bundle
from ._caches.edit import add_cache, list_caches, remove_cache
from ._caches.prewarm import prewarm
from ._caches.selection import CachePlan
from ._checks.check import check
from ._checks.machine import local_target
from ._checks.report import CompatibilityReport, EngineVerdict, Finding
from ._checks.target import Target
from ._exceptions import (
    BackendError,
    BlobIntegrityError,
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
    InvalidReferenceError,
    NotABundleError,
    OutputError,
    RebuildWarning,
    RegistryAuthError,
    RegistryConnectionError,
    RegistryError,
    RegistryNotFoundError,
    RegistryProtocolError,
    RtxpackError,
    RtxpackWarning,
    RuntimeCacheWarning,
    RuntimeFailure,
    ShapeWarning,
    SignatureDroppedWarning,
    SignatureError,
    TensorMismatchError,
    UnsupportedVersionError,
    UntrustedBundleError,
    UntrustedCacheWarning,
)
from ._format.container import FORMAT_VERSION
from ._format.manifest import (
    CacheInfo,
    EngineInfo,
    Environment,
    Limits,
    Manifest,
    ShapeRange,
    TensorSpec,
)
from ._interop.epcontext import EpContextExport, EpContextLimits, export_epcontext, import_epcontext
from ._interop.torch_tensorrt import import_torch_tensorrt
from ._progress import Progress
from ._save import EngineSpec, save
from ._signing import PrivateKey, PublicKey, Signer, TrustPolicy, TrustReport, generate_key
from ._signing.bundle import sign
from ._source import drop_source
from ._strategy import AllocationStrategy, CudaGraphStrategy, DynamicShapesStrategy, RuntimeStrategy
from ._upgrade.migrate import migrate
from ._upgrade.rebuild import rebuild
from ._version import __version__

__all__ = [
    "AllocationStrategy",
    "BackendError",
    "BlobIntegrityError",
    "BuildError",
    "BuildOptions",
    "Bundle",
    "BundleFormatError",
    "BundleNotFoundError",
    "CacheInfo",
    "CachePlan",
    "CaptureWarning",
    "CompatibilityError",
    "CompatibilityReport",
    "ContentStore",
    "CudaGraphStrategy",
    "DamagedBundleError",
    "DynamicShapesStrategy",
    "EngineInfo",
    "EngineSpec",
    "EngineVerdict",
    "Environment",
    "EpContextExport",
    "EpContextLimits",
    "FORMAT_VERSION",
    "FallbackWarning",
    "Finding",
    "ImportFormatError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "Limits",
    "Manifest",
    "NotABundleError",
    "OnnxRuntimeModule",
    "OutputError",
    "PrivateKey",
    "Progress",
    "PublicKey",
    "PullResult",
    "PushResult",
    "RebuildWarning",
    "RegistryAuthError",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "RtxpackError",
    "RtxpackWarning",
    "RuntimeCacheWarning",
    "RuntimeFailure",
    "RuntimeStrategy",
    "ShapeRange",
    "ShapeWarning",
    "SignatureDroppedWarning",
    "SignatureError",
    "Signer",
    "Target",
    "TensorMismatchError",
    "TensorRTModule",
    "TensorSpec",
    "TilingLevel",
    "TrustPolicy",
    "TrustReport",
    "UnsupportedVersionError",
    "UntrustedBundleError",
    "UntrustedCacheWarning",
    "__version__",
    "add_cache",
    "check",
    "drop_source",
    "export_epcontext",
    "generate_key",
    "import_epcontext",
    "import_torch_tensorrt",
    "inspect_bundle",
    "list_caches",
    "load",
    "local_target",
    "migrate",
    "open_bundle",
    "prewarm",
    "pull",
    "push",
    "push_caches",
    "rebuild",
    "remove_cache",
    "save",
    "sign",
]

#: Short names, as attributes only (not in ``__all__``).
open = open_bundle
inspect = inspect_bundle


def _publish(value: Any) -> Any:
    """Make an exported class or function say ``rtxpack`` is its module (as httpx does)."""
    if callable(value):
        value.__module__ = __name__
    return value


for _name in __all__:
    if _name in globals():
        _publish(globals()[_name])
del _name

_LAZY = {
    "load": "._loader",
    # the registry client imports urllib3: only when it is used
    "ContentStore": "._registry.store",
    "PullResult": "._registry.pull",
    "PushResult": "._registry.push",
    "pull": "._registry.pull",
    "push": "._registry.push",
    "push_caches": "._registry.push",
    "TensorRTModule": "._backends.tensorrt",
    "OnnxRuntimeModule": "._backends.onnxruntime",
}

if TYPE_CHECKING:
    from ._backends.onnxruntime import OnnxRuntimeModule
    from ._backends.tensorrt import TensorRTModule
    from ._loader import load
    from ._registry.pull import PullResult, pull
    from ._registry.push import PushResult, push, push_caches
    from ._registry.store import ContentStore


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = _publish(getattr(importlib.import_module(_LAZY[name], __name__), name))
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rtxpack' has no attribute {name!r}")
