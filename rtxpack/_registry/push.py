"""``push`` and ``push_caches``: a bundle, or only its new runtime caches, to an OCI registry.

Every section becomes one blob, uploaded as the bytes stored in the file (read in chunks, never
whole); the bundle's manifest is the artifact's config. Blobs the repository already has are
skipped (``HEAD``), blobs another repository of the same registry has are mounted when asked.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import IO, Any

import msgpack

from .. import _constants
from .._exceptions import InvalidArgumentError, RegistryNotFoundError, SignatureDroppedWarning
from .._format.container import (
    ALIGNMENT,
    FORMAT_VERSION,
    BundleFile,
    check_sections,
    format_version_str,
    new_cache_id,
    open_bundle_file,
    unpack_manifest,
)
from .._format.container import (
    digest as section_digest,
)
from .._format.manifest import DEFAULT_LIMITS, Manifest, Section
from .._signing.envelope import DEFAULT_SIGNATURE_LIMITS
from .._signing.sign import SECTION_KIND as SIGNATURE_KIND
from .._version import __version__
from . import artifact as oci
from .client import RegistryClient, sha256_digest
from .reference import Reference, parse_reference
from .remote import Remote, fetch_remote

__all__ = ["PushResult", "push", "push_caches"]


@dataclass(frozen=True)
class PushResult:
    """What a push did. ``reference`` pins the manifest it wrote (``...:tag@sha256:...``)."""

    reference: str
    digest: str
    uploaded: int
    uploaded_bytes: int
    skipped: int
    mounted: int
    caches_added: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "uploaded": self.uploaded,
            "uploaded_bytes": self.uploaded_bytes,
            "skipped": self.skipped,
            "mounted": self.mounted,
            "caches_added": list(self.caches_added),
        }


class _SectionReader:
    """A file-like view of ``length`` bytes at ``offset`` of a file (for streaming uploads)."""

    def __init__(self, path: str | os.PathLike[str], offset: int, length: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 -- closed at EOF or by close()
        self._f.seek(offset)
        self._left = length

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            self.close()
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._f.read(n)
        self._left -= len(data)
        if not data:
            self._left = 0
        return data

    def close(self) -> None:
        self._f.close()


def _read_exact(path: str | os.PathLike[str], offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _section_sha256(bf: BundleFile, section: Section) -> str:
    view = bf.raw_view(section)
    h = hashlib.sha256()
    step = _constants.REGISTRY_CHUNK_BYTES * 8
    for i in range(0, len(view), step):
        h.update(view[i : i + step])
    return "sha256:" + h.hexdigest()


def _layer_annotations(index: int, section: Section, manifest: Manifest) -> dict[str, str]:
    notes = {
        oci.TITLE: f"{index:04d}-{section.kind}",
        oci.SECTION_INDEX: str(index),
        oci.SECTION_KIND: section.kind,
        oci.SECTION_NAME: section.name,
        oci.SECTION_CODEC: section.codec,
        oci.SECTION_SIZE: str(section.size),
        oci.SECTION_DIGEST: section.digest,
    }
    for engine in manifest.engines:
        if engine.section == index:
            notes[oci.ENGINE_TRT_VERSION] = engine.trt_version
            notes[oci.ENGINE_PLATFORM] = engine.platform
    for cache in manifest.caches:
        if cache.section == index:
            env = cache.environment
            notes[oci.CACHE_ID] = cache.id
            notes[oci.CACHE_ENGINE] = cache.engine
            notes[oci.CACHE_GPU] = f"{env.gpu_name} (CC {env.compute_capability})"
            notes[oci.CACHE_ENVIRONMENT] = (
                f"trt {env.trt_version}; driver {env.driver_version}; {env.os}"
            )
    return notes


@dataclass
class _Upload:
    """One blob to make present in the repository, with a way to stream it."""

    descriptor: oci.Descriptor
    path: str | None = None  # stream from this file ...
    offset: int = 0
    data: bytes | None = None  # ... or from memory (small blobs)


class _Uploader:
    def __init__(self, client: RegistryClient, ref: Reference, mount_from: str | None) -> None:
        self.client, self.ref, self.mount_from = client, ref, mount_from
        self.uploaded = self.uploaded_bytes = self.skipped = self.mounted = 0

    def ensure(self, item: _Upload) -> None:
        d, repo = item.descriptor, self.ref.repository
        if self.client.blob_exists(repo, d.digest):
            self.skipped += 1
            return
        if self.mount_from and self.client.mount_blob(repo, d.digest, self.mount_from):
            self.mounted += 1
            return

        if item.path is None and item.data is None:
            raise RegistryNotFoundError(
                f"the registry {self.client.registry} lost blob {d.digest} of {self.ref}; push "
                "the whole bundle again"
            )

        def body() -> IO[bytes]:
            if item.data is not None:
                return io.BytesIO(item.data)
            assert item.path is not None
            return _SectionReader(item.path, item.offset, d.size)  # type: ignore[return-value]

        self.client.upload_blob(repo, d.digest, d.size, body)
        self.uploaded += 1
        self.uploaded_bytes += d.size

    def result(self, digest: str, caches: tuple[str, ...] = ()) -> PushResult:
        pinned = self.ref.with_digest(digest)
        return PushResult(
            str(pinned),
            digest,
            self.uploaded,
            self.uploaded_bytes,
            self.skipped,
            self.mounted,
            caches,
        )


def _target_ref(ref: str) -> Reference:
    reference = parse_reference(ref)
    if reference.digest is not None:
        raise InvalidArgumentError(
            f"{ref}: push writes a tag; give oci://HOST/REPO:TAG (without @sha256:...)"
        )
    return reference


def _check_mount(mount_from: str | None) -> None:
    if mount_from is not None:
        parse_reference(f"oci://host/{mount_from}")  # same repository grammar


def push(
    path: str | os.PathLike[str],
    ref: str,
    *,
    mount_from: str | None = None,
    annotations: Mapping[str, str] | None = None,
    insecure: bool = False,
    ca_file: str | None = None,
) -> PushResult:
    """Push the bundle at ``path`` to ``ref`` (``oci://HOST[:PORT]/REPO[:TAG]``).

    One blob per section plus the bundle's manifest as the config; blobs the repository has
    are not uploaded again; ``mount_from`` names another repository of the same registry to
    mount existing blobs from. ``annotations`` are added to the OCI manifest.
    """
    reference = _target_ref(ref)
    _check_mount(mount_from)
    bf = open_bundle_file(path)
    try:
        manifest = bf.manifest
        for section in manifest.sections:
            if not oci.nameable_kind(section.kind):
                raise InvalidArgumentError(
                    f"{path}: section kind {section.kind[:100]!r} cannot be pushed: a media type "
                    "names kinds of lowercase letters, digits and '_' (at most 64)"
                )
        uploads = []
        for i, section in enumerate(manifest.sections):
            desc = oci.Descriptor(
                oci.section_media_type(section.kind, section.codec),
                _section_sha256(bf, section),
                section.length,
                _layer_annotations(i, section, manifest),
            )
            uploads.append(_Upload(desc, path=os.fspath(path), offset=section.offset))
        raw = _read_exact(path, bf.header.manifest_offset, bf.header.manifest_length)
        config = oci.Descriptor(
            oci.CONFIG_MEDIA_TYPE,
            sha256_digest(raw),
            len(raw),
            {
                oci.FORMAT_VERSION: format_version_str(bf.version),
                oci.MANIFEST_OFFSET: str(bf.header.manifest_offset),
            },
        )
        notes = {
            oci.CREATED: manifest.created_at,
            oci.RTXPACK_VERSION: __version__,
            oci.TITLE: os.path.basename(os.fspath(path))[:255],
        }
        notes.update(_checked_annotations(annotations))
    finally:
        bf.close()
    return _publish(reference, config, raw, uploads, notes, mount_from, insecure, ca_file)


def _checked_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (annotations or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or not key or len(key) > 256:
            raise InvalidArgumentError(f"annotation {key!r}: keys and values are strings")
        if len(value) > oci.MAX_ANNOTATION_CHARS:
            raise InvalidArgumentError(
                f"annotation {key!r}: at most {oci.MAX_ANNOTATION_CHARS} characters"
            )
        out[key] = value
    return out


def _publish(
    reference: Reference,
    config: oci.Descriptor,
    config_bytes: bytes,
    uploads: list[_Upload],
    notes: dict[str, str],
    mount_from: str | None,
    insecure: bool,
    ca_file: str | None,
    caches: tuple[str, ...] = (),
    client: RegistryClient | None = None,
) -> PushResult:
    own = client is None
    client = client or RegistryClient.for_reference(reference, insecure=insecure, ca_file=ca_file)
    try:
        uploader = _Uploader(client, reference, mount_from)
        seen: set[str] = set()
        for item in [*uploads, _Upload(config, data=config_bytes)]:
            if item.descriptor.digest not in seen:
                seen.add(item.descriptor.digest)
                uploader.ensure(item)
        body = oci.build_manifest(config, [u.descriptor for u in uploads], notes)
        assert reference.tag is not None
        digest = client.put_manifest(reference.repository, reference.tag, body, oci.OCI_MANIFEST)
        return uploader.result(digest, caches)
    finally:
        if own:
            client.close()


def _tag_signature(
    client: RegistryClient, reference: Reference, layer: oci.Descriptor, section: Section
) -> bytes:
    """The bytes of one of the tag's signature sections (a small stored blob); ``b""`` (a damaged
    signature) if it is not one or its bytes are not the section's."""
    if section.codec != "stored" or layer.size > DEFAULT_SIGNATURE_LIMITS.max_envelope_bytes:
        return b""
    out = io.BytesIO()
    client.fetch_blob(reference.repository, layer.digest, layer.size, out)
    data = out.getvalue()
    return data if section.digest == section_digest(data) else b""


