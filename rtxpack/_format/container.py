"""The bundle container: a fixed header, aligned sections, and a msgpack manifest at the end.

    offset 0   header (64 bytes): magic, format version, manifest offset/length/digest
    offset 4096 * k   sections, each starting on a 4096-byte boundary (stored ones can be mmapped)
    end        manifest (msgpack), which must end exactly at the end of the file

docs/format.md is the specification. Every offset and size read from a file is checked against
the file and against ``Limits`` before it is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import mmap
import os
import re
import secrets
import stat
import struct
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import blake3
import filelock
import msgpack
import zstandard

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from .._exceptions import (
    BundleFormatError,
    BundleNotFoundError,
    DamagedBundleError,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    OutputError,
    RtxpackError,
    SignatureDroppedWarning,
    UnsupportedVersionError,
    attach_path,
)
from .._text import shown
from .manifest import CODECS, DEFAULT_LIMITS, Limits, Manifest, Section
from .migrations import STEPS, upgrade_manifest

__all__ = [
    "ALIGNMENT",
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "MAGIC",
    "BundleFile",
    "BundleWriter",
    "atomic_output",
    "digest",
]

MAGIC = b"\x89RTXPACK"
#: (major, minor) of the format this rtxpack writes. Readers accept any minor of this major.
FORMAT_VERSION = (1, 1)
_HEADER = struct.Struct("<8sHHIQQ32s")
HEADER_SIZE = 64
ALIGNMENT = 4096
_CHUNK = 8 * 1024 * 1024
_PAD = bytes(ALIGNMENT)
_MAX_WINDOW = 2**27  # docs/format.md: a zstd section needs a window of at most 128 MiB
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: Signature sections (docs/signing.md): the writer keeps their few bytes to check at ``finish``
#: that each still holds for the manifest it writes.
_SIGNATURE = "signature"
_MAX_SIGNATURE = 4 * 1024 * 1024
assert _HEADER.size == HEADER_SIZE


def format_version_str(version: tuple[int, int] = FORMAT_VERSION) -> str:
    return f"{version[0]}.{version[1]}"


def _hasher() -> Any:
    # BLAKE3 with all cores: 5-8 GB/s on 2 cores here (bench/bench_format.py), so verifying an
    # engine costs less than reading it from disk; and unlike xxhash it is a cryptographic hash,
    # so a bundle's digests can be pinned or signed.
    return blake3.blake3(max_threads=blake3.blake3.AUTO)


def digest(data: bytes | bytearray | memoryview) -> str:
    """The digest rtxpack writes for ``data``: ``"blake3:<64 hex digits>"``."""
    h = _hasher()
    h.update(data)
    return "blake3:" + str(h.hexdigest())


def digest_file(path: Path) -> str:
    """``digest`` of a file's bytes, read in bounded chunks."""
    h = _hasher()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "blake3:" + str(h.hexdigest())


# ---------------------------------------------------------------------------------------------
# Writing


_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
#: How long a rewrite waits for another process rewriting the same bundle.
REWRITE_LOCK_SECONDS = 600.0


def _checked_path(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    if "\0" in str(text):
        raise InvalidArgumentError(f"the path {str(text)!r} contains a NUL byte; give a real path")
    return Path(text)


def output_target(path: str | os.PathLike[str]) -> Path:
    """Where writing ``path`` lands: a symlink is followed (an in-place edit through a link
    updates the file it points to, as ``cp`` does), and an existing FIFO, device, socket or folder
    is refused rather than replaced by a regular file."""
    path = _checked_path(path)
    real = Path(os.path.realpath(path))
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        return real
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}", path=path) from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
        raise OutputError(
            f"cannot write {path}: it is {what}, not a regular file; rtxpack writes bundles and "
            "extracted files only to regular files — choose another output path",
            path=path,
        )
    return real


def distinct_outputs(
    outputs: Mapping[str, str | os.PathLike[str]], inputs: Mapping[str, str | os.PathLike[str]]
) -> None:
    """Refuse outputs (``{what: path}``) that would replace an input or one another: a command
    that writes several files must not destroy what it is reading, nor write one file twice.
    Links are followed, as ``atomic_output`` follows them."""
    seen: dict[Path, str] = {
        Path(os.path.realpath(_checked_path(p))): what for what, p in inputs.items()
    }
    for what, path in outputs.items():
        target = output_target(path)
        if target in seen:
            raise InvalidArgumentError(
                f"cannot write the {what} to {path}: that is the {seen[target]} ({target}), "
                "which would be replaced — choose another output path"
            )
        seen[target] = what


