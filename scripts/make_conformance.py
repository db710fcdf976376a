"""Write the rtxpack conformance suite: small valid and invalid bundles, byte by byte.

    python scripts/make_conformance.py [OUTPUT_DIR]      (default: tests/conformance)

Every file is built here from docs/format.md alone, with msgpack, blake3 and zstandard and no
rtxpack code, so the suite checks the reference reader instead of repeating it.
OUTPUT_DIR/index.json lists each case: its file, the verdict a conforming reader must reach
("valid" or "invalid"), the error class for invalid ones (not-a-bundle, unsupported-version,
damaged, integrity), the stage at which it must be found ("open": reading the header and
manifest; "verify": reading the sections), and the rule of docs/format.md it exercises. The
output is deterministic: tests/format/test_conformance.py checks that the committed suite is what
this script writes.
"""

from __future__ import annotations

import json
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import msgpack
import zstandard

ROOT = Path(__file__).resolve().parents[1]
MAGIC = b"\x89RTXPACK"
HEADER = struct.Struct("<8sHHIQQ32s")
ALIGN = 4096
VERSION = (1, 0)  # the format version the cases are written in (readers of 1.x read them all)

# --------------------------------------------------------------------------------------------
# msgpack with the control a hostile writer has: raw bytes, duplicate keys, chosen int encodings


class Raw(bytes):
    """Bytes inserted into the msgpack stream as they are."""


class Pairs(list):  # type: ignore[type-arg]
    """A msgpack map written from (key, value) pairs, in order, duplicates included."""


def enc(obj: Any) -> bytes:
    if isinstance(obj, Raw):
        return bytes(obj)
    if isinstance(obj, Pairs):
        return _map_header(len(obj)) + b"".join(enc(k) + enc(v) for k, v in obj)
    if isinstance(obj, dict):
        return enc(Pairs(obj.items()))
    if isinstance(obj, (list, tuple)):
        n = len(obj)
        head = (
            bytes([0x90 | n])
            if n < 16
            else b"\xdc" + struct.pack(">H", n)
            if n < 2**16
            else b"\xdd" + struct.pack(">I", n)
        )
        return head + b"".join(enc(v) for v in obj)
    return msgpack.packb(obj, use_bin_type=True)


def _map_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + struct.pack(">H", n) if n < 2**16 else b"\xdf" + struct.pack(">I", n)