def _signature_changes(
    client: RegistryClient,
    remote: Remote,
    bf: BundleFile,
    merged: Manifest,
) -> tuple[set[int], list[Section]]:
    """Which of the tag's signature sections the merged bundle leaves out, and which of the
    local bundle's signature sections it adds (docs/signing.md, "Through a registry").

    Only signatures that hold for the merged manifest are published (a stale one of the tag is
    left out with a warning). Of the signatures of one name (one signer and role), one whose
    parts another covers too is superseded (of two over the same parts, the newer stays): a
    prewarm machine's new signature over the tag's caches and its own replaces its earlier one,
    and a local signature that adds nothing to the tag's is not published. Signatures of one name
    over different parts, none covering another, all stay: each vouches for caches the others do
    not."""
    from .._signing.sign import covered_parts, why_stale

    raw = merged.to_dict()
    drop: set[int] = set()
    named: dict[str, list[tuple[int | None, Section, frozenset[str]]]] = {}
    for i, section in enumerate(remote.manifest.sections):
        if section.kind != SIGNATURE_KIND:
            continue
        data = _tag_signature(client, remote.reference, remote.artifact.layers[i], section)
        reason = why_stale(raw, data)
        if reason is not None:
            warnings.warn(
                f"left out the signature {section.name!r} of {remote.reference}: {reason}; "
                "sign the bundle again to restore it",
                SignatureDroppedWarning,
                stacklevel=3,
            )
            drop.add(i)
            continue
        named.setdefault(section.name, []).append((i, section, covered_parts(raw, data)))
    have = {s.digest for s in remote.manifest.sections if s.kind == SIGNATURE_KIND}
    for section in bf.manifest.sections:
        if section.kind != SIGNATURE_KIND or section.digest in have:
            continue
        if section.codec != "stored" or section.size > DEFAULT_SIGNATURE_LIMITS.max_envelope_bytes:
            continue
        parts = covered_parts(raw, bytes(bf.decode(section)))
        if parts:
            named.setdefault(section.name, []).append((None, section, parts))
    add: list[Section] = []
    for group in named.values():  # the tag's first, then the local ones: oldest to newest
        for pos, (index, section, parts) in enumerate(group):
            superseded = any(
                parts < other or (parts == other and later > pos)
                for later, (_, _, other) in enumerate(group)
                if later != pos
            )
            if superseded and index is not None:
                drop.add(index)
            elif not superseded and index is None:
                add.append(section)
    return drop, add


