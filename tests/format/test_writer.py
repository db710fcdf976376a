"""The writer: every way of adding a section (bytes, chunks, another bundle's section, a raw
stream such as a registry blob) writes the same bytes and section records; a raw copy checks what
it copies as it streams (length, exactly one zstd frame, decoded size without decoding more than
one byte past it, digest), reads its source in bounded chunks, and when it fails leaves the writer
as it was, so that the caller can retry from another source."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import random
import stat
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

import rtxpack
from rtxpack import DamagedBundleError, IntegrityError
from rtxpack._format import container
from rtxpack._format.container import BundleFile, BundleWriter
from rtxpack._format.manifest import Section

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "make_conformance", ROOT / "scripts/make_conformance.py"
)
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

WHERE = "registry.test/team/app:1"
DATA = mc.NOTES  # 560 bytes of text
FRAME = zstandard.ZstdCompressor().compress(DATA)
EMPTY_FRAME = zstandard.ZstdCompressor().compress(b"")
SKIPPABLE = struct.pack("<II", 0x184D2A50, 4) + b"skip"

Copy = Callable[[BundleWriter, BundleFile, Section], int]


def _rewrite(src: Path, dst: Path, copy: Copy) -> bytes:
    """``dst``: every section of ``src`` added with ``copy``, then the same manifest."""
    bf = container.open_bundle_file(src)
    try:
        with container.atomic_output(dst) as f:
            writer = BundleWriter(f)
            index = {i: copy(writer, bf, s) for i, s in enumerate(bf.manifest.sections)}
            writer.finish(bf.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        bf.close()
    return dst.read_bytes()


def _raw(writer: BundleWriter, bf: BundleFile, s: Section) -> int:
    return writer.copy_raw(s, io.BytesIO(bytes(bf.raw_view(s))), WHERE)


def _decoded(writer: BundleWriter, bf: BundleFile, s: Section) -> bytes:
    return bytes(bf.decode(s))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A stored engine, a zstd source and a zstd user file (the conformance suite's base)."""
    path = tmp_path / "base.rtxpack"
    path.write_bytes(mc.Base().bytes())
    return path


def test_a_raw_copy_writes_what_a_section_copy_writes(tmp_path: Path, base: Path) -> None:
    expected = _rewrite(base, tmp_path / "copied.rtxpack", lambda w, bf, s: w.copy_section(bf, s))
    assert _rewrite(base, tmp_path / "raw.rtxpack", _raw) == expected
    with rtxpack.open(tmp_path / "raw.rtxpack") as b:
        b.verify()
        assert [bytes(b.read_section(i)) for i in range(3)] == mc.Base().decoded


def test_chunks_are_added_as_the_same_bytes_would_be(tmp_path: Path, base: Path) -> None:
    def chunks(w: BundleWriter, bf: BundleFile, s: Section) -> int:
        data = _decoded(w, bf, s)
        return w.add_chunks(s.kind, s.name, iter([data[:100], b"", data[100:]]), s.codec)

    def whole(w: BundleWriter, bf: BundleFile, s: Section) -> int:
        return w.add_bytes(s.kind, s.name, _decoded(w, bf, s), s.codec)

    expected = _rewrite(base, tmp_path / "whole.rtxpack", whole)
    assert _rewrite(base, tmp_path / "chunks.rtxpack", chunks) == expected
    with rtxpack.open(tmp_path / "chunks.rtxpack") as b:
        b.verify()
        assert [bytes(b.read_section(i)) for i in range(3)] == mc.Base().decoded
        assert [s.codec for s in b.manifest.sections] == ["stored", "zstd", "zstd"]


def test_added_chunks_are_stored_unless_told(tmp_path: Path) -> None:
    f = io.BytesIO()
    writer = BundleWriter(f)
    assert writer.add_chunks("file", "a.bin", [b"ab", b"cd"]) == 0
    assert writer.add_chunks("file", "b.bin", (c for c in [b"ef"]), "zstd") == 1
    a, b = writer.sections
    assert (a.codec, a.size, a.length, a.offset) == ("stored", 4, 4, 4096)
    assert (b.codec, b.size, b.offset) == ("zstd", 2, 8192)
    assert f.getvalue()[4096:4100] == b"abcd"
    assert zstandard.ZstdDecompressor().decompressobj().decompress(f.getvalue()[8192:]) == b"ef"


# ---------------------------------------------------------------------------------------------
# What copy_raw refuses: each with the message a user reads (the source named as given)


