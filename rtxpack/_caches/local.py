"""The per-user local cache: runtime caches that survive restarts, one file per engine and machine.

A TensorRT-RTX runtime cache keeps the kernels the runtime JIT-compiled on one GPU; ``fit`` says
where one loads. Files live under ``<cache root>/runtime-caches`` (``_constants.cache_root``).
docs/caches.md is the prose version of this package.

Local cache files are written only by rename (temporary file in the same folder, flush, fsync,
``os.replace``) under a lock file beside them, so a reader sees either the old or the new file,
never a torn one. Each file starts with a small header of our own (magic, lengths, the digest of
the payload, and what it was made for), so a corrupt, truncated or foreign file is detected,
ignored with a warning and replaced on the next write. Nothing here raises on a bad cache file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import blake3

from .._checks.target import Target
from .._constants import LOCK_TIMEOUT_S, MAX_CACHE_BYTES, RUNTIME_CACHES_DIR, cache_root
from .._exceptions import InvalidArgumentError, RuntimeCacheWarning
from .fit import recorded_environment_fits

__all__ = [
    "MAX_CACHE_BYTES",
    "environment_key",
    "file_meta",
    "local_cache_path",
    "pack_cache_file",
    "persist_runtime_cache",
    "read_cache_file",
    "remember",
]

# Local cache file: header, then `meta_len` bytes of JSON (what it was made for), then the payload.
#   magic (8) | version u16 | reserved u16 | meta_len u32 | payload_len u64 | blake3(payload) (32)
_MAGIC = b"\x89RTXRTC\n"
_HEADER = struct.Struct("<8sHHIQ32s")
_FILE_VERSION = 1
_MAX_META = 64 * 1024


# ---------------------------------------------------------------------------------------------
# Where local cache files live


def environment_key(target: Target) -> dict[str, Any]:
    key: dict[str, Any] = {
        "trt_version": target.trt_version or "",
        "gpu_name": (target.gpu_name or "").strip(),
        "compute_capability": target.compute_capability or "",
        "driver_version": target.driver_version or "",
        "os": target.os or "",
    }
    if target.compute_in_graphics:  # only when on: the files of ordinary contexts keep their names
        key["compute_in_graphics"] = True
    return key


def local_cache_path(
    engine_digest: str, target: Target, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The local cache file of one engine (by its section digest) on one machine environment.

    The name hashes the engine digest and the environment (TensorRT-RTX version, GPU name,
    compute capability, driver major version, OS), so different bundles and GPUs never share a
    file; the exact environment is in the file's header and checked when it is read.
    """
    engine_part = engine_digest.partition(":")[2][:24] or "unknown"
    key = environment_key(target)
    # By driver *major*: a cache stays valid across driver updates within a major (the reader
    # checks same-or-newer), so a driver update keeps using, not strands, the file.
    key["driver_version"] = key["driver_version"].split(".")[0]
    env_text = json.dumps(key, sort_keys=True)
    env_part = hashlib.sha256(env_text.encode()).hexdigest()[:16]
    return cache_root(cache_dir) / RUNTIME_CACHES_DIR / f"{engine_part}-{env_part}.rtxcache"


# What plan_runtime_cache knows about a persist path (engine digest, environment, prewarmed
# cache it started from), so persist_runtime_cache(path, blob) can record it in the header.
_KNOWN: dict[str, dict[str, Any]] = {}
_KNOWN_LOCK = threading.Lock()


def remember(path: Path, meta: dict[str, Any]) -> None:
    with _KNOWN_LOCK:
        if len(_KNOWN) > 4096:
            _KNOWN.clear()
        _KNOWN[str(path)] = meta


# ---------------------------------------------------------------------------------------------
# The file format of local cache files


def pack_cache_file(
    blob: bytes | bytearray | memoryview, meta: dict[str, Any] | None = None
) -> bytes:
    """A local cache file's bytes: our header, ``meta`` as JSON, then ``blob``."""
    meta_bytes = json.dumps(meta or {}, sort_keys=True).encode()
    header = _HEADER.pack(
        _MAGIC, _FILE_VERSION, 0, len(meta_bytes), len(blob), blake3.blake3(blob).digest()
    )
    return header + meta_bytes + bytes(blob)


def _unpack(data: bytes, where: str) -> tuple[dict[str, Any], bytes]:
    """Parse a framed cache file; raises ValueError saying what is wrong."""
    if len(data) < _HEADER.size:
        raise ValueError(f"{where} is truncated ({len(data)} bytes, shorter than its header)")
    _magic, version, _, meta_len, payload_len, payload_digest = _HEADER.unpack_from(data)
    if version != _FILE_VERSION:
        raise ValueError(f"{where} has cache file version {version}, expected {_FILE_VERSION}")
    if meta_len > _MAX_META or _HEADER.size + meta_len + payload_len != len(data):
        raise ValueError(
            f"{where} is truncated or has extra bytes: its header promises "
            f"{_HEADER.size + meta_len + payload_len} bytes, the file has {len(data)}"
        )
    meta_end = _HEADER.size + meta_len
    payload = data[meta_end:]
    if blake3.blake3(payload).digest() != payload_digest:
        raise ValueError(f"{where} is corrupt: its payload does not match the digest in its header")
    try:
        meta = json.loads(data[_HEADER.size : meta_end] or b"{}")
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested beyond the stack
        meta = None
    if not isinstance(meta, dict):
        raise ValueError(f"{where} has an unreadable header (not a JSON object)")
    return meta, payload