def digest(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def zstd(data: bytes, **kw: Any) -> bytes:
    return zstandard.ZstdCompressor(level=3, write_content_size=True, **kw).compress(data)


# --------------------------------------------------------------------------------------------
# Files


def layout(payloads: list[bytes], *, start: int = ALIGN) -> tuple[bytes, list[int]]:
    """Data area (header space included) with each payload at the next 4096-byte boundary."""
    data = bytearray(start)
    offsets = []
    for p in payloads:
        data += bytes(-len(data) % ALIGN)
        offsets.append(len(data))
        data += p
    return bytes(data), offsets


def assemble(
    data: bytes,
    manifest: Any,
    *,
    version: tuple[int, int] = VERSION,
    flags: int = 0,
    m_off: int | None = None,
    m_len: int | None = None,
    m_digest: bytes | None = None,
    tail: bytes = b"",
) -> bytes:
    """Header + data + manifest (+ ``tail``, bytes after the manifest the header does not count).
    ``manifest`` is msgpack-encoded with ``enc`` unless it is ``Raw`` bytes."""
    blob = bytes(manifest) if isinstance(manifest, Raw) else enc(manifest)
    data = bytes(data) + bytes(max(0, HEADER.size - len(data)))
    header = HEADER.pack(
        MAGIC,
        version[0],
        version[1],
        flags,
        len(data) if m_off is None else m_off,
        len(blob) if m_len is None else m_len,
        blake3.blake3(blob).digest() if m_digest is None else m_digest,
    )
    return header + data[HEADER.size :] + blob + tail


STRATEGY = {
    "dynamic_shapes_kernel_specialization_strategy": "lazy",
    "cuda_graph_strategy": "disabled",
    "execution_context_allocation_strategy": "static",
}
ENGINE = b"vtrt" + bytes(range(256)) * 8  # readers never look inside an engine
SOURCE = b"ONNX model bytes " * 64
NOTES = b"release notes\n" * 40


def section(kind: str, name: str, offset: int, payload: bytes, decoded: bytes, codec: str) -> dict:
    return {
        "kind": kind,
        "name": name,
        "offset": offset,
        "length": len(payload),
        "codec": codec,
        "size": len(decoded),
        "digest": digest(decoded),
    }


def engine_record(section_index: int, **changes: Any) -> dict:
    record: dict[str, Any] = {
        "name": "main",
        "section": section_index,
        "trt_version": "1.7.1.116",
        "compute_capabilities": ["8.9"],
        "hardware_portable": False,
        "platform": "linux_x86_64",
        "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 16]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 8]}],
        "profiles": [{"x": {"min": [1, 16], "opt": [4, 16], "max": [8, 16]}}],
        "strategy": dict(STRATEGY),
        "source": None,
        "source_digest": None,
        "samples": None,
    }
    record.update(changes)
    return record


def environment(**changes: Any) -> dict:
    env = {
        "trt_version": "1.7.1.116",
        "gpu_name": "NVIDIA GeForce RTX 4090",
        "compute_capability": "8.9",
        "driver_version": "580.65",
        "os": "linux",
    }
    env.update(changes)
    return env


def manifest(sections: list, engines: list, **extra: Any) -> dict:
    m: dict[str, Any] = {
        "rtxpack_version": "0.1.0",
        "created_at": "2026-11-27T00:00:00Z",
        "sections": sections,
        "engines": engines,
    }
    m.update(extra)
    return m


class Base:
    """The reference case: an engine (stored), its ONNX source (zstd) and a user file (zstd)."""

    def __init__(self, engine: bytes = ENGINE, source: bytes = SOURCE, notes: bytes = NOTES):
        self.payloads = [engine, zstd(source), zstd(notes)]
        self.decoded = [engine, source, notes]
        self.data, self.offsets = layout(self.payloads)
        self.sections = [
            section("engine", "main", self.offsets[0], engine, engine, "stored"),
            section("source", "main", self.offsets[1], self.payloads[1], source, "zstd"),
            section("file", "notes.txt", self.offsets[2], self.payloads[2], notes, "zstd"),
        ]
        self.engine = engine_record(0, source=1, source_digest=digest(source))
        self.manifest = manifest(
            self.sections,
            [self.engine],
            files={"notes.txt": 2},
            metadata={"team": "conformance"},
        )

    def bytes(self, **kw: Any) -> bytes:
        return assemble(self.data, self.manifest, **kw)


def with_section(payload: bytes, decoded: bytes, codec: str, kind: str = "file") -> bytes:
    """The base bundle plus one extra user file section holding ``payload``."""
    b = Base()
    data, offsets = layout([*b.payloads, payload])
    s = section(kind, "extra.bin", offsets[3], payload, decoded, codec)
    b.manifest["sections"].append(s)
    if kind == "file":
        b.manifest["files"]["extra.bin"] = 3
    return assemble(data, b.manifest)


def edit(change: Callable[[dict], Any], **kw: Any) -> bytes:
    """The base bundle with its manifest changed by ``change`` (which may return a new one)."""
    b = Base()
    new = change(b.manifest)
    return assemble(b.data, b.manifest if new is None else new, **kw)


def with_engine(**changes: Any) -> bytes:
    def change(m: dict) -> None:
        m["engines"][0].update(changes)

    return edit(change)


def with_env(**changes: Any) -> bytes:
    """The base bundle plus one prewarmed cache whose environment has ``changes``."""
    b = Base()
    cache = zstd(b"cache bytes")
    data, offsets = layout([*b.payloads, cache])
    b.manifest["sections"].append(
        section("runtime_cache", "c1", offsets[3], cache, b"cache bytes", "zstd")
    )
    b.manifest["caches"] = [
        {
            "id": "c1",
            "engine": "main",
            "section": 3,
            "environment": environment(**changes),
            "created_at": "2026-11-27T00:00:00Z",
        }
    ]
    return assemble(data, b.manifest)


def many_sections(n: int, kind: str, *, records: Callable[[int], Any]) -> bytes:
    """The base bundle plus ``n`` empty sections of ``kind`` (all at one offset: empty sections
    overlap nothing) and whatever ``records(n)`` adds to the manifest."""
    b = Base()
    at = b.offsets[2] + ALIGN
    data = b.data + bytes(at - len(b.data))
    for i in range(n):
        b.manifest["sections"].append(section(kind, f"s{i}", at, b"", b"", "stored"))
    records_for = records(n)
    for key, value in records_for.items():
        b.manifest[key] = value
    return assemble(data, b.manifest)


def files(n: int) -> bytes:
    def records(n: int) -> dict:
        table = {"notes.txt": 2}
        table.update({f"f{i}": 3 + i for i in range(n)})
        return {"files": table}

    return many_sections(n, "file", records=records)


def caches(n: int) -> bytes:
    def records(n: int) -> dict:
        return {
            "caches": [
                {
                    "id": f"{i:08x}",
                    "engine": "main",
                    "section": 3 + i,
                    "environment": environment(),
                    "created_at": "2026-11-27T00:00:00Z",
                }
                for i in range(n)
            ]
        }

    return many_sections(n, "runtime_cache", records=records)


def engines(n: int) -> bytes:
    b = Base()
    at = b.offsets[2] + ALIGN
    data = b.data + bytes(at - len(b.data))
    for i in range(1, n):
        b.manifest["sections"].append(section("engine", f"e{i}", at, b"", b"", "stored"))
        b.manifest["engines"].append(engine_record(len(b.manifest["sections"]) - 1, name=f"e{i}"))
    return assemble(data, b.manifest)


def nested(depth: int) -> Any:
    """A value with ``depth`` levels of containers (a scalar has depth 0)."""
    value: Any = 0
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def zstd_frames(*frames: bytes) -> bytes:
    return with_section(b"".join(frames), b"".join(_plain_frames(frames)), "zstd")


def _plain_frames(frames: tuple[bytes, ...]) -> list[bytes]:
    out = []
    for f in frames:
        if f[:4] == b"\x28\xb5\x2f\xfd":
            out.append(zstandard.ZstdDecompressor().decompress(f))
    return out


def skippable(payload: bytes) -> bytes:
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


def raw_block_frame(window_log: int, payload: bytes) -> bytes:
    """A hand-made zstd frame: no content size, a window of 2**window_log, one raw block."""
    descriptor = 0x00  # FCS flag 0, not single segment, no checksum, no dictionary
    window = (window_log - 10) << 3
    block = struct.pack("<I", 1 | (0 << 1) | (len(payload) << 3))[:3]  # last block, raw
    return b"\x28\xb5\x2f\xfd" + bytes([descriptor, window]) + block + payload


def signed_int_offset() -> bytes:
    """The engine's offset written as msgpack int64 (0xd3), as a writer in another language may."""
    b = Base()
    off = b.sections[0]["offset"]
    b.manifest["sections"][0] = Pairs(
        (k, Raw(b"\xd3" + struct.pack(">q", v)) if k == "offset" else v)
        for k, v in b.sections[0].items()
    )
    return assemble(b.data, b.manifest) if off else b""


def dup_top_key(first_wins_differs: bool = True) -> bytes:
    b = Base()
    other = dict(b.manifest["sections"][0], digest=digest(b"other"))
    pairs = Pairs(b.manifest.items())
    pairs.append(("sections", [other, *b.manifest["sections"][1:]]))
    return assemble(b.data, pairs)


def dup_record_key() -> bytes:
    b = Base()
    pairs = Pairs(b.manifest["engines"][0].items())
    pairs.append(("name", "other"))
    b.manifest["engines"][0] = pairs
    return assemble(b.data, b.manifest)


def overlap_empty(empty_first: bool) -> bytes:
    b = Base()
    empty = section("file", "empty", b.offsets[0], b"", b"", "stored")
    b.manifest["sections"].insert(0 if empty_first else 3, empty)
    if empty_first:  # every index moves by one
        b.manifest["engines"][0].update(section=1, source=2)
        b.manifest["files"] = {"notes.txt": 3, "empty": 0}
    else:
        b.manifest["files"]["empty"] = 3
    return assemble(b.data, b.manifest)


def overlap_full(second_first: bool) -> bytes:
    b = Base()
    dup = section("file", "copy", b.offsets[2], b.payloads[2], NOTES, "zstd")
    b.manifest["sections"].insert(0 if second_first else 3, dup)
    if second_first:
        b.manifest["engines"][0].update(section=1, source=2)
        b.manifest["files"] = {"notes.txt": 3, "copy": 0}
    else:
        b.manifest["files"]["copy"] = 3
    return assemble(b.data, b.manifest)


def reordered() -> bytes:
    """The section list in another order than the file (engine last), indexes following."""
    b = Base()
    s = b.manifest["sections"]
    b.manifest["sections"] = [s[2], s[1], s[0]]
    b.manifest["engines"][0].update(section=2, source=1)
    b.manifest["files"] = {"notes.txt": 0}
    return assemble(b.data, b.manifest)


def gap_and_padding() -> bytes:
    """Sections 3 pages apart with non-zero bytes in the gaps: readers never read gaps."""
    b = Base()
    data, offsets = layout([b.payloads[0], b"", b.payloads[1], b"", b.payloads[2]])
    data = bytearray(data)
    for i in range(len(ENGINE) + ALIGN, offsets[2]):
        data[i] = 0xAA
    for s, off in zip(b.manifest["sections"], (offsets[0], offsets[2], offsets[4])):
        s["offset"] = off
    return assemble(bytes(data), b.manifest)


def empty_bundle() -> bytes:
    return assemble(b"", manifest([], []))


def zero_length_sections() -> bytes:
    """An empty stored user file at the very end (offset == manifest offset): valid."""
    b = Base()
    end = len(b.data) + (-len(b.data) % ALIGN)
    data = b.data + bytes(end - len(b.data))
    b.manifest["sections"].append(section("file", "empty.txt", end, b"", b"", "stored"))
    b.manifest["files"]["empty.txt"] = 3
    return assemble(data, b.manifest)


def unknown_kind() -> bytes:
    return with_section(zstd(b"delta"), b"delta", "zstd", kind="weights_delta")


def name(value: str) -> bytes:
    return with_engine(name=value)


def manifest_tail(extra: bytes) -> bytes:
    b = Base()
    return assemble(b.data, Raw(enc(b.manifest) + extra))


def header_field(**kw: Any) -> bytes:
    return Base().bytes(**kw)


def truncated(n: int) -> bytes:
    return Base().bytes()[:n]


def profile_case(inputs: list, profiles: list) -> bytes:
    return with_engine(inputs=inputs, profiles=profiles)


def _ratio_case(*, exact: bool) -> bytes:
    """zstd cannot reach 32768x (an RLE block is 4 bytes for 128 KiB, plus the frame header), so
    a size of exactly 32768 x length passes the open-time bound and fails when decoded."""
    payload = zstd(bytes(10 * 32768))
    return with_section(payload, bytes(32768 * len(payload) + (0 if exact else 1)), "zstd")


def _manifest_in_header() -> bytes:
    blob = enc(manifest([], []))
    data = bytearray(HEADER.size + len(blob) - 1)
    raw = assemble(bytes(data), Raw(blob), m_off=63)
    return raw[: 63 + len(blob)]


def _two_engines_named(value: str) -> bytes:
    b = Base()
    at = b.offsets[2] + ALIGN
    data = b.data + bytes(at - len(b.data))
    b.manifest["sections"].append(section("engine", "main", at, b"", b"", "stored"))
    b.manifest["engines"].append(engine_record(3, name=value))
    return assemble(data, b.manifest)


def _cache_unknown_engine() -> bytes:
    raw = with_env()
    header = HEADER.unpack(raw[:64])
    m = msgpack.unpackb(raw[header[4] :])
    m["caches"][0]["engine"] = "other"
    return assemble(raw[: header[4]], m)


def _cache_negative_shape() -> bytes:
    raw = with_env()
    header = HEADER.unpack(raw[:64])
    m = msgpack.unpackb(raw[header[4] :])
    m["caches"][0]["shapes"] = [{"x": [-1, 16]}]
    return assemble(raw[: header[4]], m)


X_DYN = [{"name": "x", "dtype": "float32", "shape": [-1, 16]}]
X_STATIC = [{"name": "x", "dtype": "float32", "shape": [2, 16]}]
RANGE = {"min": [1, 16], "opt": [4, 16], "max": [8, 16]}

# (file, verdict, error, stage, rule, description, builder)
Case = tuple[str, str, str | None, str, str, str, Callable[[], bytes]]
S = 4096  # the default string bound, in code points
N = 256  # the name bound, in code points

CASES: list[Case] = [
    # -- valid ------------------------------------------------------------------------------
    ("valid/base", "valid", None, "verify", "layout", "engine, source, user file", Base().bytes),
    ("valid/empty", "valid", None, "verify", "layout", "no sections, no engines", empty_bundle),
    (
        "valid/minor-9-flags",
        "valid",
        None,
        "verify",
        "header.minor",
        "a newer minor version and non-zero flags",
        lambda: header_field(version=(1, 9), flags=7),
    ),
    (
        "valid/unknown-keys",
        "valid",
        None,
        "verify",
        "manifest.unknown",
        "unknown top-level keys and record keys are ignored",
        lambda: edit(
            lambda m: (
                m.update(future={"a": [1, 2.5, None, True]}),
                m["engines"][0].update(future_field=1),
                m["sections"][0].update(future_field="x"),
            )[-1]
        ),
    ),
    (
        "valid/unknown-kind",
        "valid",
        None,
        "verify",
        "section.kind",
        "a section of an unknown kind",
        unknown_kind,
    ),
    (
        "valid/section-order",
        "valid",
        None,
        "verify",
        "section.order",
        "section list order differs from file order",
        reordered,
    ),
    (
        "valid/gaps",
        "valid",
        None,
        "verify",
        "section.gaps",
        "gaps of several pages with non-zero bytes between sections",
        gap_and_padding,
    ),
    (
        "valid/empty-section-at-end",
        "valid",
        None,
        "verify",
        "section.bounds",
        "an empty stored section at the manifest's offset",
        zero_length_sections,
    ),
    (
        "valid/empty-section-first",
        "valid",
        None,
        "verify",
        "section.overlap",
        "an empty section at another section's offset, listed before it",
        lambda: overlap_empty(True),
    ),
    (
        "valid/empty-section-after",
        "valid",
        None,
        "verify",
        "section.overlap",
        "an empty section at another section's offset, listed after it",
        lambda: overlap_empty(False),
    ),
    (
        "valid/zstd-checksum",
        "valid",
        None,
        "verify",
        "section.zstd",
        "a zstd frame with a content checksum and no content size",
        lambda: with_section(
            zstandard.ZstdCompressor(write_checksum=True, write_content_size=False).compress(
                b"abc" * 999
            ),
            b"abc" * 999,
            "zstd",
        ),
    ),
    (
        "valid/signed-int",
        "valid",
        None,
        "verify",
        "manifest.integers",
        "an offset written as msgpack int64",
        signed_int_offset,
    ),
    (
        "valid/nil-optional",
        "valid",
        None,
        "verify",
        "manifest.nil",
        "source, source_digest and samples are nil",
        lambda: edit(
            lambda m: (
                m["engines"][0].update(source=None, source_digest=None, samples=None),
                m["sections"].__setitem__(1, dict(m["sections"][1], kind="file", name="src")),
                m["files"].update(src=1),
            )[-1]
        ),
    ),
    (
        "valid/names-unicode",
        "valid",
        None,
        "verify",
        "names",
        "names with a space, accents, CJK and an emoji",
        lambda: name("moteur é 模型 😀"),
    ),
    (
        "valid/name-new-emoji",
        "valid",
        None,
        "verify",
        "names",
        "a name with an emoji newer than Unicode 14 (U+1FAE8)",
        lambda: name("shaking \U0001fae8"),
    ),
    (
        "valid/name-256",
        "valid",
        None,
        "verify",
        "names",
        f"a name of {N} code points (3 bytes each)",
        lambda: name("模" * N),
    ),
    (
        "valid/string-4096",
        "valid",
        None,
        "verify",
        "strings",
        f"a {S}-code-point string of 2-byte characters",
        lambda: with_engine(platform="é" * S),
    ),
    (
        "valid/depth-32",
        "valid",
        None,
        "verify",
        "manifest.depth",
        "an unknown key nested 32 levels deep",
        lambda: edit(lambda m: m.update(future=nested(32))),
    ),
    (
        "valid/static-no-profile",
        "valid",
        None,
        "verify",
        "engine.profiles",
        "an engine with only static inputs and no profile",
        lambda: profile_case(X_STATIC, []),
    ),
    (
        "valid/profiles-not-recorded",
        "valid",
        None,
        "verify",
        "engine.profiles",
        "a dynamic input and no profiles (not recorded)",
        lambda: profile_case(X_DYN, []),
    ),
    (
        "valid/no-signature",
        "valid",
        None,
        "verify",
        "engine.profiles",
        "an engine without a recorded signature and no profiles",
        lambda: with_engine(inputs=[], outputs=[], profiles=[]),
    ),
    (
        "valid/strategy-extra-key",
        "valid",
        None,
        "verify",
        "engine.strategy",
        "a strategy with an unknown extra key",
        lambda: with_engine(strategy=dict(STRATEGY, future_setting="x")),
    ),
    ("valid/engines-256", "valid", None, "verify", "limits", "256 engines", lambda: engines(256)),
    ("valid/caches-1024", "valid", None, "verify", "limits", "1024 caches", lambda: caches(1024)),
    (
        "valid/files-1024",
        "valid",
        None,
        "verify",
        "limits",
        "1024 user files (one + 1023)",
        lambda: files(1023),
    ),
    (
        "valid/metadata-1024",
        "valid",
        None,
        "verify",
        "limits",
        "1024 metadata entries",
        lambda: edit(lambda m: m.update(metadata={f"k{i}": "v" for i in range(1024)})),
    ),
    (
        "valid/rank-16",
        "valid",
        None,
        "verify",
        "limits",
        "an output of rank 16",
        lambda: with_engine(outputs=[{"name": "y", "dtype": "float32", "shape": [1] * 16}]),
    ),
    (
        "valid/dim-2-40",
        "valid",
        None,
        "verify",
        "limits",
        "an output dimension of 2**40",
        lambda: with_engine(outputs=[{"name": "y", "dtype": "float32", "shape": [2**40]}]),
    ),
    (
        "valid/profiles-64",
        "valid",
        None,
        "verify",
        "limits",
        "64 profiles",
        lambda: with_engine(profiles=[{"x": RANGE}] * 64),
    ),
    # -- not a bundle / version --------------------------------------------------------------
    (
        "invalid/empty-file",
        "invalid",
        "not-a-bundle",
        "open",
        "header.magic",
        "0 bytes",
        lambda: b"",
    ),
    (
        "invalid/bad-magic",
        "invalid",
        "not-a-bundle",
        "open",
        "header.magic",
        "PNG magic",
        lambda: b"\x89PNG\r\n\x1a\n" + Base().bytes()[8:],
    ),
    (
        "invalid/half-header",
        "invalid",
        "damaged",
        "open",
        "header.size",
        "the magic and 20 more bytes",
        lambda: truncated(28),
    ),
    (
        "invalid/major-2",
        "invalid",
        "unsupported-version",
        "open",
        "header.major",
        "format 2.0",
        lambda: header_field(version=(2, 0)),
    ),
    (
        "invalid/major-0",
        "invalid",
        "unsupported-version",
        "open",
        "header.major",
        "format 0.9",
        lambda: header_field(version=(0, 9)),
    ),
    # -- header bounds -----------------------------------------------------------------------
    (
        "invalid/manifest-length-0",
        "invalid",
        "damaged",
        "open",
        "header.bounds",
        "L = 0",
        lambda: header_field(m_len=0),
    ),
    (
        "invalid/manifest-length-over-limit",
        "invalid",
        "damaged",
        "open",
        "header.bounds",
        "L = 16 MiB + 1",
        lambda: header_field(m_len=16 * 1024 * 1024 + 1),
    ),
    (
        "invalid/manifest-offset-63",
        "invalid",
        "damaged",
        "open",
        "header.bounds",
        "M = 63 (inside the header)",
        _manifest_in_header,
    ),
    (
        "invalid/extra-bytes",
        "invalid",
        "damaged",
        "open",
        "header.bounds",
        "one byte after the manifest",
        lambda: Base().bytes(tail=b"\0"),
    ),
    (
        "invalid/truncated",
        "invalid",
        "damaged",
        "open",
        "header.bounds",
        "the last byte missing",
        lambda: Base().bytes()[:-1],
    ),
    (
        "invalid/manifest-digest",
        "invalid",
        "integrity",
        "open",
        "manifest.digest",
        "a wrong manifest digest",
        lambda: header_field(m_digest=bytes(32)),
    ),
    # -- manifest decoding -------------------------------------------------------------------
    (
        "invalid/trailing-msgpack",
        "invalid",
        "damaged",
        "open",
        "manifest.msgpack",
        "a second msgpack object after the manifest map",
        lambda: manifest_tail(b"\xc0"),
    ),
    (
        "invalid/not-a-map",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "the manifest is a list",
        lambda: assemble(b"", [1, 2]),
    ),
    (
        "invalid/duplicate-top-key",
        "invalid",
        "damaged",
        "open",
        "manifest.duplicate-keys",
        "'sections' twice, the second with another digest",
        dup_top_key,
    ),
    (
        "invalid/duplicate-record-key",
        "invalid",
        "damaged",
        "open",
        "manifest.duplicate-keys",
        "'name' twice in an engine record",
        dup_record_key,
    ),
    (
        "invalid/bin-value",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "a bin value in an unknown key",
        lambda: edit(lambda m: m.update(future=b"\x00\x01")),
    ),
    (
        "invalid/bin-empty-value",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "an empty bin value in an unknown key",
        lambda: edit(lambda m: m.update(future=b"")),
    ),
    (
        "invalid/bin-key",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "a bin map key",
        lambda: edit(lambda m: Pairs([*m.items(), (b"future", 1)])),
    ),
    (
        "invalid/int-key",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "an int map key in metadata",
        lambda: edit(lambda m: m.update(metadata=Pairs([(1, "a")]))),
    ),
    (
        "invalid/ext-value",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "an ext value in an unknown key",
        lambda: edit(lambda m: m.update(future=Raw(b"\xd4\x01\x00"))),
    ),
    (
        "invalid/nan",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "NaN in an unknown key",
        lambda: edit(lambda m: m.update(future=float("nan"))),
    ),
    (
        "invalid/infinity",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "-Infinity in an unknown key",
        lambda: edit(lambda m: m.update(future=[float("-inf")])),
    ),
    (
        "invalid/depth-33",
        "invalid",
        "damaged",
        "open",
        "manifest.depth",
        "an unknown key nested 33 levels deep",
        lambda: edit(lambda m: m.update(future=nested(33))),
    ),
    (
        "invalid/invalid-utf8",
        "invalid",
        "damaged",
        "open",
        "manifest.msgpack",
        "a string that is not UTF-8",
        lambda: edit(lambda m: m.update(future=Raw(b"\xa2\xc3\x28"))),
    ),
    (
        "invalid/nil-caches",
        "invalid",
        "damaged",
        "open",
        "manifest.nil",
        "caches: nil (only keys documented 'or nil' may be nil)",
        lambda: edit(lambda m: m.update(caches=None)),
    ),
    (
        "invalid/nil-metadata",
        "invalid",
        "damaged",
        "open",
        "manifest.nil",
        "metadata: nil",
        lambda: edit(lambda m: m.update(metadata=None)),
    ),
    (
        "invalid/offset-as-float",
        "invalid",
        "damaged",
        "open",
        "manifest.types",
        "an offset written as a float",
        lambda: edit(lambda m: m["sections"][0].update(offset=float(m["sections"][0]["offset"]))),
    ),
    (
        "invalid/offset-2-63",
        "invalid",
        "damaged",
        "open",
        "manifest.integers",
        "an offset of 2**63 (uint64)",
        lambda: edit(lambda m: m["sections"][0].update(offset=2**63)),
    ),
    (
        "invalid/negative-length",
        "invalid",
        "damaged",
        "open",
        "manifest.integers",
        "a length of -1",
        lambda: edit(lambda m: m["sections"][0].update(length=-1)),
    ),
    # -- names and strings -------------------------------------------------------------------
    (
        "invalid/name-257",
        "invalid",
        "damaged",
        "open",
        "names",
        f"a name of {N + 1} code points",
        lambda: name("a" * (N + 1)),
    ),
    (
        "invalid/name-empty",
        "invalid",
        "damaged",
        "open",
        "names",
        "an empty name",
        lambda: name(""),
    ),
    (
        "invalid/name-newline",
        "invalid",
        "damaged",
        "open",
        "names",
        "a newline in a name",
        lambda: name("main\nOK signed"),
    ),
    (
        "invalid/name-escape",
        "invalid",
        "damaged",
        "open",
        "names",
        "ESC in a name",
        lambda: name("\x1b[2Jmain"),
    ),
    (
        "invalid/name-c1",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+0085 (C1 control) in a name",
        lambda: name("main\x85"),
    ),
    (
        "invalid/name-bidi",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+202E (right-to-left override) in a name",
        lambda: name("main\u202egnp.exe"),
    ),
    (
        "invalid/name-nbsp",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+00A0 (no-break space)",
        lambda: name("main\u00a0"),
    ),
    (
        "invalid/name-zero-width",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+200B (zero width space)",
        lambda: name("ma\u200bin"),
    ),
    (
        "invalid/name-private-use",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+E000 (private use)",
        lambda: name("main\ue000"),
    ),
    (
        "invalid/name-tag",
        "invalid",
        "damaged",
        "open",
        "names",
        "U+E0041 (tag character)",
        lambda: name("main\U000e0041"),
    ),
    (
        "invalid/file-name-newline",
        "invalid",
        "damaged",
        "open",
        "names",
        "a newline in a user file name",
        lambda: edit(
            lambda m: (m["sections"][2].update(name="a\nb"), m.update(files={"a\nb": 2}))[-1]
        ),
    ),
    (
        "invalid/string-4097",
        "invalid",
        "damaged",
        "open",
        "strings",
        f"a string of {S + 1} code points",
        lambda: with_engine(platform="é" * (S + 1)),
    ),
    (
        "invalid/unknown-string-4097",
        "invalid",
        "damaged",
        "open",
        "strings",
        f"a string of {S + 1} code points in an unknown key",
        lambda: edit(lambda m: m.update(future=["a" * (S + 1)])),
    ),
    (
        "invalid/unknown-key-4097",
        "invalid",
        "damaged",
        "open",
        "strings",
        f"a map key of {S + 1} code points inside an unknown key",
        lambda: edit(lambda m: m.update(future={"k" * (S + 1): 1})),
    ),
    # -- limits ------------------------------------------------------------------------------
    (
        "invalid/engines-257",
        "invalid",
        "damaged",
        "open",
        "limits",
        "257 engines",
        lambda: engines(257),
    ),
    (
        "invalid/caches-1025",
        "invalid",
        "damaged",
        "open",
        "limits",
        "1025 caches",
        lambda: caches(1025),
    ),
    (
        "invalid/files-1025",
        "invalid",
        "damaged",
        "open",
        "limits",
        "1025 user files",
        lambda: files(1024),
    ),
    (
        "invalid/metadata-1025",
        "invalid",
        "damaged",
        "open",
        "limits",
        "1025 metadata entries",
        lambda: edit(lambda m: m.update(metadata={f"k{i}": "v" for i in range(1025)})),
    ),
    (
        "invalid/rank-17",
        "invalid",
        "damaged",
        "open",
        "limits",
        "an output of rank 17",
        lambda: with_engine(outputs=[{"name": "y", "dtype": "float32", "shape": [1] * 17}]),
    ),
    (
        "invalid/dim-2-40-plus-1",
        "invalid",
        "damaged",
        "open",
        "limits",
        "an output dimension of 2**40 + 1",
        lambda: with_engine(outputs=[{"name": "y", "dtype": "float32", "shape": [2**40 + 1]}]),
    ),
    (
        "invalid/profiles-65",
        "invalid",
        "damaged",
        "open",
        "limits",
        "65 profiles",
        lambda: with_engine(profiles=[{"x": RANGE}] * 65),
    ),
    (
        "invalid/ccs-65",
        "invalid",
        "damaged",
        "open",
        "limits",
        "65 compute capabilities",
        lambda: with_engine(compute_capabilities=["8.9"] * 65),
    ),
    (
        "invalid/migrations-1025",
        "invalid",
        "damaged",
        "open",
        "limits",
        "1025 migration records",
        lambda: edit(
            lambda m: m.update(
                migrations=[{"from": "1.0", "to": "1.0", "rtxpack": "0", "time": "t"}] * 1025
            )
        ),
    ),
    (
        "invalid/size-over-64gib",
        "invalid",
        "damaged",
        "open",
        "limits",
        "a section size of 64 GiB + 1",
        lambda: edit(lambda m: m["sections"][1].update(size=64 * 1024**3 + 1)),
    ),
    # -- sections ----------------------------------------------------------------------------
    (
        "invalid/misaligned",
        "invalid",
        "damaged",
        "open",
        "section.bounds",
        "an offset 8 bytes past a boundary",
        lambda: edit(lambda m: m["sections"][0].update(offset=m["sections"][0]["offset"] + 8)),
    ),
    (
        "invalid/offset-0",
        "invalid",
        "damaged",
        "open",
        "section.bounds",
        "a section over the header",
        lambda: edit(lambda m: m["sections"][0].update(offset=0)),
    ),
    (
        "invalid/into-manifest",
        "invalid",
        "damaged",
        "open",
        "section.bounds",
        "the last section runs into the manifest",
        lambda: edit(lambda m: m["sections"][2].update(length=m["sections"][2]["length"] + ALIGN)),
    ),
    (
        "invalid/empty-past-manifest",
        "invalid",
        "damaged",
        "open",
        "section.bounds",
        "an empty section past the manifest offset",
        lambda: edit(
            lambda m: (
                m["sections"].append(section("file", "e", 2**20, b"", b"", "stored")),
                m["files"].update(e=3),
            )[-1]
        ),
    ),
    (
        "invalid/overlap-listed-after",
        "invalid",
        "damaged",
        "open",
        "section.overlap",
        "two sections over the same bytes, the copy listed last",
        lambda: overlap_full(False),
    ),
    (
        "invalid/overlap-listed-before",
        "invalid",
        "damaged",
        "open",
        "section.overlap",
        "two sections over the same bytes, the copy listed first",
        lambda: overlap_full(True),
    ),
    (
        "invalid/stored-size",
        "invalid",
        "damaged",
        "open",
        "section.stored-size",
        "a stored section whose size differs from its length",
        lambda: edit(lambda m: m["sections"][0].update(size=m["sections"][0]["size"] + 1)),
    ),
    (
        "invalid/zstd-ratio-bound",
        "invalid",
        "damaged",
        "verify",
        "section.size",
        "a zstd section claiming exactly 32768 x its length opens, then decodes short",
        lambda: _ratio_case(exact=True),
    ),
    (
        "invalid/zstd-ratio",
        "invalid",
        "damaged",
        "open",
        "section.zstd-ratio",
        "a zstd section claiming 32768 x its length + 1",
        lambda: _ratio_case(exact=False),
    ),
    (
        "invalid/zstd-empty",
        "invalid",
        "damaged",
        "open",
        "section.zstd",
        "a zstd section of length 0 (size 0)",
        lambda: with_section(b"", b"", "zstd"),
    ),
    (
        "invalid/unknown-codec",
        "invalid",
        "damaged",
        "open",
        "section.codec",
        "codec lz4",
        lambda: edit(lambda m: m["sections"][1].update(codec="lz4")),
    ),
    (
        "invalid/digest-uppercase",
        "invalid",
        "damaged",
        "open",
        "section.digest",
        "a digest in uppercase hex",
        lambda: edit(lambda m: m["sections"][0].update(digest=m["sections"][0]["digest"].upper())),
    ),
    (
        "invalid/zstd-two-frames",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "two zstd frames (size and digest cover both)",
        lambda: zstd_frames(zstd(b"a" * 100), zstd(b"b" * 100)),
    ),
    (
        "invalid/zstd-skippable-after",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "a zstd frame followed by a skippable frame",
        lambda: with_section(zstd(b"a" * 100) + skippable(b"hidden"), b"a" * 100, "zstd"),
    ),
    (
        "invalid/zstd-skippable-only",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "a skippable frame and nothing else (size 0)",
        lambda: with_section(skippable(b"hidden"), b"", "zstd"),
    ),
    (
        "invalid/zstd-garbage-after",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "a zstd frame followed by one zero byte",
        lambda: with_section(zstd(b"a" * 100) + b"\0", b"a" * 100, "zstd"),
    ),
    (
        "invalid/zstd-window-2-28",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "a zstd frame declaring a 2**28-byte window",
        lambda: with_section(raw_block_frame(28, b"abc"), b"abc", "zstd"),
    ),
    (
        "invalid/zstd-not-zstd",
        "invalid",
        "damaged",
        "verify",
        "section.zstd",
        "an engine labelled zstd",
        lambda: edit(lambda m: m["sections"][0].update(codec="zstd")),
    ),
    (
        "invalid/zstd-short",
        "invalid",
        "damaged",
        "verify",
        "section.size",
        "a zstd section decoding to one byte less than its size",
        lambda: edit(lambda m: m["sections"][1].update(size=m["sections"][1]["size"] + 1)),
    ),
    (
        "invalid/zstd-long",
        "invalid",
        "damaged",
        "verify",
        "section.size",
        "a zstd section decoding to one byte more than its size",
        lambda: edit(lambda m: m["sections"][1].update(size=m["sections"][1]["size"] - 1)),
    ),
    (
        "invalid/stored-digest",
        "invalid",
        "integrity",
        "verify",
        "section.digest",
        "a stored section whose bytes do not match its digest",
        lambda: edit(lambda m: m["sections"][0].update(digest=digest(b"other"))),
    ),
    (
        "invalid/zstd-digest",
        "invalid",
        "integrity",
        "verify",
        "section.digest",
        "a zstd section whose decoded bytes do not match its digest",
        lambda: edit(lambda m: m["sections"][2].update(digest=digest(b"other"))),
    ),
    # -- records -----------------------------------------------------------------------------
    (
        "invalid/profile-empty-map",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "profiles: [{}] for a dynamic input",
        lambda: profile_case(X_DYN, [{}]),
    ),
    (
        "invalid/profile-unknown-input",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "a profile naming an input the engine does not have",
        lambda: profile_case(X_DYN, [{"x": RANGE, "z": RANGE}]),
    ),
    (
        "invalid/profile-rank",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "a profile range of another rank than its input",
        lambda: profile_case(X_DYN, [{"x": {"min": [1], "opt": [4], "max": [8]}}]),
    ),
    (
        "invalid/profile-static-mismatch",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "a profile range that differs from a static dimension",
        lambda: profile_case(X_DYN, [{"x": {"min": [1, 15], "opt": [4, 16], "max": [8, 16]}}]),
    ),
    (
        "invalid/profile-min-over-max",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "min > max",
        lambda: profile_case(X_DYN, [{"x": {"min": [9, 16], "opt": [9, 16], "max": [8, 16]}}]),
    ),
    (
        "invalid/profile-negative",
        "invalid",
        "damaged",
        "open",
        "engine.profiles",
        "a negative profile dimension",
        lambda: profile_case(X_DYN, [{"x": {"min": [-1, 16], "opt": [4, 16], "max": [8, 16]}}]),
    ),
    (
        "invalid/shape-minus-2",
        "invalid",
        "damaged",
        "open",
        "engine.shapes",
        "an input dimension of -2",
        lambda: profile_case(
            [{"name": "x", "dtype": "float32", "shape": [-2, 16]}], [{"x": RANGE}]
        ),
    ),
    (
        "invalid/strategy-empty",
        "invalid",
        "damaged",
        "open",
        "engine.strategy",
        "strategy: {}",
        lambda: with_engine(strategy={}),
    ),
    (
        "invalid/strategy-missing-key",
        "invalid",
        "damaged",
        "open",
        "engine.strategy",
        "a strategy without cuda_graph_strategy",
        lambda: with_engine(
            strategy={k: v for k, v in STRATEGY.items() if k != "cuda_graph_strategy"}
        ),
    ),
    (
        "invalid/source-digest",
        "invalid",
        "damaged",
        "open",
        "engine.digest",
        "a source_digest that is not blake3:<64 hex>",
        lambda: with_engine(source_digest="sha256:" + "0" * 64),
    ),
    (
        "invalid/cache-cc",
        "invalid",
        "damaged",
        "open",
        "cache.environment",
        "a cache environment with compute capability '8.9\\n'",
        lambda: with_env(compute_capability="8.9\n"),
    ),
    (
        "valid/cache-cig",
        "valid",
        None,
        "verify",
        "cache.environment",
        "a cache made in a Compute-in-Graphics context (format 1.1)",
        lambda: with_env(compute_in_graphics=True),
    ),
    (
        "invalid/cache-cig-not-bool",
        "invalid",
        "damaged",
        "open",
        "cache.environment",
        "compute_in_graphics: 1 (a bool is required)",
        lambda: with_env(compute_in_graphics=1),
    ),
    (
        "invalid/cache-os",
        "invalid",
        "damaged",
        "open",
        "cache.environment",
        "a cache environment with os 'macos'",
        lambda: with_env(os="macos"),
    ),
    (
        "invalid/cache-shape-negative",
        "invalid",
        "damaged",
        "open",
        "cache.shapes",
        "a cache warmed with a negative dimension",
        _cache_negative_shape,
    ),
    (
        "invalid/duplicate-engine-names",
        "invalid",
        "damaged",
        "open",
        "references",
        "two engines named main",
        lambda: _two_engines_named("main"),
    ),
    (
        "invalid/section-referenced-twice",
        "invalid",
        "damaged",
        "open",
        "references",
        "two user file names for one section",
        lambda: edit(lambda m: m["files"].update({"copy.txt": 2})),
    ),
    (
        "invalid/wrong-kind",
        "invalid",
        "damaged",
        "open",
        "references",
        "an engine record pointing at the source section",
        lambda: with_engine(section=1, source=None),
    ),
    (
        "invalid/cache-unknown-engine",
        "invalid",
        "damaged",
        "open",
        "references",
        "a cache for an engine the bundle does not have",
        _cache_unknown_engine,
    ),
]


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    index = []
    seen = set()
    for file, verdict, error, stage, rule, description, build in CASES:
        assert file not in seen, file
        seen.add(file)
        raw = build()
        path = out / f"{file}.rtxpack"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        entry = {
            "file": f"{file}.rtxpack",
            "verdict": verdict,
            "error": error,
            "stage": stage,
            "rule": rule,
            "description": description,
            "blake3": blake3.blake3(raw).hexdigest(),
        }
        index.append(entry)
    (out / "index.json").write_text(
        json.dumps({"format": "1.x", "cases": index}, indent=1, ensure_ascii=False) + "\n"
    )
    print(f"wrote {len(index)} cases to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "tests" / "conformance")