def _stored(data: bytes = DATA, length: int | None = None) -> Section:
    n = len(data) if length is None else length
    return Section("file", "notes.txt", 0, n, "stored", n, container.digest(DATA))


def _zstd(payload: bytes, size: int = len(DATA)) -> Section:
    return Section("file", "notes.txt", 0, len(payload), "zstd", size, container.digest(DATA))


def _copy(section: Section, payload: bytes) -> BundleWriter:
    writer = BundleWriter(io.BytesIO())
    writer.copy_raw(section, io.BytesIO(payload), WHERE)
    return writer


LABEL = f"{WHERE}: section file/'notes.txt'"
CHANGED = DATA[:-1] + b"?"
REFUSED: dict[str, tuple[Section, bytes, type[Exception], str]] = {
    "stored, one byte short": (
        _stored(length=len(DATA)),
        DATA[:-1],
        DamagedBundleError,
        f"{LABEL} has 559 bytes, the manifest says 560",
    ),
    "stored, empty source": (
        _stored(),
        b"",
        DamagedBundleError,
        f"{LABEL} has 0 bytes, the manifest says 560",
    ),
    "stored, one byte changed": (
        _stored(),
        CHANGED,
        IntegrityError,
        f"section file/'notes.txt' is corrupted: its digest is {container.digest(CHANGED)}, the "
        f"manifest says {container.digest(DATA)}; the file was changed after it was written — "
        "re-download or rebuild the bundle",
    ),
    "zstd, a frame of other bytes": (
        _zstd(zstandard.ZstdCompressor().compress(CHANGED)),
        zstandard.ZstdCompressor().compress(CHANGED),
        IntegrityError,
        f"section file/'notes.txt' is corrupted: its digest is {container.digest(CHANGED)}, the "
        f"manifest says {container.digest(DATA)}; the file was changed after it was written — "
        "re-download or rebuild the bundle",
    ),
    "zstd, one byte short": (
        _zstd(FRAME),
        FRAME[:-1],
        DamagedBundleError,
        f"{LABEL} has {len(FRAME) - 1} bytes, the manifest says {len(FRAME)}",
    ),
    "zstd, the frame cut short": (
        _zstd(FRAME[:-1]),
        FRAME[:-1],
        DamagedBundleError,
        f"{LABEL} does not start with one complete zstd frame, expected exactly one zstd frame "
        f"({len(FRAME) - 1} bytes)",
    ),
    "zstd, an empty frame after the frame": (
        _zstd(FRAME + EMPTY_FRAME),
        FRAME + EMPTY_FRAME,
        DamagedBundleError,
        f"{LABEL} holds {len(EMPTY_FRAME)} bytes after its zstd frame, expected exactly one zstd "
        f"frame ({len(FRAME + EMPTY_FRAME)} bytes)",
    ),
    "zstd, a skippable frame after the frame": (
        _zstd(FRAME + SKIPPABLE),
        FRAME + SKIPPABLE,
        DamagedBundleError,
        f"{LABEL} holds 12 bytes after its zstd frame, expected exactly one zstd frame "
        f"({len(FRAME) + 12} bytes)",
    ),
    "zstd, decodes to one byte less than claimed": (
        _zstd(FRAME, size=len(DATA) + 1),
        FRAME,
        DamagedBundleError,
        f"{LABEL} decodes to 560 bytes, the manifest says 561",
    ),
    "zstd, decodes to one byte more than claimed": (
        _zstd(FRAME, size=len(DATA) - 1),
        FRAME,
        DamagedBundleError,
        f"{LABEL} decodes to at least 560 bytes, the manifest says 559",
    ),
    "zstd, claims no bytes": (
        _zstd(FRAME, size=0),
        FRAME,
        DamagedBundleError,
        f"{LABEL} decodes to at least 1 bytes, the manifest says 0",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=list(REFUSED))
def test_a_raw_copy_refuses_what_the_reader_would(case: str) -> None:
    section, payload, error, message = REFUSED[case]
    with pytest.raises(error) as info:
        _copy(section, payload)
    assert type(info.value) is error
    assert str(info.value) == message
    assert info.value.path == (WHERE if error is IntegrityError else None)


@pytest.mark.parametrize("payload", [b"not zstd at all" * 4, FRAME + bytes(10)])
def test_a_raw_copy_of_what_is_not_zstd_is_damaged(payload: bytes) -> None:
    with pytest.raises(DamagedBundleError) as info:
        _copy(_zstd(payload), payload)
    assert str(info.value).startswith(f"{LABEL} is not valid zstd (zstd decompress error: ")


def test_a_raw_copy_of_a_zstd_bomb_stops_one_byte_past_the_claimed_size() -> None:
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(256 * 1024 * 1024))
    assert len(bomb) < 16 * 1024
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(DamagedBundleError) as info:
            _copy(_zstd(bomb, size=1000), bomb)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert str(info.value) == f"{LABEL} decodes to at least 1001 bytes, the manifest says 1000"
    assert peak < 4 * 1024 * 1024  # never a chunk of the 256 MiB
    assert time.process_time() - start < 5.0  # decoding all of it takes longer on this machine


