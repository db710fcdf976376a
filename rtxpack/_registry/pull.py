"""``pull``: a bundle from a registry into a normal local bundle, for one target.

The bundle manifest (the artifact's config) is read first; the compatibility rules (``_checks``)
pick the engines the target can run, the cache-fit rule (``_caches``) the prewarmed cache each
engine loads there, and only those blobs are downloaded into the content store (sha256 checked
as they stream), one after the other, each copied by the bundle writer into the new bundle as
soon as it is stored (its section digest checked as it is copied). A blob the store already
held is checked the same way; one that fails (the store does not fsync, so a crash can damage
it) is deleted and downloaded again. The bundle is a temporary
file renamed into place at the end: nothing partial is left at the destination.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import _constants
from .._checks.check import check_manifest
from .._checks.report import CompatibilityReport
from .._checks.target import Target
from .._exceptions import (
    CompatibilityError,
    DamagedBundleError,
    IntegrityError,
    InvalidArgumentError,
    SignatureDroppedWarning,
)
from .._format.container import BundleWriter, atomic_output
from .._format.manifest import Manifest
from .._signing.sign import SIGNS_NOTHING
from .client import RegistryClient
from .reference import parse_reference
from .remote import Remote, fetch_remote
from .store import ContentStore

__all__ = ["PullResult", "pull", "pull_for_load"]

#: Section kinds a pull selects on; every other kind (user files, signatures, kinds a newer
#: rtxpack adds) is always pulled, so nothing a publisher attached is silently dropped.
SELECTED_KINDS = frozenset({"engine", "runtime_cache", "source", "samples"})


@dataclass(frozen=True)
class PullResult:
    """What a pull wrote and moved. ``reference`` pins the manifest it read."""

    path: Path
    reference: str
    digest: str
    engines: tuple[str, ...]
    caches: tuple[str, ...]
    downloaded: int
    downloaded_bytes: int
    reused: int
    report: CompatibilityReport | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "reference": self.reference,
            "digest": self.digest,
            "engines": list(self.engines),
            "caches": list(self.caches),
            "downloaded": self.downloaded,
            "downloaded_bytes": self.downloaded_bytes,
            "reused": self.reused,
        }


def _why(report: CompatibilityReport) -> str:
    lines = [f"{v.engine}: {'; '.join(v.reasons) or v.status}" for v in report.engines]
    return " | ".join(lines)[:2000]


def _choose_engines(
    remote: Remote,
    target: Target | None,
    engines: Sequence[str] | str | None,
) -> tuple[list[str], Target, CompatibilityReport | None]:
    manifest = remote.manifest
    names = [e.name for e in manifest.engines]
    if isinstance(engines, str) and engines != "all":
        engines = [engines]
    if target is None:
        from .._checks import machine

        here = machine.local_target()
        missing = machine.missing_locally(here)
    else:
        if not isinstance(target, Target):
            raise InvalidArgumentError(
                f"target: expected an rtxpack.Target or None, got {type(target).__name__}"
            )
        here, missing = target, frozenset()
    if engines == "all":
        return names, here, None
    if engines is not None:
        unknown = [n for n in engines if n not in names]
        if unknown:
            raise InvalidArgumentError(
                f"{remote.reference} has no engine named {', '.join(map(repr, unknown))} "
                f"(it has: {', '.join(names) or 'none'})"
            )
        return list(dict.fromkeys(engines)), here, None
    report = check_manifest(
        manifest, remote.version, here, missing=missing, where=str(remote.reference)
    )
    chosen = [v.engine for v in report.engines if v.loads and v.engine is not None]
    if not chosen:
        raise CompatibilityError(
            f"no engine of {remote.reference} can run on the target ({_why(report)}); pull "
            "another tag, describe the target (trt_version, compute_capability, driver, os), or "
            "pull every engine with engines='all' (CLI: --all-engines)",
            report,
        )
    return chosen, here, report


def _selection(
    manifest: Manifest,
    chosen: list[str],
    here: Target,
    *,
    source: bool,
    samples: bool,
    caches: bool,
) -> tuple[Manifest, list[int]]:
    """The manifest of the bundle to write (before renumbering) and the section indices it
    keeps, in their original order."""
    from .._caches.selection import fitting_caches

    keep: set[int] = set()
    engines = []
    for info in manifest.engines:
        if info.name not in chosen:
            continue
        keep.add(info.section)
        if source and info.source is not None:
            keep.add(info.source)
        if samples and info.samples is not None:
            keep.add(info.samples)
        engines.append(
            replace(
                info,
                source=info.source if source else None,
                samples=info.samples if samples else None,
            )
        )
    kept_caches = []
    if caches:
        for name in chosen:
            fitting = fitting_caches(manifest.caches, name, here)
            if fitting:
                kept_caches.append(fitting[0])
                keep.add(fitting[0].section)
    for i, section in enumerate(manifest.sections):
        if section.kind not in SELECTED_KINDS:
            keep.add(i)
    trimmed = replace(manifest, engines=tuple(engines), caches=tuple(kept_caches))
    return trimmed, sorted(keep)


def default_pull_path(digest: str, sections: list[str]) -> Path:
    """Where ``pull`` without a path (and ``load("oci://...")``) keeps its bundle: one file per
    manifest and selection, under the content store."""
    selection = hashlib.sha256("\n".join(sections).encode()).hexdigest()[:16]
    folder = _constants.cache_root() / _constants.OCI_STORE_DIR / "bundles"
    return folder / f"{digest.split(':', 1)[1][:32]}-{selection}.rtxpack"


def pull(
    ref: str,
    path: str | os.PathLike[str] | None = None,
    *,
    target: Target | None = None,
    engines: Sequence[str] | str | None = None,
    source: bool = False,
    samples: bool = False,
    caches: bool = True,
    insecure: bool = False,
    ca_file: str | None = None,
) -> PullResult:
    """Pull the bundle at ``ref`` into a local bundle at ``path`` for ``target``.

    ``target`` None means this machine. ``engines`` None picks the engines the target can run
    (``CompatibilityError`` if none); a name or list of names, or ``"all"``, picks those
    instead. For each engine the newest prewarmed cache that fits the target is pulled (none
    with ``caches=False``); ``source`` and ``samples`` add the ONNX source and sample tensors.
    User files and section kinds rtxpack does not select on are always pulled. ``path`` None
    writes under the content store (see ``PullResult.path``).
    """
    reference = parse_reference(ref)
    with RegistryClient.for_reference(reference, insecure=insecure, ca_file=ca_file) as client:
        store = ContentStore()
        remote = fetch_remote(client, reference, store)
        return _pull_remote(client, store, remote, path, target, engines, source, samples, caches)


def _pull_remote(
    client: RegistryClient,
    store: ContentStore,
    remote: Remote,
    path: str | os.PathLike[str] | None,
    target: Target | None,
    engines: Sequence[str] | str | None,
    source: bool,
    samples: bool,
    caches: bool,
) -> PullResult:
    reference = remote.reference
    chosen, here, report = _choose_engines(remote, target, engines)
    trimmed, keep = _selection(
        remote.manifest, chosen, here, source=source, samples=samples, caches=caches
    )
    layers = remote.artifact.layers
    destination = (
        Path(path)
        if path is not None
        else default_pull_path(remote.digest, [layers[i].digest for i in keep])
    )
    if path is None:
        destination.parent.mkdir(parents=True, exist_ok=True)
    downloaded = downloaded_bytes = reused = 0
    if path is None and destination.exists():
        os.utime(destination)  # pulled before, same manifest and selection; prune ages by this
        reused = len(keep)
    else:
        with atomic_output(destination) as out:
            writer = BundleWriter(out)
            index = {}
            for i in keep:  # one blob open at a time, whatever the section count
                layer = layers[i]
                section = remote.manifest.sections[i]
                handle, fresh = store.fetch(client, reference.repository, layer.digest, layer.size)
                try:
                    with handle:
                        index[i] = writer.copy_raw(section, handle, str(reference))
                except (IntegrityError, DamagedBundleError):
                    # A reused blob the store holds damaged (it does not fsync: a crash can
                    # leave zeros) is a cache miss: download it again. A fresh blob, or an
                    # intact one whose section digest still fails, is the artifact's fault.
                    if fresh or not store.discard_if_damaged(layer.digest):
                        raise
                    handle, fresh = store.fetch(
                        client, reference.repository, layer.digest, layer.size
                    )
                    with handle:
                        index[i] = writer.copy_raw(section, handle, str(reference))
                if fresh:
                    downloaded += 1
                    downloaded_bytes += layer.size
                else:
                    reused += 1
            with warnings.catch_warnings():
                # A device pull leaves out by design what some signatures cover (another GPU's
                # cache, another engine): such a signature has nothing to vouch for here, and
                # "sign the new bundle again" would be wrong advice. Any other drop still warns.
                warnings.filterwarnings(
                    "ignore",
                    message=f".*{re.escape(SIGNS_NOTHING)}",
                    category=SignatureDroppedWarning,
                )
                writer.finish(trimmed.renumbered(index, tuple(writer.sections)))
    return PullResult(
        destination,
        str(reference.with_digest(remote.digest)),
        remote.digest,
        tuple(chosen),
        tuple(c.id for c in trimmed.caches),
        downloaded,
        downloaded_bytes,
        reused,
        report,
    )


def pull_for_load(ref: str, *, engine: str | None, with_source: bool) -> Path:
    """The local bundle ``load("oci://...")`` opens: pulled for this machine into the content
    store's bundles folder (reused when the same selection was pulled before). When no engine
    runs here and the source may be used (fallback, rebuild), the engines come with their source
    so the loader can fall back or rebuild and say why."""
    engines = [engine] if engine is not None else None
    reference = parse_reference(ref)
    with RegistryClient.for_reference(reference) as client:
        store = ContentStore()
        remote = fetch_remote(client, reference, store)
        try:
            result = _pull_remote(
                client, store, remote, None, None, engines, with_source, False, True
            )
        except CompatibilityError:
            if not with_source:
                raise
            result = _pull_remote(
                client, store, remote, None, None, engines or "all", True, False, True
            )
    return result.path
