"""Choosing the runtime cache a load starts from: a prewarmed cache in the bundle that fits this
machine (``fit``), or the local cache file grown from it (``local``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .._checks.target import Target
from .._exceptions import RtxpackError
from .._format.manifest import CacheInfo, EngineInfo
from .fit import cache_mismatches, could_fit, describe_environment, same_gpu
from .local import environment_key, file_meta, local_cache_path, read_cache_file, remember

if TYPE_CHECKING:
    from .._bundle import Bundle

__all__ = ["CachePlan", "fitting_caches", "plan_runtime_cache"]


#: At most this many "does not fit" notes in a CachePlan (caches for this GPU come first).
MAX_NOTES = 10


@dataclass(frozen=True)
class CachePlan:
    """Which runtime cache a load starts from, and where the cache goes back on close.

    ``blob`` is the bytes to deserialize (None: start cold). ``origin`` says, for people, where
    they came from. ``persist_path`` is where to write the cache after the run (None: nowhere).
    ``notes`` says, when no prewarmed cache of this engine fitted, why each did not (or that a
    fitting one was unreadable).
    ``cache_id`` is the id of the bundle's prewarmed cache when ``blob`` is exactly that cache.
    """

    blob: bytes | None
    origin: str
    persist_path: Path | None
    notes: tuple[str, ...] = ()
    cache_id: str | None = None


def _fitting_order(caches: list[CacheInfo]) -> list[CacheInfo]:
    """Newest first (by created_at, then by position: a later-added cache wins a tie)."""
    indexed = list(enumerate(caches))
    indexed.sort(key=lambda ic: (ic[1].created_at, ic[0]), reverse=True)
    return [c for _, c in indexed]


def fitting_caches(caches: Sequence[CacheInfo], engine: str, target: Target) -> list[CacheInfo]:
    """The prewarmed caches of ``engine`` that fit ``target``, in the order a load tries them
    (newest first); ``pull`` downloads the first."""
    # Cheap test first: a bundle may hold caches for hundreds of environments.
    candidates = [c for c in caches if c.engine == engine and could_fit(c.environment, target)]
    return [c for c in _fitting_order(candidates) if not cache_mismatches(c.environment, target)]


def _why_none_fits(caches: list[CacheInfo], target: Target) -> list[str]:
    """One note per cache (same GPU first, at most MAX_NOTES), saying why it does not fit."""
    same_gpu_first = sorted(caches, key=lambda c: not same_gpu(c.environment, target))
    notes = []
    for c in same_gpu_first[:MAX_NOTES]:
        reasons = cache_mismatches(c.environment, target)
        if reasons:
            notes.append(
                f"prewarmed cache {c.id} ({describe_environment(c.environment)}) does not fit: "
                + "; ".join(reasons)
            )
    if len(caches) > MAX_NOTES:
        notes.append(f"... and {len(caches) - MAX_NOTES} more prewarmed caches that do not fit")
    return notes


def _checks_caches(bundle: Bundle) -> bool:
    """True when ``bundle`` was opened under a trust policy that requires trusted caches."""
    report = getattr(bundle, "trust", None)
    return report is not None and report.policy is not None and report.policy.require == "all"


def plan_runtime_cache(
    bundle: Bundle,
    engine_info: EngineInfo,
    target: Target,
    runtime_cache: str | os.PathLike[str] | None = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
) -> CachePlan:
    """Decide which runtime cache a load of ``engine_info`` on ``target`` starts from.

    - ``None``: no cache at all (nothing read, nothing written).
    - ``"auto"``: the newest prewarmed cache of this engine in the bundle whose environment fits
      ``target`` (``fit.cache_mismatches``); if the local cache file was grown from that same
      prewarmed cache (or no prewarmed cache fits), the local file instead, since it holds
      everything the prewarmed cache held plus what this machine compiled since. The cache is
      persisted to the local cache file (keyed by engine digest and environment).
    - a path: that file (read if it exists and is usable; persisted there).
    """
    if runtime_cache is None:
        return CachePlan(None, "none", None)
    if not (isinstance(runtime_cache, str) and runtime_cache == "auto"):
        path = Path(runtime_cache)
        remember(path, {})
        blob = read_cache_file(path, allow_raw=True)
        return CachePlan(blob, f"cache file {path}" if blob is not None else "none", path)

    engine_digest = bundle.manifest.sections[engine_info.section].digest
    local = local_cache_path(engine_digest, target, cache_dir)
    env_key = environment_key(target)
    notes: list[str] = []
    chosen: CacheInfo | None = None
    chosen_blob: bytes | None = None
    ours = [c for c in bundle.manifest.caches if c.engine == engine_info.name]
    for c in fitting_caches(ours, engine_info.name, target):
        try:
            chosen_blob = bundle.read_cache(c.id)
            chosen = c
            break
        except RtxpackError as exc:
            notes.append(f"prewarmed cache {c.id} is unreadable: {exc}")
    if chosen is None:
        notes += _why_none_fits(_fitting_order(ours), target)
    base = chosen.id if chosen is not None else None
    base_digest = bundle.manifest.sections[chosen.section].digest if chosen is not None else None
    remember(
        local,
        {
            "engine_digest": engine_digest,
            "environment": env_key,
            "based_on": base,
            "based_on_digest": base_digest,
        },
    )

    expect = {"engine_digest": engine_digest, "environment": env_key}
    meta = file_meta(local)
    # Under a policy that checks caches, a local file grown from a prewarmed cache is only as
    # good as that cache: it counts only if it grew from the very bytes of the trusted cache
    # chosen here (an id alone can be reused by another bundle), never from a dropped one.
    strict = _checks_caches(bundle)
    grown_from = meta.get("based_on_digest", None if strict else base_digest)
    grown_from_chosen = (
        chosen is not None and meta.get("based_on") == chosen.id and grown_from == base_digest
    )
    if strict and chosen is None and meta.get("based_on") is not None:
        notes.append(
            f"the local cache file {local} grew from prewarmed cache {meta['based_on']}, "
            "which the trust policy does not vouch for here: not used"
        )
        return CachePlan(None, "none", local, tuple(notes))
    if chosen is not None and not grown_from_chosen:
        env = chosen.environment
        origin = (
            f"prewarmed cache {chosen.id} ({env.gpu_name}, driver {env.driver_version}, {env.os})"
        )
        return CachePlan(chosen_blob, origin, local, tuple(notes), chosen.id)
    blob = read_cache_file(local, expect=expect)
    if blob is not None:
        grown = f" (grown from prewarmed cache {chosen.id})" if chosen is not None else ""
        return CachePlan(blob, f"local cache {local}{grown}", local, tuple(notes))
    if chosen is not None:  # the local file was unusable: fall back to the prewarmed cache
        env = chosen.environment
        origin = (
            f"prewarmed cache {chosen.id} ({env.gpu_name}, driver {env.driver_version}, {env.os})"
        )
        return CachePlan(chosen_blob, origin, local, tuple(notes), chosen.id)
    return CachePlan(None, "none", local, tuple(notes))