def read_cache_file(
    path: str | os.PathLike[str],
    *,
    expect: dict[str, Any] | None = None,
    allow_raw: bool = False,
) -> bytes | None:
    """The runtime cache in ``path``, or None (missing, or unusable: then a warning says why).

    A file written by rtxpack is checked (header, size, payload digest, and, when ``expect`` is
    given, that it was made for that engine and environment). With ``allow_raw``, a file without
    rtxpack's header is returned as is (for caches written by other tools; TensorRT-RTX checks
    them when it loads them). Never raises for a bad file; at most ``MAX_CACHE_BYTES`` are read.
    """
    p = Path(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CACHE_BYTES + _HEADER.size + _MAX_META:
                raise ValueError(
                    f"{p} is {size} bytes, above rtxpack's limit of {MAX_CACHE_BYTES} for a cache"
                )
            data = f.read(size + 1)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        _warn(f"runtime cache {p} ignored: {exc}; the run starts cold and rewrites it")
        return None
    if not data.startswith(_MAGIC):
        if allow_raw and data:
            return data
        _warn(
            f"runtime cache {p} ignored: it is not an rtxpack cache file (found {data[:8]!r}); "
            "the run starts cold and the file is replaced on the next write"
        )
        return None
    try:
        meta, payload = _unpack(data, str(p))
        for key, want in (expect or {}).items():
            if key == "environment" and _fits(meta.get(key), want):
                continue
            if key in meta and meta[key] != want:
                raise ValueError(
                    f"{p} was made for a different {key.replace('_', ' ')} "
                    f"({meta[key]!r}, expected {want!r})"
                )
    except ValueError as exc:
        _warn(f"runtime cache ignored: {exc}; the run starts cold and the file is replaced")
        return None
    return payload


def file_meta(path: Path) -> dict[str, Any]:
    """The header metadata of a framed cache file ({} when missing or unreadable)."""
    try:
        with open(path, "rb") as f:
            head = f.read(_HEADER.size)
            if len(head) < _HEADER.size or not head.startswith(_MAGIC):
                return {}
            meta_len = _HEADER.unpack(head)[3]
            if meta_len > _MAX_META:
                return {}
            meta = json.loads(f.read(meta_len) or b"{}")
    except (OSError, ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeCacheWarning, stacklevel=3)


# ---------------------------------------------------------------------------------------------
# Writing


def persist_runtime_cache(
    path: str | os.PathLike[str],
    blob: bytes | bytearray | memoryview,
    *,
    meta: dict[str, Any] | None = None,
) -> bool:
    """Write ``blob`` to the cache file ``path``; True when written. Never raises (it warns).

    Atomic: a temporary file in the same folder is written, flushed, fsynced and renamed over
    ``path``, all under ``path + ".lock"`` (filelock), so readers never see a torn file and
    concurrent writers never interleave. Temporary files left by a writer that was killed are
    removed by the next writer. ``meta`` (default: what ``plan_runtime_cache`` recorded for this
    path) goes into the file's header.
    """
    p = Path(path)
    tmp: str | None = None
    try:
        size = len(memoryview(blob))
        if size == 0 or size > MAX_CACHE_BYTES:
            _warn(
                f"runtime cache not written to {p}: it is {size} bytes, "
                f"expected 1 to {MAX_CACHE_BYTES}"
            )
            return False
        if meta is None:
            with _KNOWN_LOCK:
                meta = _KNOWN.get(str(p), {})
        data = pack_cache_file(blob, meta)
        p.parent.mkdir(parents=True, exist_ok=True)
        import filelock

        with filelock.FileLock(str(p) + ".lock", timeout=LOCK_TIMEOUT_S):
            _remove_stale_temps(p)
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
            tmp = None
        return True
    except Exception as exc:  # a cache write must never break the caller
        _warn(f"runtime cache not written to {p}: {type(exc).__name__}: {exc}")
        return False
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _remove_stale_temps(path: Path) -> None:
    """Remove temporary files of writers that died mid-write (we hold the lock: none is live)."""
    with contextlib.suppress(OSError):
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()


def _fits(made: Any, want: Any) -> bool:
    """The environment recorded in a file (``made``) fits the machine ``want`` describes (an
    ``environment_key``); the rule is ``fit``'s."""
    if not isinstance(want, dict):
        return False
    try:
        fields: dict[str, Any] = {k: (v or None) for k, v in want.items()}
        target = Target(**fields)
    except (InvalidArgumentError, TypeError):
        return False
    return recorded_environment_fits(made, target)
