"""``open`` and ``inspect``: reading bundles (``Bundle`` reads sections on demand)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ._exceptions import InvalidArgumentError
from ._format import container
from ._format.manifest import DEFAULT_LIMITS, EngineInfo, Limits, Manifest, Section

__all__ = ["Bundle", "inspect_bundle", "open_bundle"]


class Bundle:
    """An open bundle. Opening reads only the header and manifest; sections load on demand.

    Use as a context manager (``with rtxpack.open(path) as b: ...``) so the file is closed.
    """

    def __init__(self, path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._file = container.open_bundle_file(path, limits)
        self.path: Path = self._file.path
        self.manifest: Manifest = self._file.manifest

    @property
    def format_version(self) -> str:
        return container.format_version_str(self._file.version)

    @property
    def engines(self) -> dict[str, EngineInfo]:
        return {e.name: e for e in self.manifest.engines}

    def section(self, index: int) -> Section:
        return self.manifest.sections[index]

    def read_section(self, index: int, *, verify: bool = True) -> memoryview | bytes:
        return self._file.decode(self.manifest.sections[index], verify=verify)

    def read_engine(self, name: str | None = None, *, verify: bool = True) -> memoryview | bytes:
        """The engine's bytes, digest-checked. Stored engines come back as a zero-copy view."""
        return self.read_section(self.manifest.engine(name).section, verify=verify)

    def read_source(self, name: str | None = None) -> bytes | None:
        """The engine's model source (ONNX bytes), or None if the bundle does not carry it."""
        info = self.manifest.engine(name)
        return None if info.source is None else bytes(self.read_section(info.source))

    def read_samples(self, name: str | None = None) -> dict[str, dict[str, Any]] | None:
        """``{"inputs": {name: array}, "outputs": {name: array}}``, or None."""
        info = self.manifest.engine(name)
        if info.samples is None:
            return None
        import safetensors.numpy

        from ._exceptions import DamagedBundleError

        try:
            tensors = safetensors.numpy.load(bytes(self.read_section(info.samples)))
        except Exception as exc:
            raise DamagedBundleError(
                f"the samples of engine {info.name!r} are not valid safetensors ({exc})",
                path=self.path,
            ) from None
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
                return bytes(self.read_section(c.section))
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


def open_bundle(path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS) -> Bundle:
    """Open a bundle: reads and checks only its header and manifest (also ``rtxpack.open``)."""
    return Bundle(path, limits=limits)


def inspect_bundle(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest as plain data, what ``rtxpack inspect --json`` prints (also
    ``rtxpack.inspect``)."""
    with open_bundle(path) as bundle:
        return bundle.to_dict()
