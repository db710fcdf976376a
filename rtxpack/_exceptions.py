"""Every error and warning rtxpack raises on purpose.

Errors (every failure caused by bad input ends in an ``RtxpackError``; messages say what was
found, what was expected and what to do)::

    RtxpackError
    ├── InvalidArgumentError (also ValueError) ... an argument (API or CLI) is wrong
    │   └── BundleNotFoundError (also FileNotFoundError) ... no bundle file at that path
    ├── BundleFormatError ................... the file cannot be read as a bundle   [.path]
    │   ├── NotABundleError ................. no rtxpack magic bytes
    │   ├── DamagedBundleError .............. truncated, malformed, over the limits
    │   └── UnsupportedVersionError ......... a format version this rtxpack cannot read
    ├── IntegrityError ...................... a digest does not match              [.path]
    ├── OutputError (also OSError) .......... a file could not be written          [.path]
    ├── ImportFormatError ................... a foreign artifact rtxpack cannot read [.path]
    ├── BuildError .......................... TensorRT-RTX / the exporter could not build
    ├── CompatibilityError .................. the bundle cannot run on the target   [.report]
    ├── TensorMismatchError (also ValueError)  inputs do not match the engine's signature
    ├── BackendError ........................ the TensorRT-RTX or ONNX Runtime backend refused
    │                                         an operation (old name: RuntimeFailure)
    ├── RegistryError ....................... talking to an OCI registry failed
    │   ├── InvalidReferenceError (also InvalidArgumentError)  a malformed oci:// reference
    │   ├── RegistryConnectionError ......... unreachable, or 5xx / dropped after the retries
    │   ├── RegistryAuthError ............... no, rejected or endlessly challenged credentials
    │   ├── RegistryNotFoundError ........... no such repository, tag, manifest or blob
    │   ├── RegistryProtocolError ........... an answer outside the spec or rtxpack's limits, or
    │   │                                     an artifact that is not a bundle
    │   └── BlobIntegrityError (also IntegrityError)  served bytes do not match their digest
    └── SignatureError ...................... signature data is malformed; nothing to sign [.path]
        └── UntrustedBundleError ............ a trust policy refuses a part [.part, .signers]

Warnings (filter them all with ``warnings.simplefilter(..., rtxpack.RtxpackWarning)``)::

    UserWarning
    └── RtxpackWarning
        ├── FallbackWarning ..... a load runs the ONNX source with ONNX Runtime instead
        ├── RebuildWarning ...... a load rebuilds an engine from its source for this machine
        ├── ShapeWarning ........ save froze a torch module's example shapes (no shapes= given)
        ├── RuntimeCacheWarning . a runtime cache was unusable, rejected or not written
        ├── UntrustedCacheWarning a trust policy dropped a runtime cache it does not trust
        ├── SignatureDroppedWarning a rewrite dropped a signature that no longer holds
        └── CaptureWarning ...... CUDA graphs: a strategy does not hold under capture/stream

Errors about a file carry ``path`` (``str``, or None when no file path is known).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._checks.report import CompatibilityReport

__all__ = [
    "BackendError",
    "BlobIntegrityError",
    "BuildError",
    "BundleFormatError",
    "BundleNotFoundError",
    "CaptureWarning",
    "CompatibilityError",
    "DamagedBundleError",
    "FallbackWarning",
    "ImportFormatError",
    "IntegrityError",
    "InvalidArgumentError",
    "InvalidReferenceError",
    "NotABundleError",
    "OutputError",
    "RebuildWarning",
    "RegistryAuthError",
    "RegistryConnectionError",
    "RegistryError",
    "RegistryNotFoundError",
    "RegistryProtocolError",
    "ShapeWarning",
    "RtxpackError",
    "RtxpackWarning",
    "RuntimeCacheWarning",
    "RuntimeFailure",
    "SignatureDroppedWarning",
    "SignatureError",
    "TensorMismatchError",
    "UnsupportedVersionError",
    "UntrustedBundleError",
    "UntrustedCacheWarning",
]


def _path_text(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.fspath(path)


class RtxpackError(Exception):
    """Root of every error rtxpack raises on purpose."""


class InvalidArgumentError(RtxpackError, ValueError):
    """An argument given to rtxpack (API or CLI) is invalid."""


class BundleNotFoundError(InvalidArgumentError, FileNotFoundError):
    """There is no bundle file at the given path (also a ``FileNotFoundError``, so
    ``except FileNotFoundError`` works; ``errno`` is not set, so ``str()`` is the message)."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class BundleFormatError(RtxpackError):
    """The file cannot be read as a bundle of a version this rtxpack supports."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class NotABundleError(BundleFormatError):
    """The file does not start with the rtxpack magic bytes."""


class DamagedBundleError(BundleFormatError):
    """The bundle is truncated, malformed, or its manifest breaks the format's rules or limits."""