def test_a_raw_copy_reads_exactly_the_sections_bytes_from_a_longer_source() -> None:
    for section, payload in [(_stored(), DATA), (_zstd(FRAME), FRAME)]:
        source = io.BytesIO(payload + b"the next blob")
        writer = BundleWriter(io.BytesIO())
        assert writer.copy_raw(section, source, WHERE) == 0
        assert source.tell() == len(payload)
        assert writer.sections == [dataclasses.replace(section, offset=4096)]


class _Recording(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.sizes.append(-1 if n is None else n)
        return super().read(n)


def test_a_raw_copy_reads_its_source_in_bounded_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container, "_CHUNK", 100)
    source = _Recording(DATA)
    BundleWriter(io.BytesIO()).copy_raw(_stored(), source, WHERE)
    assert source.sizes == [100] * 5 + [60, 0]


def test_a_raw_copy_decodes_in_bounded_chunks_and_stops_one_byte_past_the_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(container, "_CHUNK", 100)
    assert _copy(_zstd(FRAME), FRAME).sections[0].size == 560
    with pytest.raises(DamagedBundleError) as info:
        _copy(_zstd(FRAME, size=450), FRAME)
    assert str(info.value) == f"{LABEL} decodes to at least 451 bytes, the manifest says 450"


def test_a_failed_raw_copy_leaves_the_writer_as_it_was(tmp_path: Path) -> None:
    """A registry pull retries a damaged cached blob from the network: the retry's bundle is
    the one a first-time success writes, byte for byte."""

    def write(attempts: list[bytes]) -> bytes:
        f = io.BytesIO()
        writer = BundleWriter(f)
        writer.add_bytes("engine", "main", mc.ENGINE)
        for payload in attempts[:-1]:
            with pytest.raises(rtxpack.RtxpackError):
                writer.copy_raw(_zstd(FRAME), io.BytesIO(payload), WHERE)
            assert len(f.getvalue()) == 8192  # the first section and padding, nothing after
            assert len(writer.sections) == 1
        writer.copy_raw(_zstd(FRAME), io.BytesIO(attempts[-1]), WHERE)
        assert [s.offset for s in writer.sections] == [4096, 8192]
        return f.getvalue()

    damaged = FRAME[:20] + bytes(len(FRAME) - 20)
    assert write([FRAME[:-1], damaged, FRAME]) == write([FRAME])


