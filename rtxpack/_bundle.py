"""``open`` and ``inspect``: reading bundles (``Bundle`` reads sections on demand)."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from ._exceptions import (
    InvalidArgumentError,
    UntrustedBundleError,
    UntrustedCacheWarning,
    attach_path,
)
from ._format import container
from ._format.manifest import DEFAULT_LIMITS, EngineInfo, Limits, Manifest, Section

if TYPE_CHECKING:
    from ._signing import TrustPolicy, TrustReport

__all__ = ["Bundle", "Trust", "inspect_bundle", "open_bundle", "resolve_trust"]

#: What ``trust=`` accepts: a ``TrustPolicy``, a policy file, ``None`` (the policy file named by
#: ``RTXPACK_TRUST_POLICY``, if set) or ``False`` (no policy, whatever the environment says).
Trust = Union["TrustPolicy", str, "os.PathLike[str]", bool, None]


def resolve_trust(trust: Trust) -> TrustPolicy | None:
    """The policy ``trust=`` means (docs/signing.md)."""
    from ._signing import TrustPolicy

    if trust is None:
        return TrustPolicy.from_env()
    if trust is False:
        return None
    if isinstance(trust, TrustPolicy):
        return trust
    if isinstance(trust, (str, os.PathLike)):
        return TrustPolicy.from_file(trust)
    raise InvalidArgumentError(
        f"trust={trust!r}: expected an rtxpack.TrustPolicy, a policy file, None (the "
        "RTXPACK_TRUST_POLICY file, if set) or False (no policy)"
    )


class Bundle:
    """An open bundle. Opening reads only the header and manifest; sections load on demand.

    Use as a context manager (``with rtxpack.open(path) as b: ...``) so the file is closed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        limits: Limits = DEFAULT_LIMITS,
        trust: Trust = False,
    ) -> None:
        policy = resolve_trust(trust)
        self._file = container.open_bundle_file(path, limits)
        self.path: Path = self._file.path
        self.manifest: Manifest = self._file.manifest
        #: What the trust policy decided (None when opened without one).
        self.trust: TrustReport | None = None
        if policy is not None:
            try:
                self._apply(policy)
            except BaseException as exc:
                self._file.close()
                attach_path(exc, self.path)
                if isinstance(exc, UntrustedBundleError):
                    exc.args = (f"{self.path}: {exc}",)
                raise

    def _apply(self, policy: TrustPolicy) -> None:
        """Refuse the bundle, or drop its untrusted caches, as ``policy`` says."""
        from ._signing.bundle import trust_report

        report = trust_report(self._file, policy)
        report.raise_for_refused()
        if report.dropped:
            self.manifest = replace(
                self.manifest,
                caches=tuple(c for c in self.manifest.caches if c.id not in report.dropped),
            )
            warnings.warn(
                f"rtxpack: ignoring runtime cache(s) {', '.join(sorted(report.dropped))} of "
                f"{self.path}: not signed by a key the trust policy trusts for caches; the "
                "engine loads without them (cold)",
                UntrustedCacheWarning,
                stacklevel=4,
            )
        self.trust = report

    def signatures(self, trust: Trust = False) -> TrustReport:
        """What the bundle's signatures say about its parts: under ``trust`` (a policy), which
        are trusted, refused or dropped; without one, who signed what (nothing verified)."""
        from ._signing.bundle import trust_report

        return trust_report(self._file, resolve_trust(trust))

    @property
    def format_version(self) -> str:
        return container.format_version_str(self._file.version)

    @property
    def engines(self) -> dict[str, EngineInfo]:
        return {e.name: e for e in self.manifest.engines}

    def section(self, index: int) -> Section:
        return self.manifest.sections[index]

    def read_section(
        self, index: int, *, verify: bool = True, private: bool = False
    ) -> memoryview | bytes:
        """A section's decoded bytes, digest-checked unless ``verify=False``. ``private=True``
        copies a stored section into memory before checking it (see ``read_engine``)."""
        return self._file.decode(self.manifest.sections[index], verify=verify, private=private)

    def read_engine(
        self, name: str | None = None, *, verify: bool = True, private: bool = False
    ) -> memoryview | bytes:
        """The engine's bytes, digest-checked. Stored engines come back as a zero-copy view of
        the mapped file, unless ``private=True``: then as a copy in memory, checked after
        copying, so bytes written into the file meanwhile cannot slip in (``load`` does this
        under a trust policy)."""
        return self.read_section(self.manifest.engine(name).section, verify=verify, private=private)

    def read_source(self, name: str | None = None) -> bytes | None:
        """The engine's model source (ONNX bytes), or None if the bundle does not carry it."""
        info = self.manifest.engine(name)
        return None if info.source is None else bytes(self.read_section(info.source))

    def read_samples(self, name: str | None = None) -> dict[str, dict[str, Any]] | None:
        """``{"inputs": {name: array}, "outputs": {name: array}}``, or None. bfloat16 samples come
        back as ``ml_dtypes.bfloat16`` arrays (numpy has no bf16 of its own)."""
        info = self.manifest.engine(name)
        if info.samples is None:
            return None
        from ._exceptions import DamagedBundleError
        from ._tensors import decode

        try:
            tensors = decode(
                self.read_section(info.samples), f"the samples of engine {info.name!r}"
            )
        except DamagedBundleError as exc:
            raise DamagedBundleError(str(exc), path=self.path) from None
        out: dict[str, dict[str, Any]] = {"inputs": {}, "outputs": {}}
        for key, value in tensors.items():
            group, _, tname = key.partition("/")
            if group in out:
                out[group][tname] = value
        return out

    def read_file(self, name: str) -> bytes:
        if name not in self.manifest.files:
            raise InvalidArgumentError(
                f"no file named {name!r} in this bundle "
                f"(it has: {', '.join(self.manifest.files) or 'none'})"
            )
        return bytes(self.read_section(self.manifest.files[name]))

    def read_cache(self, cache_id: str) -> bytes:
        for c in self.manifest.caches:
            if c.id == cache_id:
                return bytes(self.read_section(c.section, private=True))  # checked as used
        raise InvalidArgumentError(f"no runtime cache with id {cache_id!r} in this bundle")

    def verify(self) -> None:
        """Check every section (zstd frame, size, digest); raises on the first bad one. Streams:
        memory stays bounded (one 8 MiB chunk) whatever the sections' sizes."""
        for s in self.manifest.sections:
            for _ in self._file.iter_decoded(s):
                pass

    def extract(self, index: int, output: str | os.PathLike[str]) -> Path:
        """Write section ``index``'s decoded bytes to ``output``, streamed in bounded memory. The
        file appears (atomically) only once the whole section matched its digest."""
        section = self.manifest.sections[index]
        with container.atomic_output(output) as f:
            for chunk in self._file.iter_decoded(section):
                f.write(chunk)
        return Path(output)

    def to_dict(self) -> dict[str, Any]:
        data = self.manifest.to_dict()
        data["format_version"] = self.format_version
        data["file_size"] = self.path.stat().st_size
        data["signers"] = [s.to_dict() for s in self.signatures().signers]
        return data

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ", ".join(self.engines)
        return f"<rtxpack.Bundle {str(self.path)!r} format {self.format_version} engines: {names}>"


def open_bundle(
    path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS, trust: Trust = None
) -> Bundle:
    """Open a bundle: reads and checks only its header and manifest (also ``rtxpack.open``).

    Under a trust policy (``trust``, or the file named by ``RTXPACK_TRUST_POLICY`` when
    ``trust`` is None) it also checks the bundle's signatures (docs/signing.md) and raises
    ``UntrustedBundleError`` for a part the policy refuses; untrusted caches it drops are left
    out of ``manifest.caches``. ``trust=False`` opens without a policy."""
    return Bundle(path, limits=limits, trust=trust)


def inspect_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest as plain data, with ``format_version``, ``file_size`` and ``signers``
    (who signed what; nothing verified): what ``rtxpack inspect --json`` prints (also
    ``rtxpack.inspect``)."""
    with open_bundle(path, trust=False) as bundle:
        return bundle.to_dict()