class UnsupportedVersionError(BundleFormatError):
    """The bundle was written in a format version this rtxpack cannot read (a newer major)."""

    def __init__(
        self,
        message: str,
        *,
        found: str,
        supported: str,
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


class IntegrityError(RtxpackError):
    """A digest does not match: the bytes were changed after the bundle was written."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class OutputError(RtxpackError, OSError):
    """rtxpack could not write a file (disk full, no permission, file in use); the previous file,
    if any, is left as it was."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class BuildError(RtxpackError):
    """TensorRT-RTX (or the ONNX exporter/parser) failed to build an engine."""


class ImportFormatError(RtxpackError):
    """A foreign artifact (for example a Torch-TensorRT engine) has a layout rtxpack cannot read."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class CompatibilityError(RtxpackError):
    """The bundle cannot run on the target machine. ``report`` says why, finding by finding."""

    def __init__(self, message: str, report: CompatibilityReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class TensorMismatchError(RtxpackError, ValueError):
    """Inputs given to a loaded module do not match the engine's signature or profiles."""


class BackendError(RtxpackError):
    """The TensorRT-RTX (or ONNX Runtime) backend refused an operation: it returned None or
    False, or raised. ``detail`` holds what it gave back, when useful."""

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.detail = detail


class SignatureError(RtxpackError):
    """A bundle's signature data is malformed, or there is nothing to sign (docs/signing.md)."""

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(message)
        self.path = _path_text(path)


class UntrustedBundleError(SignatureError):
    """Under a trust policy, a part of the bundle is unsigned, tampered with, or signed only by
    keys the policy does not trust. ``part`` names it (``engine/main``,
    ``runtime_cache/ab12cd34``); ``signers`` says what the bundle's signatures say about it."""

    def __init__(
        self,
        message: str,
        *,
        part: str,
        signers: tuple[str, ...] = (),
        path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.part = part
        self.signers = signers


#: The name ``BackendError`` had before 0.2; kept so existing ``except`` clauses still work.
RuntimeFailure = BackendError


class RegistryError(RtxpackError):
    """Talking to an OCI registry failed; the message names the registry, what and why."""


class InvalidReferenceError(RegistryError, InvalidArgumentError):
    """A registry reference (``oci://HOST[:PORT]/REPO[:TAG][@DIGEST]``) is malformed."""


class RegistryConnectionError(RegistryError):
    """The registry could not be reached, or kept failing (5xx, dropped connections) after the
    bounded retries."""


class RegistryAuthError(RegistryError):
    """The registry refused access: no credentials, rejected credentials, or a challenge that
    came back after it was answered. Credentials never appear in the message."""


class RegistryNotFoundError(RegistryError):
    """The repository, tag, manifest or blob does not exist in the registry."""


class RegistryProtocolError(RegistryError):
    """The registry answered something rtxpack does not accept: a malformed or oversized
    manifest, a response outside the distribution spec, or an artifact that is not a bundle."""


class BlobIntegrityError(RegistryError, IntegrityError):
    """Bytes served by the registry do not match the digest or size their descriptor names."""


def attach_path(exc: BaseException, path: str | os.PathLike[str]) -> None:
    """Record ``path`` on an error about a file that was raised without one."""
    about_a_file = (
        BundleFormatError,
        IntegrityError,
        OutputError,
        ImportFormatError,
        SignatureError,
    )
    if isinstance(exc, about_a_file) and exc.path is None:
        exc.path = os.fspath(path)


# ---------------------------------------------------------------------------------------------
# Warnings


class RtxpackWarning(UserWarning):
    """Base of every warning rtxpack raises."""


class FallbackWarning(RtxpackWarning):
    """``load`` returned an ONNX Runtime module instead of a TensorRT-RTX one."""


class RebuildWarning(RtxpackWarning):
    """``load(..., rebuild=True)`` rebuilt an engine from the bundle's source for this machine."""


class ShapeWarning(RtxpackWarning):
    """``save`` built a torch module for exactly its example shapes because no ``shapes`` were
    given; pass ``shapes={name: (min, opt, max)}`` for an engine that takes other sizes."""


class RuntimeCacheWarning(RtxpackWarning):
    """A runtime cache was unusable (ignored), rejected, or could not be written (skipped);
    or no prewarmed cache fits, so the run starts cold."""


class CaptureWarning(RtxpackWarning):
    """A CUDA-graph related strategy cannot hold as asked (default stream, lazy kernels under
    capture); the module still runs."""


class UntrustedCacheWarning(RtxpackWarning):
    """A trust policy with ``untrusted_caches="drop"`` ignored a runtime cache it does not trust
    (the engine loads cold)."""


class SignatureDroppedWarning(RtxpackWarning):
    """A rewrite (cache add/remove, migrate, rebuild) left out a signature that no longer holds
    for the new bundle (a part it signed changed or is gone); the message names it and why."""
