"""How a bundle is laid out as an OCI artifact: media types, annotations, strict parsing.

One OCI image manifest per bundle (``artifactType`` = ``ARTIFACT_TYPE``). Its config blob is the
bundle's own manifest (msgpack, as written in the file); its layers are the bundle's sections,
in section order, each the section's bytes exactly as stored (so a zstd section stays
compressed and its digests stay valid). docs/distribution.md is the prose version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import RegistryProtocolError

__all__ = [
    "ARTIFACT_TYPE",
    "CONFIG_MEDIA_TYPE",
    "OCI_MANIFEST",
    "Artifact",
    "Descriptor",
    "build_manifest",
    "nameable_kind",
    "parse_manifest",
    "section_media_type",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ARTIFACT_TYPE = "application/vnd.rtxpack.bundle.v1"
CONFIG_MEDIA_TYPE = "application/vnd.rtxpack.manifest.v1+msgpack"
_SECTION_MEDIA_TYPE = "application/vnd.rtxpack.section.{kind}.v1"

# annotations
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
FORMAT_VERSION = "vnd.rtxpack.format.version"
MANIFEST_OFFSET = "vnd.rtxpack.manifest.offset"
RTXPACK_VERSION = "vnd.rtxpack.version"
SECTION_INDEX = "vnd.rtxpack.section.index"
SECTION_KIND = "vnd.rtxpack.section.kind"
SECTION_NAME = "vnd.rtxpack.section.name"
SECTION_CODEC = "vnd.rtxpack.section.codec"
SECTION_SIZE = "vnd.rtxpack.section.size"
SECTION_DIGEST = "vnd.rtxpack.section.digest"
ENGINE_TRT_VERSION = "vnd.rtxpack.engine.trt-version"
ENGINE_PLATFORM = "vnd.rtxpack.engine.platform"
CACHE_ID = "vnd.rtxpack.cache.id"
CACHE_ENGINE = "vnd.rtxpack.cache.engine"
CACHE_GPU = "vnd.rtxpack.cache.gpu"
CACHE_ENVIRONMENT = "vnd.rtxpack.cache.environment"

#: Bounds on what a registry's manifest may hold (beyond its byte size).
MAX_LAYERS = 4096
MAX_ANNOTATIONS = 64
MAX_ANNOTATION_CHARS = 4096
MAX_BLOB_BYTES = 64 * 1024**3

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
)
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")


def nameable_kind(kind: str) -> bool:
    """A section kind that can be part of a media type."""
    return bool(_KIND.fullmatch(kind))


def section_media_type(kind: str, codec: str) -> str:
    """``application/vnd.rtxpack.section.<kind>.v1`` (``+zstd`` for zstd-coded sections)."""
    if not _KIND.fullmatch(kind):
        raise RegistryProtocolError(f"section kind {kind!r} cannot be named in a media type")
    base = _SECTION_MEDIA_TYPE.format(kind=kind)
    return base + "+zstd" if codec == "zstd" else base


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True)
class Artifact:
    """A parsed, checked OCI manifest of a bundle."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    format_version: tuple[int, int]
    manifest_offset: int
    annotations: Mapping[str, str]


def build_manifest(
    config: Descriptor, layers: list[Descriptor], annotations: Mapping[str, str]
) -> bytes:
    """The OCI image manifest (JSON bytes) of a bundle artifact."""
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config.to_dict(),
        "layers": [layer.to_dict() for layer in layers],
        "annotations": dict(annotations),
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def _bad(where: str, what: str) -> RegistryProtocolError:
    return RegistryProtocolError(f"{where}: {what}; it is not an rtxpack bundle rtxpack can read")


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_ANNOTATIONS:
        raise _bad(where, f"annotations are not a map of at most {MAX_ANNOTATIONS} strings")
    for key, item in value.items():
        if not isinstance(item, str) or len(key) > 256 or len(item) > MAX_ANNOTATION_CHARS:
            raise _bad(where, f"annotation {key[:100]!r} is not a string of bounded length")
    return dict(value)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _bad(where, "a descriptor is not a JSON object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not _MEDIA_TYPE.fullmatch(media_type):
        raise _bad(where, f"mediaType {str(media_type)[:100]!r} is not a media type")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise _bad(where, f"digest {str(digest)[:100]!r} is not sha256: and 64 hex digits")
    if type(size) is not int or not 0 <= size <= MAX_BLOB_BYTES:
        raise _bad(where, f"size {str(size)[:40]} is not a byte count up to {MAX_BLOB_BYTES}")
    if value.get("urls"):
        raise _bad(where, "a descriptor with external urls (rtxpack fetches from the registry)")
    return Descriptor(media_type, digest, size, _annotations(value.get("annotations"), where))


def parse_manifest(data: bytes, where: str) -> Artifact:
    """Check and parse an OCI manifest that should describe a bundle."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise _bad(where, "the manifest is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise _bad(where, "the manifest is not an OCI manifest with schemaVersion 2")
    if doc.get("mediaType", OCI_MANIFEST) != OCI_MANIFEST:
        raise _bad(where, f"the manifest's mediaType is {str(doc.get('mediaType'))[:100]!r}")
    if doc.get("artifactType") != ARTIFACT_TYPE:
        raise _bad(
            where,
            f"its artifactType is {str(doc.get('artifactType'))[:100]!r}, expected {ARTIFACT_TYPE}",
        )
    config = _descriptor(doc.get("config"), f"{where} config")
    if config.media_type != CONFIG_MEDIA_TYPE:
        raise _bad(where, f"its config is {config.media_type!r}, expected {CONFIG_MEDIA_TYPE}")
    layers_raw = doc.get("layers")
    if not isinstance(layers_raw, list) or len(layers_raw) > MAX_LAYERS:
        raise _bad(where, f"its layers are not a list of at most {MAX_LAYERS} descriptors")
    layers = tuple(_descriptor(x, f"{where} layer {i}") for i, x in enumerate(layers_raw))
    version = re.fullmatch(r"(\d{1,4})\.(\d{1,4})", config.annotations.get(FORMAT_VERSION, ""))
    offset = config.annotations.get(MANIFEST_OFFSET, "")
    if version is None or not offset.isdigit() or len(offset) > 20:
        raise _bad(where, f"its config lacks the {FORMAT_VERSION} or {MANIFEST_OFFSET} annotation")
    return Artifact(
        config=config,
        layers=layers,
        format_version=(int(version.group(1)), int(version.group(2))),
        manifest_offset=int(offset),
        annotations=_annotations(doc.get("annotations"), where),
    )