def test_a_file_is_digested_and_added_in_bounded_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(An ONNX source and its external data, whatever their size.)"""
    path = tmp_path / "model.onnx"
    path.write_bytes(DATA)
    opened: list[_Recording] = []

    def recording_open(file: Path, mode: str) -> _Recording:
        assert mode == "rb"
        opened.append(_Recording(Path(file).read_bytes()))
        return opened[-1]

    monkeypatch.setattr(container, "_CHUNK", 100)
    monkeypatch.setattr(container, "open", recording_open, raising=False)
    assert container.digest_file(path) == container.digest(DATA)
    assert opened[0].sizes == [100] * 7  # 560 bytes: five full reads, 60 bytes, the end
    f = io.BytesIO()
    assert BundleWriter(f).add_path("file", "model.onnx", path) == 0
    assert opened[1].sizes == [100] * 7 and f.getvalue()[4096:] == DATA


# ---------------------------------------------------------------------------------------------
# Rewriting a bundle


def test_copy_all_skips_and_replaces_sections_keeping_their_codec(
    tmp_path: Path, base: Path
) -> None:
    out = tmp_path / "out.rtxpack"
    bf = container.open_bundle_file(base)
    try:
        with container.atomic_output(out) as f:
            writer = BundleWriter(f)
            index = writer.copy_all(bf, skip={2}, replacements={1: b"a new source"})
            assert index == {0: 0, 1: 1}
            manifest = dataclasses.replace(bf.manifest, files={})
            writer.finish(manifest.renumbered(index, tuple(writer.sections)))
    finally:
        bf.close()
    with rtxpack.open(out) as b:
        b.verify()
        assert [(s.kind, s.codec) for s in b.manifest.sections] == [
            ("engine", "stored"),
            ("source", "zstd"),
        ]
        assert bytes(b.read_section(1)) == b"a new source"
        assert bytes(b.read_section(0)) == mc.ENGINE


def test_a_bundle_of_a_newer_minor_is_read_but_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "newer.rtxpack"
    path.write_bytes(mc.Base().bytes(version=(1, 9)))
    with rtxpack.open(path) as b:
        b.verify()
    with pytest.raises(rtxpack.UnsupportedVersionError) as info, container.rewriting(path, path):
        pass
    assert str(info.value) == (
        f"{path} uses bundle format 1.9, newer than the 1.1 this rtxpack writes; it can read it "
        "but will not rewrite it (that could lose what the newer format added): upgrade rtxpack "
        "(pip install -U rtxpack)"
    )
    assert (info.value.found, info.value.supported, info.value.path) == ("1.9", "1.1", str(path))
    assert path.read_bytes() == mc.Base().bytes(version=(1, 9))


@pytest.mark.skipif(container.fcntl is None, reason="POSIX locks")
def test_a_rewrite_waits_for_another_and_gives_up_with_a_message(
    tmp_path: Path, base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rewrites of one bundle (two ``cache add``): the second waits for the first; one that
    waits too long says so. The lock file is private to its owner while it is held."""
    lock = tmp_path / ".base.rtxpack.lock"
    monkeypatch.setattr(container, "REWRITE_LOCK_SECONDS", 0.3)
    with container.rewrite_lock(base):
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        with pytest.raises(rtxpack.OutputError) as info, container.rewrite_lock(base):
            pass
        assert str(info.value) == (
            f"cannot rewrite {base}: another process has been rewriting it for 0 s; try again "
            "when it is done"
        )
        assert info.value.path == str(base)
        done: list[str] = []
        waiter = threading.Thread(target=lambda: _locked(base, done))
        monkeypatch.setattr(container, "REWRITE_LOCK_SECONDS", 60.0)
        waiter.start()
        waiter.join(0.2)
        assert done == []  # still waiting
    waiter.join(30)
    assert done == ["locked"]
    assert not lock.exists()


def _locked(path: Path, done: list[str]) -> None:
    with container.rewrite_lock(path):
        done.append("locked")


def test_reading_a_zstd_section_hands_back_the_pages_it_has_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(Resident memory stays bounded while a large section streams: issue 13.)"""
    data = random.Random(1).randbytes(64 * 1024)  # incompressible: 64 KiB stored
    path = tmp_path / "b.rtxpack"
    path.write_bytes(mc.with_section(mc.zstd(data), data, "zstd"))
    monkeypatch.setattr(container, "_CHUNK", 4096)
    released: list[tuple[int, int]] = []
    release = BundleFile._release
    monkeypatch.setattr(
        BundleFile, "_release", lambda self, o, n: released.append((o, n)) or release(self, o, n)
    )
    with rtxpack.open(path) as b:
        s = b.manifest.sections[3]
        assert bytes(b.read_section(3)) == data
    assert s.codec == "zstd" and s.length > 64 * 1024
    # the stream reader's reads were handed back as it went, before the section's end
    assert released[0] == (s.offset, s.length) and len(released) == 2


def test_a_closed_bundle_is_not_read(base: Path) -> None:
    b = rtxpack.open(base)
    b.close()
    with pytest.raises(rtxpack.InvalidArgumentError) as info:
        b.read_section(0)
    assert str(info.value) == f"bundle {base} is closed"


def test_a_private_read_is_a_checked_copy(base: Path) -> None:
    with rtxpack.open(base) as b:
        shared = b.read_section(0)
        private = b.read_section(0, private=True)
        assert isinstance(shared, memoryview) and shared.readonly
        assert type(private) is bytes and private == bytes(shared) == mc.ENGINE
        assert bytes(b.read_section(1, private=True)) == mc.SOURCE
        del shared


def test_running_out_of_memory_while_decoding_says_what_to_do(
    base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(test_outputs.py runs the real thing under an address-space cap, in a subprocess.)"""

    def exhausted(self: BundleFile, section: Section, *, verify: bool = True) -> Any:
        yield b"a first chunk"
        raise MemoryError

    monkeypatch.setattr(BundleFile, "iter_decoded", exhausted)
    with rtxpack.open(base) as b, pytest.raises(rtxpack.InvalidArgumentError) as info:
        b.read_section(2)
    assert str(info.value) == (
        "section file/'notes.txt' decodes to 560 bytes, more than this process can hold in "
        "memory; extract it to a file instead (rtxpack extract streams it)"
    )