def _lock_temp(fd: int) -> None:
    """A writer holds an exclusive lock on its temporary file while it lives (POSIX), so that
    ``remove_stale_temporaries`` can tell a killed writer's leftovers from a live one's."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def remove_stale_temporaries(directory: Path) -> list[str]:
    """Remove ``.NAME.<12 hex>.tmp`` files that no live writer holds (writers killed by SIGKILL,
    the OOM killer or a power loss leave them). A live writer holds a lock on its temporary file
    until it renames or removes it, and the kernel drops the lock when a process dies, so a file
    whose lock can be taken has no writer. POSIX only (Windows does not let an open file be
    removed anyway). Returns the names removed."""
    if fcntl is None:
        return []
    removed = []
    try:
        entries = [e.name for e in os.scandir(directory) if _TEMP_RE.match(e.name)]
    except OSError:
        return []
    for name in entries:
        path = directory / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            if os.stat(path, follow_symlinks=False).st_ino == st.st_ino:
                os.unlink(path)
                removed.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _new_temp(directory: Path, name: str) -> tuple[Path, int]:
    for _ in range(8):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        # 0o666 & ~umask, as for any new file; a replaced file keeps its own mode (below).
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        _lock_temp(fd)
        # A cleaner that ran between the create and the lock may have removed it: start again.
        try:
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return tmp, fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OSError(f"could not create a temporary file in {directory}")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left exactly as it was. A symlink at ``path`` is followed; a FIFO, device or folder there is
    refused (``output_target``). The new file gets the replaced file's permission bits (never its
    setuid, setgid or sticky bits), or 0o666 & ~umask. Temporary files that killed writers left in
    the folder are removed first (``remove_stale_temporaries``).
    """
    shown = _checked_path(path)
    path = output_target(path)
    directory = path.parent
    if not directory.is_dir():
        raise InvalidArgumentError(f"cannot write {shown}: folder {directory} does not exist")
    remove_stale_temporaries(directory)
    try:
        tmp, fd = _new_temp(directory, path.name)
    except OSError as exc:
        raise OutputError(
            f"cannot write {shown}: {exc.strerror or exc}; choose a folder you can write to",
            path=shown,
        ) from None
    f = os.fdopen(fd, "w+b")
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode) & 0o777)
            if fcntl is None:
                f.close()  # Windows does not rename an open file (and has no lock to hold)
            os.replace(tmp, path)  # POSIX: while the lock is held, so no cleaner takes it
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, RtxpackError):
            raise OutputError(
                f"cannot write {shown}: {exc.strerror or exc}; nothing was changed at {shown} "
                "(free some space, check permissions, or close programs using the file)",
                path=shown,
            ) from None
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        with contextlib.suppress(OSError):
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


@contextlib.contextmanager
def rewrite_lock(path: str | os.PathLike[str]) -> Iterator[None]:
    """Serialize rewrites of one file across processes, from before the source is read until the
    new file is in place, so that two concurrent ``cache add`` on one bundle both land, one after
    the other. The lock is ``.NAME.lock`` beside the file (symlinks followed); on POSIX it is
    removed again when released (a waiter that locked a removed file tries again)."""
    target = output_target(path)
    lock_path = target.parent / f".{target.name}.lock"
    deadline = time.monotonic() + REWRITE_LOCK_SECONDS
    try:
        if fcntl is None:
            with filelock.FileLock(lock_path, timeout=REWRITE_LOCK_SECONDS):
                yield
            return
        fd = _take_lock_file(lock_path, deadline)
    except (TimeoutError, filelock.Timeout):
        raise OutputError(
            f"cannot rewrite {path}: another process has been rewriting it for "
            f"{REWRITE_LOCK_SECONDS:.0f} s; try again when it is done",
            path=path,
        ) from None
    except OSError as exc:
        raise OutputError(
            f"cannot rewrite {path}: cannot create its lock file {lock_path.name} "
            f"({exc.strerror or exc}); choose a folder you can write to",
            path=path,
        ) from None
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)  # closing drops the lock