def push_caches(
    path: str | os.PathLike[str],
    ref: str,
    *,
    insecure: bool = False,
    ca_file: str | None = None,
) -> PushResult:
    """Add the runtime caches of the local bundle at ``path`` that the bundle at ``ref`` lacks
    to ``ref``: only those cache blobs, the new bundle manifest and the OCI manifest move.

    A cache is added when the remote bundle has an engine of the same name with the same
    section digest (the same engine) and no cache with the same bytes. Nothing is pushed when
    there is nothing new (``caches_added`` is empty). A cache made for an engine the tag does not
    hold (another build, or no such engine) is an ``InvalidArgumentError``, before any upload.
    """
    reference = _target_ref(ref)
    with RegistryClient.for_reference(reference, insecure=insecure, ca_file=ca_file) as client:
        remote = fetch_remote(client, reference)
        base = remote.manifest
        sections = list(base.sections)
        caches = list(base.caches)
        uploads = [_Upload(layer) for layer in remote.artifact.layers]
        end = max((s.offset + s.length for s in sections), default=64)
        added: list[str] = []
        drop: set[int] = set()  # the tag's signature sections to leave out
        bf = open_bundle_file(path)
        try:
            engine_digest = {e.name: sections[e.section].digest for e in base.engines}
            have = {sections[c.section].digest for c in caches}
            ids = {c.id for c in caches}
            local = bf.manifest
            for cache in local.caches:
                section = local.sections[cache.section]
                engine = local.engine(cache.engine)
                ours = local.sections[engine.section].digest
                if engine_digest.get(engine.name) != ours:
                    theirs = engine_digest.get(engine.name)
                    at_tag = (
                        f"the tag has no engine {engine.name!r}"
                        if theirs is None
                        else f"the tag's engine {engine.name!r} is another build ({theirs[:19]}...)"
                    )
                    raise InvalidArgumentError(
                        f"cannot add runtime cache {cache.id!r} of {path} to {reference}: it was "
                        f"made for engine {engine.name!r} {ours[:19]}..., and {at_tag}; a cache "
                        "only works with the engine it was made for. Push the whole bundle "
                        "(rtxpack push), or prewarm the engine the tag holds (pull it first); "
                        "nothing was uploaded"
                    )
                if section.digest in have:
                    continue
                offset = -(-end // ALIGNMENT) * ALIGNMENT
                sections.append(replace(section, offset=offset))
                end = offset + section.length
                cache_id = cache.id if cache.id not in ids else new_cache_id()
                ids.add(cache_id)
                have.add(section.digest)
                caches.append(replace(cache, id=cache_id, section=len(sections) - 1))
                added.append(cache_id)
                desc = oci.Descriptor(
                    oci.section_media_type(section.kind, section.codec),
                    _section_sha256(bf, section),
                    section.length,
                )
                uploads.append(_Upload(desc, path=os.fspath(path), offset=section.offset))
            if added:
                # the caches' signatures travel with them (docs/signing.md)
                merged = replace(base, sections=tuple(sections), caches=tuple(caches))
                drop, new_signatures = _signature_changes(client, remote, bf, merged)
                for section in new_signatures:
                    offset = -(-end // ALIGNMENT) * ALIGNMENT
                    sections.append(replace(section, offset=offset))
                    end = offset + section.length
                    desc = oci.Descriptor(
                        oci.section_media_type(section.kind, section.codec),
                        _section_sha256(bf, section),
                        section.length,
                    )
                    uploads.append(_Upload(desc, path=os.fspath(path), offset=section.offset))
        finally:
            bf.close()
        if not added:
            pinned = str(reference.with_digest(remote.digest))
            return PushResult(pinned, remote.digest, 0, 0, 0, 0)
        merged = replace(base, sections=tuple(sections), caches=tuple(caches))
        if drop:  # superseded or stale signatures of the tag
            kept = [i for i in range(len(sections)) if i not in drop]
            sections = [sections[i] for i in kept]
            uploads = [uploads[i] for i in kept]
            index = {old: new for new, old in enumerate(kept)}
            merged = merged.renumbered(index, tuple(sections))
        raw = msgpack.packb(merged.to_dict(), use_bin_type=True)
        # never publish what a pull would refuse: read it back with the reader's rules
        Manifest.from_dict(unpack_manifest(raw, DEFAULT_LIMITS, "the new bundle manifest"))
        check_sections(merged.sections, end, DEFAULT_LIMITS, "the new bundle manifest")
        for i, item in enumerate(uploads):
            notes = _layer_annotations(i, sections[i], merged)
            item.descriptor = replace(item.descriptor, annotations=notes)
        config = oci.Descriptor(
            oci.CONFIG_MEDIA_TYPE,
            sha256_digest(raw),
            len(raw),
            {
                oci.FORMAT_VERSION: format_version_str(FORMAT_VERSION),
                oci.MANIFEST_OFFSET: str(end),
            },
        )
        notes = dict(remote.artifact.annotations)
        notes[oci.RTXPACK_VERSION] = __version__
        return _publish(
            reference, config, raw, uploads, notes, None, insecure, ca_file, tuple(added), client
        )
