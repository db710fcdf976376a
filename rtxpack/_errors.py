"""The one exception hierarchy of rtxpack.

Every failure caused by bad input (a damaged, truncated, hostile or too-new bundle, wrong
arguments, wrong tensors, an unsupported machine) ends in a subclass of ``RtxpackError``.
Messages say what was found, what was expected and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._compat import CompatibilityReport

__all__ = [
    "BuildError",
    "BundleFormatError",
    "CompatibilityError",
    "DamagedBundleError",
    "ImportFormatError",
    "IntegrityError",
    "InvalidArgumentError",
    "NotABundleError",
    "OutputError",
    "RtxpackError",
    "RuntimeFailure",
    "TensorMismatchError",
    "UnsupportedVersionError",
]


class RtxpackError(Exception):
    """Root of every error rtxpack raises on purpose."""


class InvalidArgumentError(RtxpackError, ValueError):
    """An argument given to rtxpack (API or CLI) is invalid."""


class BundleFormatError(RtxpackError):
    """The file cannot be read as a bundle of a version this rtxpack supports."""


class NotABundleError(BundleFormatError):
    """The file does not start with the rtxpack magic bytes."""


class DamagedBundleError(BundleFormatError):
    """The bundle is truncated, malformed, or its manifest breaks the format's rules or limits."""


class UnsupportedVersionError(BundleFormatError):
    """The bundle was written in a format version this rtxpack cannot read (a newer major)."""

    def __init__(self, message: str, *, found: str, supported: str) -> None:
        super().__init__(message)
        self.found = found
        self.supported = supported


class IntegrityError(RtxpackError):
    """A digest does not match: the bytes were changed after the bundle was written."""


class OutputError(RtxpackError, OSError):
    """rtxpack could not write a file (disk full, no permission, file in use); the previous file,
    if any, is left as it was."""


class BuildError(RtxpackError):
    """TensorRT-RTX (or the ONNX exporter/parser) failed to build an engine."""


class ImportFormatError(RtxpackError):
    """A foreign artifact (for example a Torch-TensorRT engine) has a layout rtxpack cannot read."""


class CompatibilityError(RtxpackError):
    """The bundle cannot run on the target machine. ``report`` says why, finding by finding."""

    def __init__(self, message: str, report: CompatibilityReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class TensorMismatchError(RtxpackError, ValueError):
    """Inputs given to a loaded module do not match the engine's signature or profiles."""


class RuntimeFailure(RtxpackError):
    """The TensorRT-RTX runtime refused an operation (it returned None or False)."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail
