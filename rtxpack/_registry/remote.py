"""Reading a bundle's description from a registry: the OCI manifest and the bundle manifest
(its config), both checked as strictly as a local bundle's header and manifest."""

from __future__ import annotations

import io
from dataclasses import dataclass

from .. import _constants
from .._exceptions import RegistryProtocolError, UnsupportedVersionError
from .._format.container import (
    FORMAT_VERSION,
    check_sections,
    format_version_str,
    unpack_manifest,
)
from .._format.manifest import DEFAULT_LIMITS, Manifest
from .._format.migrations import upgrade_manifest
from . import artifact as oci
from .client import RegistryClient
from .reference import Reference
from .store import ContentStore

__all__ = ["Remote", "fetch_remote"]


@dataclass(frozen=True)
class Remote:
    """A bundle in a registry: ``digest`` pins its OCI manifest."""

    reference: Reference
    digest: str
    artifact: oci.Artifact
    manifest: Manifest
    version: tuple[int, int]


def _manifest_bytes(
    client: RegistryClient, reference: Reference, store: ContentStore | None
) -> tuple[bytes, str]:
    if reference.digest is not None and store is not None:
        kept = store.read_small(reference.digest, _constants.REGISTRY_MAX_MANIFEST_BYTES)
        if kept is not None:
            return kept, reference.digest
    data, _, digest = client.get_manifest(reference.repository, reference.ref, oci.OCI_MANIFEST)
    if store is not None:
        store.put(digest, data)
    return data, digest


def _config_bytes(
    client: RegistryClient, reference: Reference, config: oci.Descriptor, store: ContentStore | None
) -> bytes:
    limit = DEFAULT_LIMITS.max_manifest_bytes
    if config.size > limit:
        raise RegistryProtocolError(
            f"{reference}: its bundle manifest is {config.size} bytes, above the {limit} a "
            "bundle manifest may have; it is not a bundle rtxpack can read"
        )
    if store is not None:
        kept = store.read_small(config.digest, limit)
        if kept is not None:
            return kept
    out = io.BytesIO()
    client.fetch_blob(reference.repository, config.digest, config.size, out)
    data = out.getvalue()
    if store is not None:
        store.put(config.digest, data)
    return data


def fetch_remote(
    client: RegistryClient, reference: Reference, store: ContentStore | None = None
) -> Remote:
    """The bundle at ``reference``, its layers checked against its sections one by one."""
    where = str(reference)
    data, digest = _manifest_bytes(client, reference, store)
    art = oci.parse_manifest(data, where)
    version = art.format_version
    if version[0] != FORMAT_VERSION[0] or version[1] > FORMAT_VERSION[1]:
        raise UnsupportedVersionError(
            f"{where} holds a bundle of format {format_version_str(version)}; this rtxpack "
            f"pulls bundles up to {format_version_str()}: upgrade rtxpack (pip install -U "
            "rtxpack)",
            found=format_version_str(version),
            supported=format_version_str(),
        )
    raw = unpack_manifest(
        _config_bytes(client, reference, art.config, store), DEFAULT_LIMITS, where
    )
    if isinstance(raw, dict):
        raw = upgrade_manifest(raw, version)
    manifest = Manifest.from_dict(raw, DEFAULT_LIMITS)
    check_sections(manifest.sections, art.manifest_offset, DEFAULT_LIMITS, where)
    if len(art.layers) != len(manifest.sections):
        raise RegistryProtocolError(
            f"{where}: the OCI manifest lists {len(art.layers)} layers for "
            f"{len(manifest.sections)} sections; it was not written by rtxpack or was edited"
        )
    for i, (layer, section) in enumerate(zip(art.layers, manifest.sections)):
        notes = layer.annotations
        expected = {
            oci.SECTION_KIND: section.kind,
            oci.SECTION_CODEC: section.codec,
            oci.SECTION_DIGEST: section.digest,
            oci.SECTION_SIZE: str(section.size),
        }
        wrong = [k for k, v in expected.items() if notes.get(k) != v]
        if (
            layer.size != section.length
            or layer.media_type != oci.section_media_type(section.kind, section.codec)
            or wrong
        ):
            raise RegistryProtocolError(
                f"{where}: layer {i} ({layer.digest}, {layer.size} bytes) does not describe "
                f"section {i} ({section.kind}/{section.name!r}, {section.length} bytes) of the "
                "bundle manifest; the artifact was not written by rtxpack or was edited"
            )
    return Remote(reference, digest, art, manifest, version)
