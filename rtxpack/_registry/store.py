"""The local content store: registry blobs by digest, shared by every pull on this machine.

Layout under the store folder (``oci`` in rtxpack's cache root, see ``_constants``)::

    blobs/sha256/<hex>        complete blobs whose sha256 was checked while they streamed in
    incoming/<hex>.partial    an interrupted download, resumed with a Range request next time
    locks/<hex>.lock          one lock file per blob (filelock); prune removes it with the blob
    bundles/<...>.rtxpack     bundles written by ``pull`` without a path and ``load("oci://...")``

A blob is downloaded under its lock into ``incoming/`` and renamed into ``blobs/`` only once its
size and digest match, so a reader never sees a torn blob and two pulls of the same blob (threads
or processes) download it once. ``fetch`` hands back an open file taken under the lock, so
``prune`` (which takes the same lock and skips locked blobs) cannot remove a blob between its
download and its use. Using a blob refreshes its modification time, which ``prune`` ages by.

The store is a cache, not the durable copy: blobs are not fsync'd (flushing a 1 GiB engine can cost
seconds, more than its download). A crash can leave a stored blob short or zero-filled, so nothing
trusts a stored blob unchecked: ``fetch`` downloads again a blob of the wrong size, ``read_small``
checks the digest of what it reads (``put`` replaces a damaged copy), and a pull whose copy of a
reused blob fails its section digest asks ``discard_if_damaged`` and downloads the blob again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import filelock

from .. import _constants
from .._exceptions import (
    BlobIntegrityError,
    InvalidArgumentError,
    OutputError,
    RegistryProtocolError,
)
from .client import RegistryClient

__all__ = ["ContentStore", "PruneResult", "StoreReport", "default_store_dir"]

_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
_PULLED = re.compile(r"[a-f0-9]{32}-[a-f0-9]{16}\.rtxpack")


def default_store_dir() -> Path:
    """The ``oci`` folder of rtxpack's cache root (``$RTXPACK_CACHE_DIR``, else the platform's
    user cache folder)."""
    return _constants.cache_root() / _constants.OCI_STORE_DIR


@dataclass(frozen=True)
class StoreReport:
    """What the store holds: complete blobs and their bytes, and interrupted downloads."""

    root: Path
    blobs: int
    blob_bytes: int
    partial_files: int
    partial_bytes: int
    bundles: int = 0
    bundle_bytes: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "blobs": self.blobs,
            "blob_bytes": self.blob_bytes,
            "partial_files": self.partial_files,
            "partial_bytes": self.partial_bytes,
            "bundles": self.bundles,
            "bundle_bytes": self.bundle_bytes,
        }


@dataclass(frozen=True)
class PruneResult:
    removed: int
    removed_bytes: int
    skipped_in_use: int

    def to_dict(self) -> dict[str, int]:
        return {
            "removed": self.removed,
            "removed_bytes": self.removed_bytes,
            "skipped_in_use": self.skipped_in_use,
        }


def _hex(digest: str) -> str:
    match = _DIGEST.fullmatch(digest)
    if not match:
        raise RegistryProtocolError(
            f"{digest!r} is not a sha256 digest; the content store keeps sha256 blobs only"
        )
    return match.group(1)


class ContentStore:
    """Blobs by digest in one folder; safe for concurrent use by threads and processes."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_dir()

    def _dirs(self) -> tuple[Path, Path, Path]:
        dirs = (self.root / "blobs" / "sha256", self.root / "incoming", self.root / "locks")
        try:
            for d in dirs:
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"cannot create the content store {self.root}: {exc.strerror}; set "
                f"{_constants.CACHE_DIR_ENV} to a writable folder"
            ) from None
        return dirs

    def path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def _lock_path(self, hex_digest: str) -> Path:
        return self.root / "locks" / f"{hex_digest}.lock"

    def _lock(self, digest: str, timeout: float) -> filelock.BaseFileLock:
        return filelock.FileLock(self._lock_path(_hex(digest)), timeout=timeout)

    def _drop_lock_file(self, hex_digest: str) -> None:
        """Remove a lock file nothing in the store needs any more, only while holding it: a
        process that opened it before and locks it after sees it unlinked and opens the path
        again (filelock 3.20.4+ checks), so two processes never hold the lock at once."""
        if self.path(f"sha256:{hex_digest}").exists() or any(
            (self.root / "incoming").glob(f"{hex_digest}.*")
        ):
            return  # a blob or a download still uses it
        with contextlib.suppress(OSError):
            self._lock_path(hex_digest).unlink()

    def has(self, digest: str, size: int) -> bool:
        try:
            return self.path(digest).stat().st_size == size
        except OSError:
            return False

    def _open_existing(self, digest: str, size: int) -> BinaryIO | None:
        path = self.path(digest)
        try:
            handle = open(path, "rb")  # noqa: SIM115 -- handed to the caller
        except OSError:
            return None
        if os.fstat(handle.fileno()).st_size != size:
            handle.close()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return handle

    def put(self, digest: str, data: bytes) -> None:
        """Keep small content (manifests) that was already checked against ``digest``."""
        self._dirs()
        if hashlib.sha256(data).hexdigest() != _hex(digest):
            raise BlobIntegrityError(f"content given to the store as {digest} has another digest")
        with self._lock(digest, _constants.STORE_LOCK_TIMEOUT_S):
            if self.read_small(digest, len(data)) == data:
                return  # kept and intact (a damaged copy is replaced)
            tmp = self.root / "incoming" / f"{_hex(digest)}.{os.getpid()}.tmp"
            try:
                with open(tmp, "wb") as out:
                    out.write(data)
                os.replace(tmp, self.path(digest))
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise OutputError(f"cannot write to the content store {self.root}: {exc}") from None

    def read_small(self, digest: str, limit: int) -> bytes | None:
        """Stored content of at most ``limit`` bytes, checked against its digest (None if absent
        or damaged)."""
        try:
            with open(self.path(digest), "rb") as handle:
                data = handle.read(limit + 1)
        except OSError:
            return None
        if len(data) > limit or hashlib.sha256(data).hexdigest() != _hex(digest):
            return None
        return data

    def fetch(
        self, client: RegistryClient, repository: str, digest: str, size: int
    ) -> tuple[BinaryIO, bool]:
        """An open file of blob ``digest`` (``size`` bytes), downloaded if the store lacks it;
        the flag says whether it was downloaded (partly or fully) now. A stored blob is only
        checked for its size here: the caller checks its content as it reads it (see
        ``discard_if_damaged``)."""
        self._dirs()
        handle = self._open_existing(digest, size)
        if handle is not None:
            return handle, False
        with self._lock(digest, _constants.STORE_LOCK_TIMEOUT_S):
            handle = self._open_existing(digest, size)
            if handle is not None:
                return handle, False
            if not self._download(client, repository, digest, size, resume=True):
                # A resumed download whose kept part was damaged (the store does not fsync, so a
                # crash can leave zeros) fails its digest: once more from the first byte.
                self._download(client, repository, digest, size, resume=False)
            final = self.path(digest)
            os.replace(self.root / "incoming" / f"{_hex(digest)}.partial", final)
            return open(final, "rb"), True

    def _download(
        self, client: RegistryClient, repository: str, digest: str, size: int, resume: bool
    ) -> bool:
        """Download blob ``digest`` into its ``.partial`` file, resuming what an interrupted
        download left there if ``resume``. False if a resumed download failed its digest (the
        ``.partial`` file is then gone); a download from the first byte raises instead."""
        partial = self.root / "incoming" / f"{_hex(digest)}.partial"
        hasher = hashlib.sha256()
        try:
            out = open(partial, "a+b")  # noqa: SIM115 -- closed below
        except OSError as exc:
            raise OutputError(f"cannot write to the content store {self.root}: {exc}") from None
        written = 0
        try:
            out.seek(0)
            if not resume or os.fstat(out.fileno()).st_size > size:
                out.truncate(0)
            else:
                while chunk := out.read(_constants.REGISTRY_CHUNK_BYTES):
                    hasher.update(chunk)
                    written += len(chunk)
            out.seek(0, os.SEEK_END)
            client.fetch_blob(repository, digest, size, out, written=written, hasher=hasher)
        except BlobIntegrityError:
            out.close()
            partial.unlink(missing_ok=True)
            if written:
                return False
            raise
        except OSError as exc:
            out.close()
            partial.unlink(missing_ok=True)
            raise OutputError(f"cannot write to the content store {self.root}: {exc}") from None
        except BaseException:
            # keep what arrived for a resumed download; an empty file is no use
            out.close()
            with contextlib.suppress(OSError):
                if partial.stat().st_size == 0:
                    partial.unlink()
            raise
        finally:
            out.close()  # no fsync: see the module docstring
        return True

    def discard_if_damaged(self, digest: str) -> bool:
        """Check the stored blob ``digest`` against its sha256 and delete it if it does not match
        (a cache miss: the next ``fetch`` downloads it again). True if it was deleted or is gone;
        False if it is intact (then whatever failed is not the store's copy)."""
        with self._lock(digest, _constants.STORE_LOCK_TIMEOUT_S):
            path = self.path(digest)
            hasher = hashlib.sha256()
            try:
                with open(path, "rb") as handle:
                    while chunk := handle.read(_constants.REGISTRY_CHUNK_BYTES):
                        hasher.update(chunk)
            except FileNotFoundError:
                return True
            except OSError as exc:
                raise OutputError(f"cannot read the content store {self.root}: {exc}") from None
            if hasher.hexdigest() == _hex(digest):
                return False
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:
                raise OutputError(
                    f"the stored blob {path} is damaged and cannot be removed: {exc}; remove it "
                    "or run 'rtxpack store prune'"
                ) from None
            return True

    def report(self) -> StoreReport:
        blobs = blob_bytes = partial_files = partial_bytes = 0
        for path in self._files("blobs/sha256"):
            blobs += 1
            blob_bytes += path.stat().st_size
        for path in self._files("incoming"):
            partial_files += 1
            partial_bytes += path.stat().st_size
        bundles = bundle_bytes = 0
        for path in self._files("bundles"):
            bundles += 1
            bundle_bytes += path.stat().st_size
        return StoreReport(
            self.root, blobs, blob_bytes, partial_files, partial_bytes, bundles, bundle_bytes
        )

    def _files(self, sub: str) -> list[Path]:
        folder = self.root / sub
        try:
            return [p for p in folder.iterdir() if p.is_file() and not p.is_symlink()]
        except OSError:
            return []

    def prune(self, *, older_than_s: float = 0.0) -> PruneResult:
        """Remove blobs, interrupted downloads and pulled bundles not used for ``older_than_s``
        seconds (0: all); blobs another pull holds the lock of are skipped. The lock files of
        removed blobs go too (each while prune holds it; a lock held elsewhere stays)."""
        if not (isinstance(older_than_s, (int, float)) and 0 <= older_than_s < float("inf")):
            raise InvalidArgumentError(
                f"older_than_s {older_than_s!r}: expected a number of seconds, 0 or more"
            )
        now = time.time()
        removed = removed_bytes = skipped = 0
        for path in self._files("blobs/sha256") + self._files("incoming"):
            name = path.name.split(".")[0]
            if not re.fullmatch(r"[a-f0-9]{64}", name):
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if older_than_s and now - stat.st_mtime < older_than_s:
                continue
            lock = self._lock(f"sha256:{name}", 0)
            try:
                lock.acquire()
            except filelock.Timeout:
                skipped += 1
                continue
            try:
                path.unlink()
                removed += 1
                removed_bytes += stat.st_size
            except OSError:
                skipped += 1
            finally:
                lock.release()
        for path in self._files("locks"):  # of removed blobs (now or by an earlier prune)
            name = path.name.removesuffix(".lock")
            if not re.fullmatch(r"[a-f0-9]{64}", name) or path.name == name:
                continue
            lock = self._lock(f"sha256:{name}", 0)
            try:
                lock.acquire()
            except filelock.Timeout:
                continue  # held: in use
            try:
                self._drop_lock_file(name)
            finally:
                lock.release()
        for path in self._files("bundles"):  # pulled bundles (pull without a path, load)
            if not _PULLED.fullmatch(path.name):
                continue
            try:
                stat = path.stat()
                if older_than_s and now - stat.st_mtime < older_than_s:
                    continue
                path.unlink()
            except OSError:
                skipped += 1
                continue
            removed += 1
            removed_bytes += stat.st_size
        return PruneResult(removed, removed_bytes, skipped)