def _every_reference() -> bytes:
    """An engine with a source, samples and a source data file; a user file; a cache."""
    parts = [  # kind, name, decoded, codec
        ("engine", "main", mc.ENGINE, "stored"),
        ("source", "main", mc.SOURCE, "zstd"),
        ("file", "notes.txt", mc.NOTES, "zstd"),
        ("samples", "main", b"samples", "stored"),
        ("source_data", "weights.bin", b"weights", "stored"),
        ("runtime_cache", "c1", b"cache bytes", "zstd"),
    ]
    payloads = [mc.zstd(d) if codec == "zstd" else d for _, _, d, codec in parts]
    data, offsets = mc.layout(payloads)
    sections = [
        mc.section(kind, name, offset, payload, decoded, codec)
        for (kind, name, decoded, codec), offset, payload in zip(parts, offsets, payloads)
    ]
    engine = mc.engine_record(
        0, source=1, source_digest=mc.digest(mc.SOURCE), samples=3, source_data=[4]
    )
    cache = {
        "id": "c1",
        "engine": "main",
        "section": 5,
        "environment": mc.environment(),
        "created_at": "2026-11-27T00:00:00Z",
    }
    manifest = mc.manifest(sections, [engine], files={"notes.txt": 2}, caches=[cache])
    return mc.assemble(data, manifest)  # type: ignore[no-any-return]


@pytest.mark.parametrize("drop", [(), (5,), (4,)], ids=["all", "without the cache", "no data"])
def test_a_rewrite_in_another_order_keeps_every_reference_on_its_bytes(
    tmp_path: Path, drop: tuple[int, ...]
) -> None:
    src_path, out = tmp_path / "src.rtxpack", tmp_path / "out.rtxpack"
    src_path.write_bytes(_every_reference())
    src = container.open_bundle_file(src_path)
    try:
        with container.atomic_output(out) as f:
            writer = BundleWriter(f)
            index = {
                i: writer.copy_section(src, src.manifest.sections[i])
                for i in reversed(range(6))
                if i not in drop
            }
            writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        src.close()
    with rtxpack.open(out) as b:
        b.verify()
        (e,) = b.manifest.engines
        assert e.section == 5 - len(drop) and e.source == 4 - len(drop)
        assert bytes(b.read_engine()) == mc.ENGINE
        assert e.source is not None and bytes(b.read_section(e.source)) == mc.SOURCE
        assert e.samples is not None and bytes(b.read_section(e.samples)) == b"samples"
        assert [bytes(b.read_section(i)) for i in e.source_data] == (
            [] if 4 in drop else [b"weights"]
        )
        assert bytes(b.read_file("notes.txt")) == mc.NOTES
        assert [c.id for c in b.manifest.caches] == ([] if 5 in drop else ["c1"])
        if 5 not in drop:
            assert bytes(b.read_cache("c1")) == b"cache bytes"


def test_an_unknown_codec_is_refused_before_anything_is_written() -> None:
    f = io.BytesIO()
    writer = BundleWriter(f)
    with pytest.raises(rtxpack.InvalidArgumentError) as info:
        writer.add_bytes("file", "a.bin", b"data", codec="lz4")
    assert str(info.value) == "codec 'lz4': expected one of stored, zstd"
    assert writer.sections == [] and len(f.getvalue()) == 64


def test_a_mapped_range_hands_back_each_chunk_once_it_has_been_read() -> None:
    """Pages go back in the order they were read, each exactly once, as soon as a whole chunk
    has been handed over (the bound on resident memory while a section streams)."""
    chunk = container._CHUNK

    class Owner:
        def __init__(self) -> None:
            self.released: list[tuple[int, int]] = []

        def _release(self, offset: int, length: int) -> None:
            self.released.append((offset, length))

    owner = Owner()
    data = bytes(range(256)) * (4 * chunk // 256) + b"tail"
    reader = container._MappedRange(owner, 1000, memoryview(data))  # type: ignore[arg-type]
    got = b"".join(reader.read(chunk) for _ in range(4)) + reader.read()
    assert got == data and reader.read(1) == b""
    assert owner.released == [(1000 + i * chunk, chunk) for i in range(4)]