def _take_lock_file(lock_path: Path, deadline: float) -> int:
    assert fcntl is not None
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise TimeoutError from None
                    time.sleep(0.02)
            try:
                if os.stat(lock_path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    return fd  # locked, and still the lock file (its last holder removed another)
            except FileNotFoundError:
                pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


class _Tee:
    """Reads at most ``limit`` bytes from ``source``, ``n`` at most at a time, and writes each
    byte read to ``out``."""

    def __init__(self, source: IO[bytes], out: BinaryIO, limit: int) -> None:
        self._source, self._out, self._limit = source, out, limit
        self.copied = 0

    def read(self, n: int) -> bytes:
        data = self._source.read(min(n, self._limit - self.copied))
        self._out.write(data)
        self.copied += len(data)
        return data


class BundleWriter:
    """Appends sections to an open (temporary) file, then writes the manifest and header."""

    def __init__(self, f: BinaryIO, *, zstd_level: int = 3) -> None:
        self._f = f
        self._zstd_level = zstd_level
        self.sections: list[Section] = []
        #: signature sections left out by ``finish`` because they no longer hold -> why
        self.dropped_signatures: dict[str, str] = {}
        self._signatures: dict[int, bytes] = {}  # signature sections' bytes, by index
        f.seek(0)
        f.write(bytes(HEADER_SIZE))
        self._pos = HEADER_SIZE

    def _align(self) -> None:
        pad = -self._pos % ALIGNMENT
        if pad:
            self._f.write(_PAD[:pad])
            self._pos += pad

    def _add(self, kind: str, name: str, codec: str, chunks: Iterator[bytes | memoryview]) -> int:
        if codec not in CODECS:
            raise InvalidArgumentError(f"codec {codec!r}: expected one of {', '.join(CODECS)}")
        self._align()
        start = self._pos
        h = _hasher()
        size = 0
        write = self._f.write
        if codec == "stored":
            for chunk in chunks:
                h.update(chunk)
                write(chunk)
                size += len(chunk)
        else:
            cctx = zstandard.ZstdCompressor(level=self._zstd_level, threads=-1)
            comp = cctx.compressobj()
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                write(comp.compress(chunk))
            write(comp.flush())
        self._pos = self._f.tell()
        self._remember_signature(kind, codec, start)
        self.sections.append(
            Section(
                kind=kind,
                name=name,
                offset=start,
                length=self._pos - start,
                codec=codec,
                size=size,
                digest="blake3:" + h.hexdigest(),
            )
        )
        return len(self.sections) - 1

    def add_bytes(
        self, kind: str, name: str, data: bytes | bytearray | memoryview, codec: str = "stored"
    ) -> int:
        """Add a section from memory; returns its index."""
        view = memoryview(data).cast("B")
        return self._add(
            kind, name, codec, (view[i : i + _CHUNK] for i in range(0, len(view), _CHUNK))
        )

    def add_chunks(
        self, kind: str, name: str, chunks: Iterable[bytes | memoryview], codec: str = "stored"
    ) -> int:
        """Add a section from a stream of chunks (e.g. a model's weights, tensor by tensor)."""
        return self._add(kind, name, codec, iter(chunks))

    def add_path(self, kind: str, name: str, src: Path, codec: str = "stored") -> int:
        """Add a section streamed from a file (never held in memory whole); returns its index."""

        def chunks() -> Iterator[bytes]:
            with open(src, "rb") as fin:
                while chunk := fin.read(_CHUNK):
                    yield chunk

        return self._add(kind, name, codec, chunks())

    def copy_section(self, source: BundleFile, section: Section) -> int:
        """Copy another bundle's section verbatim (same codec and bytes), checking its digest."""
        self._align()
        start = self._pos
        view = source.raw_view(section)
        for _ in source.iter_decoded(section):  # checks the frame, size and digest, streaming
            pass
        for i in range(0, len(view), _CHUNK):
            self._f.write(view[i : i + _CHUNK])
        self._pos = self._f.tell()
        self._remember_signature(section.kind, section.codec, start)
        self.sections.append(dataclasses.replace(section, offset=start))
        return len(self.sections) - 1

    def copy_raw(self, section: Section, source: IO[bytes], where: str) -> int:
        """Append a section whose stored bytes (exactly ``section.length`` of them, e.g. a blob
        from a registry) are read from ``source``, under the section's own kind, name, codec,
        size and digest; the digest (and for zstd the decoded size) is checked as they stream
        through, so nothing unchecked is kept. ``where`` names the source in errors.
        A copy that fails leaves the writer as it was: the caller may retry from another source."""
        self._align()
        start = self._pos
        try:
            return self._copy_raw(section, source, where, start)
        except BaseException:
            self._f.seek(start)
            self._f.truncate()
            raise

    def _copy_raw(self, section: Section, source: IO[bytes], where: str, start: int) -> int:
        h = _hasher()
        tee = _Tee(source, self._f, section.length)
        decoded = 0
        if section.codec == "stored":
            while chunk := tee.read(_CHUNK):
                h.update(chunk)
        else:
            try:
                with _zstd_reader(tee) as reader:
                    while decoded <= section.size:
                        chunk = reader.read(min(section.size + 1 - decoded, _CHUNK))
                        if not chunk:
                            break
                        h.update(chunk)
                        decoded += len(chunk)
            except zstandard.ZstdError as exc:
                raise DamagedBundleError(
                    f"{where}: section {section.kind}/{section.name!r} is not valid zstd ({exc})"
                ) from None
            while tee.read(_CHUNK):  # what the decoder left: copied, then checked below
                pass
        if tee.copied != section.length:
            raise DamagedBundleError(
                f"{where}: section {section.kind}/{section.name!r} has {tee.copied} bytes, the "
                f"manifest says {section.length}"
            )
        if section.codec == "zstd":
            end = self._f.tell()
            length = _frame_length(self._reader_at(start), section.length)
            problem = _not_one_frame(length, section.length)
            self._f.seek(end)
            if problem:
                raise DamagedBundleError(
                    f"{where}: section {section.kind}/{section.name!r} {problem}, expected "
                    f"exactly one zstd frame ({section.length} bytes)"
                )
            wrong_size = _wrong_size(decoded, section.size)
            if wrong_size:
                raise DamagedBundleError(
                    f"{where}: section {section.kind}/{section.name!r} {wrong_size}"
                )
        got = "blake3:" + h.hexdigest()
        if got != section.digest:
            raise _integrity(section, got, where)
        self._pos = self._f.tell()
        self._remember_signature(section.kind, section.codec, start)
        self.sections.append(dataclasses.replace(section, offset=start))
        return len(self.sections) - 1

    def _reader_at(self, start: int) -> Callable[[int, int], bytes]:
        """``read(pos, n)``: ``n`` bytes at ``start + pos`` of what this writer wrote."""

        def read(pos: int, n: int) -> bytes:
            self._f.seek(start + pos)
            return self._f.read(n)

        return read

    def copy_all(
        self,
        source: BundleFile,
        *,
        skip: frozenset[int] | set[int] = frozenset(),
        replacements: dict[int, bytes] | None = None,
    ) -> dict[int, int]:
        """Copy every section of ``source`` but those in ``skip``, in order; a section in
        ``replacements`` gets those bytes instead (same kind, name and codec). Returns old index
        -> new index, for ``Manifest.renumbered``."""
        index: dict[int, int] = {}
        for i, section in enumerate(source.manifest.sections):
            if i in skip:
                continue
            if replacements and i in replacements:
                data = replacements[i]
                index[i] = self.add_bytes(section.kind, section.name, data, section.codec)
            else:
                index[i] = self.copy_section(source, section)
        return index

    def _remember_signature(self, kind: str, codec: str, start: int) -> None:
        """Keep the bytes of the signature section just written from ``start`` to ``_pos``
        (every way of adding a section calls this), so that ``finish`` can check it still holds."""
        if kind == _SIGNATURE and codec == "stored" and self._pos - start <= _MAX_SIGNATURE:
            # (reading it back to its end leaves the file where the next section goes)
            self._signatures[len(self.sections)] = self._reader_at(start)(0, self._pos - start)

    def _drop_stale_signatures(self, manifest: Manifest) -> Manifest:
        """Leave out of the section table the signatures that no longer hold for ``manifest``
        (their few bytes stay behind as a gap no reader reads), with a warning naming each."""
        from .._signing.sign import SECTION_KIND, why_stale

        stale: dict[int, str] = {}
        raw = None
        for i, s in enumerate(manifest.sections):
            if s.kind != SECTION_KIND:
                continue
            raw = manifest.to_dict() if raw is None else raw
            reason = why_stale(raw, self._signatures.get(i, b""))
            if reason is not None:
                stale[i] = reason
        if not stale:
            return manifest
        for i, reason in stale.items():
            warnings.warn(
                f"dropped signature {manifest.sections[i].name!r}: {reason}; sign the new bundle "
                "again to restore it",
                SignatureDroppedWarning,
                stacklevel=3,
            )
        kept = [i for i in range(len(manifest.sections)) if i not in stale]
        self.dropped_signatures.update({manifest.sections[i].name: r for i, r in stale.items()})
        self.sections = [manifest.sections[i] for i in kept]
        return manifest.renumbered({old: new for new, old in enumerate(kept)}, tuple(self.sections))

    def finish(self, manifest: Manifest, version: tuple[int, int] = FORMAT_VERSION) -> None:
        """Write the manifest and the header. ``manifest.sections`` must be this writer's."""
        if list(manifest.sections) != self.sections:
            raise AssertionError("manifest.sections must be the sections this writer wrote")
        manifest = self._drop_stale_signatures(manifest)
        manifest.check_references()
        blob = msgpack.packb(manifest.to_dict(), use_bin_type=True)
        if len(blob) > DEFAULT_LIMITS.max_manifest_bytes:
            raise InvalidArgumentError(
                f"the manifest would be {len(blob)} bytes, above the limit of "
                f"{DEFAULT_LIMITS.max_manifest_bytes}; store less metadata"
            )
        # Never write what the reader would refuse: read the manifest back with the reader's rules.
        try:
            Manifest.from_dict(unpack_manifest(blob, DEFAULT_LIMITS, "new bundle"))
            check_sections(manifest.sections, self._pos, DEFAULT_LIMITS, "new bundle")
        except BundleFormatError as exc:
            detail = str(exc).split("; the bundle is damaged")[0]
            raise InvalidArgumentError(
                f"refusing to write a bundle rtxpack could not read back: {detail}"
            ) from None
        manifest_offset = self._pos
        self._f.write(blob)
        header = _HEADER.pack(
            MAGIC,
            version[0],
            version[1],
            0,
            manifest_offset,
            len(blob),
            blake3.blake3(blob).digest(),
        )
        self._f.seek(0)
        self._f.write(header)
        self._f.seek(0, os.SEEK_END)


# ---------------------------------------------------------------------------------------------
# Reading


def zstd_frame_length(data: memoryview | bytes) -> int | None:
    """The length of the zstd frame at the start of ``data``, from its headers alone (RFC 8878,
    3.1.1; no decoding), or None if ``data`` does not start with one complete zstd frame."""
    return _frame_length(lambda pos, k: bytes(data[pos : pos + k]), len(data))


def _frame_length(read: Callable[[int, int], bytes], n: int) -> int | None:
    """``zstd_frame_length`` of ``n`` bytes read with ``read(pos, count)`` (a few bytes per
    block: the headers only)."""
    head = read(0, 5)
    if len(head) != 5 or head[:4] != _ZSTD_MAGIC:
        return None
    descriptor = head[4]
    fcs_flag, single, reserved = descriptor >> 6, (descriptor >> 5) & 1, (descriptor >> 3) & 1
    checksum, dictionary = (descriptor >> 2) & 1, descriptor & 3
    if reserved:
        return None
    pos = 5 + (1 - single) + (0, 1, 2, 4)[dictionary] + (single, 2, 4, 8)[fcs_flag]
    while True:
        if pos + 3 > n:
            return None
        header = int.from_bytes(read(pos, 3), "little")
        kind, size = (header >> 1) & 3, header >> 3
        if kind == 3:  # reserved block type
            return None
        pos += 3 + (1 if kind == 1 else size)  # an RLE block holds one byte
        if header & 1:  # the last block
            break
    pos += 4 * checksum
    return pos if pos <= n else None


def _zstd_reader(source: _Tee | _MappedRange) -> Any:
    """Decoded bytes of the zstd frame ``source`` holds, with the spec's window limit. (Whether a
    section holds exactly one frame is checked from its headers: ``_not_one_frame``.)"""
    decompressor = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    return decompressor.stream_reader(source)  # type: ignore[arg-type]  # a file-like object


def _wrong_size(decoded: int, size: int) -> str | None:
    """What is wrong when a section ``decoded`` to this many bytes (decoding stops one byte past
    the declared ``size``), or None."""
    if decoded > size:
        return f"decodes to at least {decoded} bytes, the manifest says {size}"
    if decoded < size:
        return f"decodes to {decoded} bytes, the manifest says {size}"
    return None


def _not_one_frame(end: int | None, length: int) -> str | None:
    """What is wrong with a zstd section of ``length`` bytes whose first frame ends at ``end``
    (``zstd_frame_length``), or None: a section holds exactly one frame (docs/format.md)."""
    if end == length:
        return None
    if end is None:
        return "does not start with one complete zstd frame"
    return f"holds {length - end} bytes after its zstd frame"


def _integrity(section: Section, got: str, path: str | os.PathLike[str] | None) -> IntegrityError:
    return IntegrityError(
        f"section {section.kind}/{section.name!r} is corrupted: its digest is {got}, "
        f"the manifest says {section.digest}; the file was changed after it was written — "
        "re-download or rebuild the bundle",
        path=path,
    )


@dataclass(frozen=True)
class Header:
    version: tuple[int, int]
    flags: int
    manifest_offset: int
    manifest_length: int
    manifest_digest: bytes


def parse_header(raw: bytes, file_size: int, limits: Limits, where: str) -> Header:
    if len(raw) < len(MAGIC) or raw[: len(MAGIC)] != MAGIC:
        raise NotABundleError(
            f"{where} is not an rtxpack bundle: it does not start with the rtxpack magic bytes "
            f"(found {raw[:8]!r}); give a file written by `rtxpack build`, `pack` or `rtxpack.save`"
        )
    if len(raw) < HEADER_SIZE:
        raise DamagedBundleError(
            f"{where} is truncated: {file_size} bytes, shorter than the {HEADER_SIZE}-byte header"
        )
    _, major, minor, flags, m_off, m_len, m_digest = _HEADER.unpack(raw[:HEADER_SIZE])
    if major != FORMAT_VERSION[0] and (major, minor) not in STEPS:
        found, supported = f"{major}.{minor}", format_version_str()
        hint = (
            "upgrade rtxpack (pip install -U rtxpack)"
            if major > FORMAT_VERSION[0]
            else "no rtxpack release wrote this version"
        )
        raise UnsupportedVersionError(
            f"{where} uses bundle format {found}; this rtxpack reads format "
            f"{FORMAT_VERSION[0]}.x (writes {supported}): {hint}",
            found=found,
            supported=supported,
        )
    if not 0 < m_len <= limits.max_manifest_bytes:
        raise DamagedBundleError(
            f"{where}: the header gives a manifest of {m_len} bytes; expected 1 to "
            f"{limits.max_manifest_bytes} — the bundle is damaged"
        )
    if m_off < HEADER_SIZE:
        raise DamagedBundleError(
            f"{where}: the header puts the manifest at byte {m_off}, inside the {HEADER_SIZE}-byte "
            "header; the bundle is damaged — re-download or rebuild it"
        )
    if m_off + m_len != file_size:
        raise DamagedBundleError(
            f"{where} is truncated or has extra bytes: the header says the file is "
            f"{m_off + m_len} bytes (manifest at {m_off}, {m_len} bytes), it is {file_size} bytes; "
            "re-download or rebuild the bundle"
        )
    return Header((major, minor), flags, m_off, m_len, m_digest)


def check_sections(
    sections: tuple[Section, ...], data_end: int, limits: Limits, where: str
) -> None:
    """docs/format.md's open-time section rules: every section lies aligned inside the data area,
    non-empty sections do not overlap (whatever the list order), sizes are bounded."""
    for s in sections:
        label = f"{where}: section {s.kind}/{s.name!r}"
        if s.offset % ALIGNMENT or s.offset < HEADER_SIZE or s.offset + s.length > data_end:
            raise DamagedBundleError(
                f"{label} claims bytes {s.offset}..{s.offset + s.length}, expected an aligned "
                f"range (offset a multiple of {ALIGNMENT}) inside {HEADER_SIZE}..{data_end}; "
                "the bundle is damaged"
            )
        if s.codec == "stored" and s.size != s.length:
            raise DamagedBundleError(
                f"{label} is stored but claims {s.size} decoded bytes from {s.length}; "
                "the bundle is damaged"
            )
        if s.codec == "zstd" and s.length == 0:
            raise DamagedBundleError(
                f"{label} is an empty zstd section, expected one zstd frame; the bundle is damaged"
            )
        if s.codec == "zstd" and s.size > s.length * limits.max_zstd_ratio:
            raise DamagedBundleError(
                f"{label} claims {s.size} bytes from {s.length} compressed bytes, more than "
                f"zstd can produce ({limits.max_zstd_ratio}x); the bundle is damaged or hostile"
            )
    filled = sorted((s.offset, s.offset + s.length, i) for i, s in enumerate(sections) if s.length)
    for (_, end, i), (start, _, j) in itertools.pairwise(filled):
        if start < end:
            a, b = sections[i], sections[j]
            raise DamagedBundleError(
                f"{where}: section {b.kind}/{b.name!r} (bytes {b.offset}..{b.offset + b.length}) "
                f"overlaps section {a.kind}/{a.name!r} (bytes {a.offset}..{a.offset + a.length}); "
                "the bundle is damaged or hostile"
            )


class _Duplicate(Exception):
    pass


def _pairs(items: list[tuple[Any, Any]]) -> dict[Any, Any]:
    out = dict(items)
    if len(out) != len(items):
        seen: set[Any] = set()
        for k, _ in items:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return out


class _Ext:
    """An ext value, kept only to be refused with its place in the manifest."""

    def __init__(self, code: int) -> None:
        self.code = code

    def __repr__(self) -> str:
        return f"<ext type {self.code}>"


class _TooMany(Exception):
    pass


class _ValueCount:
    """Counts the values msgpack decodes (as each array or map is completed) and stops the
    decoding past ``limit``: what a decoded manifest costs in memory is bounded by the count,
    not by its 16 MiB (an empty array is 1 byte of msgpack and ~60 bytes of Python)."""

    def __init__(self, limit: int) -> None:
        self.left = limit

    def array(self, items: list[Any]) -> list[Any]:
        self.left -= len(items)
        if self.left < 0:
            raise _TooMany
        return items

    def pairs(self, items: list[tuple[Any, Any]]) -> dict[Any, Any]:
        self.left -= 2 * len(items)
        if self.left < 0:
            raise _TooMany
        return _pairs(items)


def unpack_manifest(blob: bytes, limits: Limits, where: str) -> Any:
    """Decode manifest bytes (docs/format.md, "Manifest encoding"): one msgpack object with
    msgpack's limits, no duplicate keys, no bin or ext values, string keys, finite floats,
    bounded strings and nesting. Typed validation is Manifest.from_dict's."""
    values = _ValueCount(limits.max_values)
    try:
        data = msgpack.unpackb(
            blob,
            raw=False,
            strict_map_key=False,  # non-string keys are refused below, with their place
            use_list=True,
            object_pairs_hook=values.pairs,
            list_hook=values.array,
            ext_hook=lambda code, data: _Ext(code),
            max_str_len=4 * limits.max_string,  # UTF-8: at most 4 bytes per code point
            max_bin_len=4 * limits.max_string,  # refused below, with the field's name
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=4 * limits.max_string,
        )
    except _TooMany:
        raise DamagedBundleError(
            f"{where}: the manifest holds more than {limits.max_values} values (map keys and "
            "items of arrays and maps, at all levels); the bundle is damaged or hostile"
        ) from None
    except _Duplicate as dup:
        key = shown(dup.args[0])
        raise DamagedBundleError(
            f"{where}: the manifest holds a map with the key {key} more than once; "
            "the bundle is damaged or hostile"
        ) from None
    except Exception as exc:  # msgpack raises several types; all mean a bad manifest
        raise DamagedBundleError(
            f"{where}: the manifest is not valid msgpack within rtxpack's limits "
            f"({type(exc).__name__}: {shown(str(exc))}; at most {limits.max_array} items per "
            f"array, {limits.max_map} entries per map, {4 * limits.max_string} bytes per "
            "string); the bundle is damaged or hostile"
        ) from None
    bad = _first_not_plain(data, limits)
    if bad is not None:
        raise DamagedBundleError(
            f"{where}: invalid bundle manifest: {bad}; the bundle is damaged or hostile"
        )
    return data


def _first_not_plain(root: Any, limits: Limits) -> str | None:
    """What breaks the manifest encoding rules first, or None. One pass, no copies; the path to
    the offending value is only worked out when there is one."""
    stack: list[tuple[Any, int]] = [(root, 0)]
    max_string, max_depth = limits.max_string, limits.max_depth
    while stack:
        value, depth = stack.pop()
        kind = type(value)
        if kind is dict:
            if depth > max_depth:
                return _at(root, value, f"data nested at most {max_depth} levels deep")
            for k, v in value.items():
                if type(k) is not str:
                    return _at(root, value, f"string map keys (found key {shown(k)})")
                if len(k) > max_string:
                    return _at(root, value, f"keys of at most {max_string} code points")
                stack.append((v, depth + 1))
        elif kind is list:
            if depth > max_depth:
                return _at(root, value, f"data nested at most {max_depth} levels deep")
            stack.extend((v, depth + 1) for v in value)
        elif kind is str:
            if len(value) > max_string:
                return _at(root, value, f"a string of at most {max_string} code points")
        elif kind is float:
            if not math.isfinite(value):
                return _at(root, value, "a finite number (no NaN or infinity)")
        elif value is not None and kind not in (bool, int):
            return _at(root, value, "nil, bool, int, float, string, list or map (no bin or ext)")
    return None


def _at(root: Any, target: Any, expected: str) -> str:
    path = _path_to(root, target, "", 0) or "manifest"
    return f"{path} is {shown(target)}, expected {expected}"


def _path_to(node: Any, target: Any, path: str, depth: int) -> str | None:
    """Where ``target`` (by identity) is in ``node``: ``engines[0].name`` (for messages only)."""
    if node is target:
        return path
    if depth > 40:
        return None
    items = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
    for k, v in items:
        if isinstance(k, str) and k.isidentifier():
            sub = f"{path}.{k}" if path else k
        else:
            sub = f"{path}[{k!r}]"
        found = _path_to(v, target, sub, depth + 1)
        if found is not None:
            return found
    return None


_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


class _MappedRange:
    """A section's stored bytes as a file for zstd's stream reader, releasing the pages it has
    handed over (``BundleFile._release``)."""

    def __init__(self, owner: BundleFile, offset: int, view: memoryview) -> None:
        self._owner, self._offset, self._view, self._pos = owner, offset, view, 0
        self._released = 0

    def read(self, n: int = -1) -> bytes:
        if self._pos - self._released >= _CHUNK:  # what the previous reads handed over
            self._owner._release(self._offset + self._released, self._pos - self._released)
            self._released = self._pos
        end = len(self._view) if n < 0 else min(len(self._view), self._pos + n)
        chunk = bytes(self._view[self._pos : end])
        self._pos = end
        return chunk


class BundleFile:
    """An open bundle file: header and manifest read and checked; sections read on demand."""

    def __init__(self, path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> None:
        self.path = _checked_path(path)
        self.limits = limits
        self._mmap: mmap.mmap | None = None
        try:
            # O_NONBLOCK: opening a FIFO must not wait forever for a writer (no effect on files)
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            raise BundleNotFoundError(f"no such bundle: {self.path}", path=self.path) from None
        except IsADirectoryError:
            raise InvalidArgumentError(f"{self.path} is a folder, not a bundle file") from None
        except OSError as exc:
            raise InvalidArgumentError(f"cannot open {self.path}: {exc.strerror}") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            what = "a folder" if stat.S_ISDIR(mode) else "a FIFO, device or socket"
            raise InvalidArgumentError(f"{self.path} is {what}, not a bundle file")
        self._f: IO[bytes] = os.fdopen(fd, "rb")
        try:
            self._read_manifest()
        except BaseException as exc:
            self._f.close()
            attach_path(exc, self.path)
            raise

    def _read_manifest(self) -> None:
        where = str(self.path)
        size = os.fstat(self._f.fileno()).st_size
        raw = self._f.read(HEADER_SIZE)
        self.header = parse_header(raw, size, self.limits, where)
        self.version = self.header.version
        self._f.seek(self.header.manifest_offset)
        blob = self._f.read(self.header.manifest_length)
        if len(blob) != self.header.manifest_length:
            raise DamagedBundleError(f"{where} is truncated inside its manifest")
        if blake3.blake3(blob).digest() != self.header.manifest_digest:
            raise IntegrityError(
                f"{where}: the manifest does not match the digest in the header; the file was "
                "changed after it was written — re-download or rebuild the bundle"
            )
        data = unpack_manifest(blob, self.limits, where)
        if isinstance(data, dict):
            data = upgrade_manifest(data, self.version)
        self.raw_manifest: dict[str, Any] = data if isinstance(data, dict) else {}
        self.manifest = Manifest.from_dict(data, self.limits)
        check_sections(self.manifest.sections, self.header.manifest_offset, self.limits, where)

    # -- section access ------------------------------------------------------------------------

    def _map(self) -> mmap.mmap:
        if self._mmap is None:
            if self._f.closed:
                raise InvalidArgumentError(f"bundle {self.path} is closed")
            self._mmap = mmap.mmap(self._f.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mmap

    def raw_view(self, section: Section) -> memoryview:
        """The section's bytes as stored in the file (no decoding, no verification)."""
        return memoryview(self._map())[section.offset : section.offset + section.length]

    def decode(
        self, section: Section, *, verify: bool = True, private: bool = False
    ) -> memoryview | bytes:
        """The section's decoded bytes, digest-checked unless ``verify=False``.

        A stored section comes back as a read-only memoryview of the memory-mapped file: no copy,
        and bytes written into the file in place later show through it. With ``private=True`` it
        is copied into memory first and the copy is checked: what was checked is what is used.
        A zstd section is decoded into memory (at most its declared size); to verify or extract
        a section of any size in bounded memory, use ``iter_decoded``.
        """
        if section.codec == "stored":
            view: memoryview | bytes = self.raw_view(section)
            if private:
                view = bytes(view)
            if verify:
                got = digest(view)
                if got != section.digest:
                    raise _integrity(section, got, self.path)
            return view
        out = bytearray()
        try:
            for chunk in self.iter_decoded(section, verify=verify):
                out += chunk
        except MemoryError:
            del out
            raise InvalidArgumentError(
                f"section {section.kind}/{section.name!r} decodes to {section.size} bytes, more "
                "than this process can hold in memory; extract it to a file instead "
                "(rtxpack extract streams it)"
            ) from None
        return memoryview(out).toreadonly()  # no second copy of a possibly large section

    def iter_decoded(
        self, section: Section, *, verify: bool = True
    ) -> Iterator[memoryview | bytes]:
        """The section's decoded bytes in chunks of at most 8 MiB, in bounded memory whatever the
        section's size. The size, the zstd frame and (unless ``verify=False``) the digest are
        checked as the chunks go by; the last check runs before the iterator ends, so a caller
        must not use what it got until then (write it to a temporary file, for instance)."""
        view = self.raw_view(section)
        h = _hasher() if verify else None
        if section.codec == "stored":
            for i in range(0, len(view), _CHUNK):
                chunk = view[i : i + _CHUNK]
                if h is not None:
                    h.update(chunk)
                yield chunk
                self._release(section.offset + i, len(chunk))
        else:
            yield from self._iter_zstd(section, view, h)
            self._release(section.offset, section.length)
        if h is not None:
            got = "blake3:" + h.hexdigest()
            if got != section.digest:
                raise _integrity(section, got, self.path)

    def _release(self, offset: int, length: int) -> None:
        """Drop pages of the mapping this process has read (the file stays in the page cache):
        streaming a section then keeps the process's resident memory bounded, not its size."""
        if self._mmap is not None and _DONTNEED is not None and length:
            start = offset - offset % mmap.PAGESIZE
            with contextlib.suppress(ValueError, OSError):
                self._mmap.madvise(_DONTNEED, start, offset + length - start)

    def _iter_zstd(self, section: Section, view: memoryview, h: Any) -> Iterator[bytes]:
        label = f"section {section.kind}/{section.name!r}"
        problem = _not_one_frame(zstd_frame_length(view), len(view))
        if problem:
            raise DamagedBundleError(
                f"{label} {problem}, expected exactly one zstd frame ({len(view)} bytes); "
                "the bundle is damaged or hostile"
            )
        # Read bounded chunks of output and stop one byte past the declared size: a section that
        # holds more than it claims (a zstd bomb whose few KB expand to GBs) never produces more
        # than its declared size plus one byte. (A decompressobj returns everything one input
        # chunk expands to, at once.)
        produced = 0
        try:
            with _zstd_reader(_MappedRange(self, section.offset, view)) as reader:
                while True:
                    chunk = reader.read(min(section.size + 1 - produced, _CHUNK))
                    if not chunk:
                        break
                    produced += len(chunk)
                    if produced > section.size:
                        break
                    if h is not None:
                        h.update(chunk)
                    yield chunk
        except zstandard.ZstdError as exc:
            raise DamagedBundleError(
                f"{label} is not a valid zstd frame ({exc}); the bundle is damaged",
                path=self.path,
            ) from None
        wrong_size = _wrong_size(produced, section.size)
        if wrong_size:
            raise DamagedBundleError(f"{label} {wrong_size}; the bundle is damaged", path=self.path)

    def close(self) -> None:
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                # A memoryview from read_engine() is still alive; the map closes when it is freed.
                pass
            self._mmap = None
        self._f.close()


def check_rewritable(bf: BundleFile) -> None:
    """Refuse to rewrite a bundle of a newer format than this rtxpack writes.

    Reading one is fine (a newer minor only adds what a reader may ignore), but a rewrite could
    renumber sections that the newer fields point at, or drop what they mean.
    """
    if bf.version > FORMAT_VERSION:
        found, supported = format_version_str(bf.version), format_version_str()
        raise UnsupportedVersionError(
            f"{bf.path} uses bundle format {found}, newer than the {supported} this rtxpack "
            "writes; it can read it but will not rewrite it (that could lose what the newer "
            "format added): upgrade rtxpack (pip install -U rtxpack)",
            found=found,
            supported=supported,
            path=bf.path,
        )


@contextlib.contextmanager
def rewriting(
    src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str]
) -> Iterator[tuple[BundleFile, BundleWriter]]:
    """Rewrite a bundle: yields (source, writer) for a new file that replaces ``dst_path`` (which
    may be ``src_path``) only when the block ends well; the caller calls ``writer.finish``.

    A bundle of a newer format is refused. The source is closed before the rename (Windows will
    not replace an open, mapped file).
    """
    with rewrite_lock(dst_path), atomic_output(dst_path) as f:
        src = open_bundle_file(src_path)
        try:
            check_rewritable(src)
            yield src, BundleWriter(f)
        finally:
            src.close()


def open_bundle_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> BundleFile:
    try:
        return BundleFile(path, limits)
    except RtxpackError:
        raise
    except OSError as exc:
        raise DamagedBundleError(f"cannot read {path}: {exc}", path=path) from None


def new_cache_id() -> str:
    return secrets.token_hex(4)
