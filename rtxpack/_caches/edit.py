"""Adding runtime caches to a bundle and removing them, by rewriting it safely.

A rewrite copies every kept section verbatim (same codec, same bytes, digest checked on the way,
engines never re-encoded), appends the new caches, and writes a manifest that keeps every other
field as it was (metadata, files, migrations, unknown top-level keys). The new file is written
beside the target and renamed over it only when complete (``container.rewriting``), so an
interrupted or failed edit leaves the original bundle untouched and no partial file behind.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from .._constants import MAX_CACHE_BYTES
from .._exceptions import InvalidArgumentError
from .._format import container
from .._format.manifest import CC_RE, DEFAULT_LIMITS, OS_NAMES, CacheInfo, Environment
from .._text import shorten, utc_now, version_tuple
from .fit import same_environment

__all__ = ["NewCache", "add_cache", "check_environment", "list_caches", "remove_cache"]


@dataclass(frozen=True)
class NewCache:
    """A cache to add in a rewrite: its bytes, engine, environment and warmed shapes."""

    blob: bytes | bytearray | memoryview
    engine: str | None
    environment: Environment
    shapes: tuple[Mapping[str, tuple[int, ...]], ...] = ()


def check_environment(env: Environment) -> Environment:
    """Raise InvalidArgumentError unless every field of ``env`` is well formed."""
    if not isinstance(env, Environment):
        raise InvalidArgumentError(
            f"environment: expected an rtxpack.Environment, got {type(env).__name__}"
        )
    for field, label in (("trt_version", "TensorRT-RTX version"), ("driver_version", "driver")):
        value = getattr(env, field)
        try:
            version_tuple(value)
        except InvalidArgumentError:
            raise InvalidArgumentError(
                f"{label} {shorten(value)!r}: expected numbers separated by dots, e.g. "
                f"{'1.7.1.116' if field == 'trt_version' else '580.65'}"
            ) from None
    if len(version_tuple(env.trt_version)) < 3:
        raise InvalidArgumentError(
            f"TensorRT-RTX version {env.trt_version!r}: give at least major.minor.patch "
            "(caches are tied to the exact version), e.g. 1.7.1.116"
        )
    if not isinstance(env.compute_capability, str) or not CC_RE.match(env.compute_capability):
        raise InvalidArgumentError(
            f"compute capability {env.compute_capability!r}: expected X.Y, e.g. 8.9"
        )
    if env.os not in OS_NAMES:
        raise InvalidArgumentError(f"os {env.os!r}: expected one of {', '.join(OS_NAMES)}")
    name = env.gpu_name
    if not isinstance(name, str) or not name.strip() or len(name) > 256 or not name.isprintable():
        raise InvalidArgumentError(
            f"GPU name {name!r}: expected the GPU's name as the driver reports it, "
            "e.g. 'NVIDIA GeForce RTX 4090'"
        )
    return env


def _check_blob(blob: bytes | bytearray | memoryview) -> None:
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"cache: expected bytes, got {type(blob).__name__}")
    size = len(memoryview(blob).cast("B"))
    if size == 0:
        raise InvalidArgumentError(
            "cache: it is empty; give the runtime-cache file TensorRT-RTX wrote"
        )
    if size > MAX_CACHE_BYTES:
        raise InvalidArgumentError(
            f"cache: it is {size} bytes, above the limit of {MAX_CACHE_BYTES} bytes (4 GiB); "
            "this is not a runtime cache"
        )


def _checked_shapes(shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, ...]]:
    """Warmed shapes as the manifest stores them: input -> dims (0 <= d <= 2^40, rank <= 16)."""
    if not isinstance(shapes, Mapping):
        raise InvalidArgumentError(f"shapes: expected a map of input name to dims, got {shapes!r}")
    lim = DEFAULT_LIMITS
    out: dict[str, tuple[int, ...]] = {}
    for name, dims in shapes.items():
        try:
            dims_t = tuple(operator.index(d) for d in dims)
        except TypeError:
            dims_t = ()
        if (
            not isinstance(name, str)
            or not dims_t
            or len(dims_t) > lim.max_rank
            or any(not 0 <= d <= lim.max_dim for d in dims_t)
        ):
            raise InvalidArgumentError(
                f"shapes[{name!r}] = {dims!r}: expected 1 to {lim.max_rank} whole dimensions "
                f"between 0 and {lim.max_dim}"
            )
        out[name] = dims_t
    return out


def list_caches(bundle_path: str | os.PathLike[str]) -> tuple[CacheInfo, ...]:
    """The runtime caches a bundle holds (reads only its manifest)."""
    bf = container.open_bundle_file(bundle_path)
    try:
        return bf.manifest.caches
    finally:
        bf.close()


def add_cache(
    bundle_path: str | os.PathLike[str],
    cache_blob: bytes | bytearray | memoryview,
    environment: Environment,
    *,
    engine: str | None = None,
    shapes: Sequence[Mapping[str, Sequence[int]]] = (),
    output: str | os.PathLike[str] | None = None,
) -> CacheInfo:
    """Attach a runtime cache made in ``environment`` to ``engine`` (the only one if None).

    A cache already in the bundle for the same engine and the same environment is replaced.
    Writes ``output`` (default: the bundle itself, replaced atomically). Returns the new entry.
    """
    norm_shapes = tuple(_checked_shapes(s) for s in shapes)
    added = rewrite(
        bundle_path,
        output,
        add=[NewCache(cache_blob, engine, environment, norm_shapes)],
    )
    return added[0]


def remove_cache(
    bundle_path: str | os.PathLike[str],
    cache_id: str,
    *,
    output: str | os.PathLike[str] | None = None,
) -> CacheInfo:
    """Drop the cache ``cache_id``; writes ``output`` (default: in place).

    Returns the entry that was removed.
    """
    caches = list_caches(bundle_path)
    for c in caches:
        if c.id == cache_id:
            rewrite(bundle_path, output, drop=[cache_id])
            return c
    have = ", ".join(c.id for c in caches) or "none"
    raise InvalidArgumentError(
        f"no runtime cache with id {cache_id!r} in {bundle_path} (it has: {have}); "
        "see `rtxpack cache list`"
    )


def rewrite(
    bundle_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    drop: Iterable[str] = (),
    add: Sequence[NewCache] = (),
) -> list[CacheInfo]:
    """Write the bundle without the caches in ``drop`` and with the caches in ``add``.

    Each added cache also replaces any cache of the same engine and environment.
    """
    src_path = Path(bundle_path)
    dst_path = Path(output) if output is not None else src_path
    for new in add:
        _check_blob(new.blob)
        check_environment(new.environment)
    drop_ids = set(drop)
    with container.rewriting(src_path, dst_path) as (src, writer):
        manifest = src.manifest
        resolved = [(manifest.engine(new.engine).name, new) for new in add]
        for name, new in resolved:
            for c in manifest.caches:
                if c.engine == name and same_environment(c.environment, new.environment):
                    drop_ids.add(c.id)
        known = {c.id for c in manifest.caches}
        missing = drop_ids - known
        if missing:
            raise InvalidArgumentError(f"no runtime cache with id {sorted(missing)[0]!r}")
        dropped = {c.section for c in manifest.caches if c.id in drop_ids}
        index = writer.copy_all(src, skip=dropped)
        taken = set(known)
        added: list[CacheInfo] = []
        for name, new in resolved:
            cache_id = container.new_cache_id()
            while cache_id in taken:
                cache_id = container.new_cache_id()
            taken.add(cache_id)
            idx = writer.add_bytes("runtime_cache", name, new.blob, "zstd")
            added.append(
                CacheInfo(
                    id=cache_id,
                    engine=name,
                    section=idx,
                    environment=new.environment,
                    created_at=utc_now(),
                    shapes=tuple(new.shapes),
                )
            )
        out = manifest.renumbered(index, tuple(writer.sections))
        writer.finish(replace(out, caches=out.caches + tuple(added)))
    return added
