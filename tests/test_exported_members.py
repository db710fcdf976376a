"""The public surface: exactly these names, all reporting ``rtxpack`` as their module (httpx's
test of the same name), and nothing under ``import *`` that hides a builtin or stdlib module."""

from __future__ import annotations

import builtins
import sys

import rtxpack

EXPORTED = [
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


def test_all_is_exactly_the_public_names_sorted() -> None:
    assert rtxpack.__all__ == EXPORTED
    assert rtxpack.__all__ == sorted(rtxpack.__all__)


def test_exported_members_report_rtxpack_as_their_module() -> None:
    for name in rtxpack.__all__:
        member = getattr(rtxpack, name)  # the lazy ones (load, the modules) import here
        if callable(member):
            assert member.__module__ == "rtxpack", name


def test_star_import_hides_no_builtin_and_no_stdlib_module() -> None:
    namespace: dict[str, object] = {}
    exec("from rtxpack import *", namespace)
    exported = set(namespace) - {"__builtins__"}
    assert exported == set(EXPORTED)
    assert not exported & set(dir(builtins))
    assert not exported & set(sys.stdlib_module_names)


def test_the_short_names_stay_as_attributes() -> None:
    assert rtxpack.open is rtxpack.open_bundle
    assert rtxpack.inspect is rtxpack.inspect_bundle
    assert "open" not in rtxpack.__all__ and "inspect" not in rtxpack.__all__


def test_renamed_error_keeps_its_old_name() -> None:
    assert rtxpack.RuntimeFailure is rtxpack.BackendError
