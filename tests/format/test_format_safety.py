"""A bundle may come from anyone: every damaged, truncated, hostile or future file must end in an
RtxpackError subclass, quickly, and without allocating what the file claims.

The helpers at the top write bundle files from a manifest (a dict, or raw msgpack bytes) and a data
area, with a correct header and manifest digest, so that hostile manifests reach the parser.
"""

from __future__ import annotations

import copy
import json
import os
import random
import struct
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import msgpack
import numpy as np
import pytest
import zstandard
from conftest import MLP_SHAPES
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rtxpack
from rtxpack import (
    BundleFormatError,
    DamagedBundleError,
    EngineSpec,
    IntegrityError,
    InvalidArgumentError,
    NotABundleError,
    RtxpackError,
    UnsupportedVersionError,
)

HEADER = struct.Struct("<8sHHIQQ32s")
MAGIC = b"\x89RTXPACK"
ALIGN = 4096
# CPU seconds (not wall-clock: the machine is shared) for each open + verify + read of a
# hostile KB-sized file; a hang or a quadratic walk takes far longer, a normal read ~10 ms.
MAX_SECONDS = 5.0
MAX_PEAK = 8 * 1024 * 1024  # bytes of Python allocation while handling one (KB-sized) file


# ---------------------------------------------------------------------------------------------
# Writing bundles by hand


def assemble(
    data: bytes, manifest: Any, *, version: tuple[int, int] = rtxpack.FORMAT_VERSION, flags: int = 0
) -> bytes:
    """A bundle file: ``data`` (whose first 64 bytes are replaced by the header), then the
    manifest (a dict to msgpack, or raw bytes) with its offset, length and digest in the header."""
    blob = manifest if isinstance(manifest, bytes) else msgpack.packb(manifest, use_bin_type=True)
    offset = max(len(data), HEADER.size)
    header = HEADER.pack(
        MAGIC, version[0], version[1], flags, offset, len(blob), blake3.blake3(blob).digest()
    )
    return header + data[HEADER.size : offset] + blob


def split(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """(data area, manifest dict) of a bundle file's bytes."""
    m_off, m_len = HEADER.unpack(raw[: HEADER.size])[4:6]
    return raw[:m_off], msgpack.unpackb(raw[m_off : m_off + m_len])


def write(tmp_path: Path, raw: bytes, name: str = "hostile.rtxpack") -> Path:
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def read_everything(path: Path) -> dict[str, bytes]:
    """What a user does: open, verify every section, read every engine. Returns the engines."""
    with rtxpack.open(path) as b:
        b.verify()
        return {name: bytes(b.read_engine(name)) for name in b.engines}


def expect_error(path: Path, error: type[RtxpackError], *fragments: str) -> RtxpackError:
    """Reading ``path`` raises exactly ``error`` (a subclass of it) mentioning ``fragments``,
    within MAX_SECONDS and MAX_PEAK bytes of Python allocation."""
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(RtxpackError) as info:
            read_everything(path)
    finally:
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert isinstance(info.value, error), f"expected {error.__name__}, got {info.value!r}"
    # The message names the file, whose folder is named after the test: match the rest only.
    message = str(info.value).replace(str(path), "<bundle>")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert elapsed < MAX_SECONDS, f"took {elapsed:.2f} s"
    assert peak < MAX_PEAK, f"allocated {peak} bytes"
    return info.value


# ---------------------------------------------------------------------------------------------
# A real bundle with several sections of every codec: enc (engine, source, samples), dec (engine),
# a user file. Layout: 0 header, 4096.. sections with padding between, manifest at the end.


@pytest.fixture(scope="module")
def multi(tmp_path_factory: pytest.TempPathFactory, onnx_mlp: Path, mlp_engine: bytes) -> bytes:
    path = tmp_path_factory.mktemp("safety") / "multi.rtxpack"
    x = np.random.default_rng(3).standard_normal((2, 16)).astype(np.float32)
    rtxpack.save(
        {
            "enc": EngineSpec(onnx_mlp, shapes=MLP_SHAPES, samples={"x": x}),
            "dec": mlp_engine,
        },
        path,
        files={"notes.txt": b"release notes " * 50},
        metadata={"team": "safety"},
    )
    return Blob(path.read_bytes())


class Blob(bytes):
    """Bytes with a short repr (hypothesis prints fixtures of failing examples)."""

    def __repr__(self) -> str:
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory, multi: bytes) -> dict[str, bytes]:
    got = read_everything(write(tmp_path_factory.mktemp("orig"), multi))
    return {name: Blob(data) for name, data in got.items()}


def test_the_fixture_has_sections_of_every_kind_and_codec(multi: bytes) -> None:
    _, m = split(multi)
    kinds = {(s["kind"], s["codec"]) for s in m["sections"]}
    assert kinds == {
        ("engine", "stored"),
        ("source", "zstd"),
        ("samples", "zstd"),
        ("file", "zstd"),
    }
    assert len(m["engines"]) == 2


def test_assemble_round_trips_a_real_bundle(tmp_path: Path, multi: bytes, engines: dict) -> None:
    """The helpers write valid bundles, so every failure below is caused by the one change."""
    data, manifest = split(multi)
    assert assemble(data, manifest) == multi
    assert read_everything(write(tmp_path, assemble(data, manifest))) == engines


# ---------------------------------------------------------------------------------------------
# Truncation and extra bytes


def cut_points(raw: bytes) -> list[int]:
    data, m = split(raw)
    points = {0, 1, 7, 8, 63, 64, 65, ALIGN - 1, ALIGN, len(data), len(data) + 1, len(raw) - 1}
    for s in m["sections"]:
        points |= {s["offset"], s["offset"] + 1, s["offset"] + s["length"] - 1}
        points |= {s["offset"] + s["length"], s["offset"] + s["length"] + 1}
    return sorted(p for p in points if 0 <= p < len(raw))


def test_truncation_at_every_boundary(tmp_path: Path, multi: bytes) -> None:
    points = cut_points(multi)
    assert len(points) > 25
    for cut in points:
        path = write(tmp_path, multi[:cut])
        if cut < len(MAGIC):
            expect_error(path, NotABundleError, "not an rtxpack bundle", "magic")
        elif cut < HEADER.size:
            expect_error(path, DamagedBundleError, "truncated", f"{cut} bytes")
        else:
            expect_error(path, DamagedBundleError, "truncated", f"it is {cut} bytes")


@pytest.mark.parametrize("extra", [b"\0", b"x" * 4096])
def test_bytes_appended_after_the_manifest(tmp_path: Path, multi: bytes, extra: bytes) -> None:
    path = write(tmp_path, multi + extra)
    expect_error(path, DamagedBundleError, "extra bytes", f"it is {len(multi) + len(extra)}")


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x89RTX", b"PK\x03\x04" + bytes(100), b"vtrt" + bytes(4096), bytes(8192)],
    ids=["empty", "half-magic", "zip", "raw-engine", "zeros"],
)
def test_not_a_bundle(tmp_path: Path, raw: bytes) -> None:
    expect_error(write(tmp_path, raw), NotABundleError, "not an rtxpack bundle", "rtxpack.save")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
def test_special_files_are_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.rtxpack"
    os.mkfifo(fifo)  # opening it for reading would wait for a writer forever
    special = "a FIFO, device or socket"
    for path, what in ((fifo, special), (Path("/dev/zero"), special), (tmp_path, "a folder")):
        start = time.process_time()
        with pytest.raises(InvalidArgumentError) as info:
            rtxpack.open(path)
        assert str(info.value) == f"{path} is {what}, not a bundle file"
        assert time.process_time() - start < MAX_SECONDS


# ---------------------------------------------------------------------------------------------
# Byte flips. What each region of the file is protected by (docs/format.md):
#   magic -> NotABundleError; major -> UnsupportedVersionError; minor and the reserved flags are
#   not covered by any digest and are ignored by 1.x readers (harmless); manifest offset/length ->
#   DamagedBundleError; manifest digest and manifest -> IntegrityError; a stored section ->
#   IntegrityError; a zstd section -> DamagedBundleError or IntegrityError; padding between
#   sections is covered by nothing and ignored (harmless).


def region_of(pos: int, raw: bytes) -> str:
    data, m = split(raw)
    if pos < 8:
        return "magic"
    if pos < 10:
        return "major"
    if pos < 16:
        return "minor/flags"
    if pos < 32:
        return "manifest offset/length"
    if pos < 64:
        return "manifest digest"
    if pos >= len(data):
        return "manifest"
    for s in m["sections"]:
        if s["offset"] <= pos < s["offset"] + s["length"]:
            return f"{s['codec']} section"
    return "padding"


EXPECTED_FLIP = {
    "magic": (NotABundleError,),
    "major": (UnsupportedVersionError,),
    "manifest offset/length": (DamagedBundleError,),
    "manifest digest": (IntegrityError,),
    "manifest": (IntegrityError,),
    "stored section": (IntegrityError,),
    "zstd section": (DamagedBundleError, IntegrityError),
}


def test_random_byte_flips(tmp_path: Path, multi: bytes, engines: dict[str, bytes]) -> None:
    rng = random.Random(20261126)
    _, m = split(multi)
    positions = [0, 8, 10, 12, 16, 24, 32, 63, 64, len(multi) - 1]
    positions += [s["offset"] for s in m["sections"]]
    positions += [rng.randrange(len(multi)) for _ in range(300)]
    seen: set[str] = set()
    for pos in positions:
        region = region_of(pos, multi)
        seen.add(region)
        raw = bytearray(multi)
        raw[pos] ^= rng.randrange(1, 256)
        path = write(tmp_path, bytes(raw))
        if region in ("minor/flags", "padding"):
            assert read_everything(path) == engines, f"flip at {pos} ({region})"
        else:
            err = expect_error(path, RtxpackError)
            assert isinstance(err, EXPECTED_FLIP[region]), f"flip at {pos} ({region}): {err!r}"
    assert seen == set(EXPECTED_FLIP) | {"minor/flags", "padding"}


def test_reserved_flags_are_ignored_by_1x_readers(
    tmp_path: Path, multi: bytes, engines: dict[str, bytes]
) -> None:
    data, manifest = split(multi)
    path = write(tmp_path, assemble(data, manifest, flags=0xFFFFFFFF))
    assert read_everything(path) == engines


# ---------------------------------------------------------------------------------------------
# Future format versions


def test_a_newer_major_version_is_refused_naming_both_versions(
    tmp_path: Path, multi: bytes
) -> None:
    data, manifest = split(multi)
    path = write(tmp_path, assemble(data, manifest, version=(2, 0)))
    err = expect_error(path, UnsupportedVersionError, "2.0", "1.", "upgrade rtxpack")
    assert isinstance(err, UnsupportedVersionError)
    assert (err.found, err.supported) == ("2.0", "1.1")


def test_major_zero_is_refused(tmp_path: Path, multi: bytes) -> None:
    data, manifest = split(multi)
    path = write(tmp_path, assemble(data, manifest, version=(0, 9)))
    expect_error(path, UnsupportedVersionError, "0.9", "no rtxpack release wrote")


def test_a_newer_minor_with_unknown_fields_opens(
    tmp_path: Path, multi: bytes, engines: dict[str, bytes]
) -> None:
    data, manifest = split(multi)
    manifest["signatures"] = [{"alg": "ed25519", "key": "k1", "sig": "abcd", "n": 1.5}]
    manifest["new_flag"] = True
    manifest["engines"][0]["future_engine_field"] = {"x": 1}  # nested unknowns are ignored
    manifest["strategy_v2"] = None
    path = write(tmp_path, assemble(data, manifest, version=(1, 7)))
    assert read_everything(path) == engines
    with rtxpack.open(path) as b:
        assert b.format_version == "1.7"
        assert b.manifest.extra == {
            "signatures": [{"alg": "ed25519", "key": "k1", "sig": "abcd", "n": 1.5}],
            "new_flag": True,
            "strategy_v2": None,
        }
    data_out = rtxpack.inspect(path)
    assert data_out["signatures"][0]["alg"] == "ed25519"
    json.dumps(data_out)  # `rtxpack inspect --json` can print it


def test_sections_of_an_unknown_kind_are_skipped(
    tmp_path: Path, multi: bytes, engines: dict[str, bytes]
) -> None:
    data, manifest = split(multi)
    manifest["sections"][-1]["kind"] = "weights_delta"  # the user file, as a future kind
    manifest["files"] = {}
    path = write(tmp_path, assemble(data, manifest, version=(1, 3)))
    assert read_everything(path) == engines


# ---------------------------------------------------------------------------------------------
# Hostile manifests, each with a correct header and manifest digest so they reach the parser.

Mutator = Callable[[dict[str, Any]], Any]


@dataclass
class Whole:
    """Returned by a mutator that replaces the whole manifest."""

    value: Any


def _sec(m: dict[str, Any], kind: str, codec: str | None = None) -> dict[str, Any]:
    return next(
        s for s in m["sections"] if s["kind"] == kind and (codec is None or s["codec"] == codec)
    )


def _idx(m: dict[str, Any], kind: str) -> int:
    return next(i for i, s in enumerate(m["sections"]) if s["kind"] == kind)


def _set(path: str, value: Any) -> Mutator:
    """A mutator setting ``path`` ("engines.0.section") to ``value``."""

    def mutate(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = m
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _do(*steps: Mutator) -> Mutator:
    def mutate(m: dict[str, Any]) -> None:
        for step in steps:
            step(m)

    return mutate


def _overlap(m: dict[str, Any]) -> None:
    m["sections"][1]["offset"] = m["sections"][0]["offset"]


def _overflow(m: dict[str, Any]) -> None:
    m["sections"][1].update(offset=2**63 - ALIGN, length=2**63 - 1)


def _beyond_file(m: dict[str, Any]) -> None:
    m["sections"][0]["offset"] += 1024 * ALIGN


def _into_manifest(m: dict[str, Any]) -> None:
    s = m["sections"][-1]
    s["length"] += ALIGN  # the last section now runs into the manifest


def _claims_100gb(m: dict[str, Any]) -> None:
    _sec(m, "source")["size"] = 100 * 1024**3


def _claims_30gb(m: dict[str, Any]) -> None:
    _sec(m, "source")["size"] = 30 * 1024**3  # within the 64 GiB limit, not from 688 bytes


def _stored_size_differs(m: dict[str, Any]) -> None:
    _sec(m, "engine")["size"] += 1


def _zstd_size_plus(m: dict[str, Any]) -> None:
    _sec(m, "source")["size"] += 1


def _zstd_size_minus(m: dict[str, Any]) -> None:
    _sec(m, "source")["size"] -= 1


def _not_zstd(m: dict[str, Any]) -> None:
    _sec(m, "engine")["codec"] = "zstd"  # engine bytes start with b"vtrt", not a zstd frame


def _dup_names(m: dict[str, Any]) -> None:
    m["engines"][1]["name"] = m["engines"][0]["name"]


def _wrong_kind(m: dict[str, Any]) -> None:
    m["engines"][0]["section"] = _idx(m, "source")


def _source_is_engine(m: dict[str, Any]) -> None:
    m["engines"][0]["source"] = _idx(m, "engine")


def _referenced_twice(m: dict[str, Any]) -> None:
    m["engines"][1]["section"] = m["engines"][0]["section"]


def _file_referenced_twice(m: dict[str, Any]) -> None:
    m["files"]["copy.txt"] = m["files"]["notes.txt"]


def _drop_engines(m: dict[str, Any]) -> None:
    del m["engines"]


def _too_many_engines(m: dict[str, Any]) -> None:
    m["engines"] = [{}] * 300


def _nested_extra(m: dict[str, Any]) -> None:
    value: Any = 0
    for _ in range(500):
        value = [value]
    m["future"] = value


HOSTILE: dict[str, tuple[Mutator, type[RtxpackError], tuple[str, ...]]] = {
    # layout
    "overlapping sections": (_overlap, DamagedBundleError, ("overlaps section",)),
    "offset beyond the file": (_beyond_file, DamagedBundleError, ("claims bytes",)),
    "section runs into the manifest": (_into_manifest, DamagedBundleError, ("claims bytes",)),
    "misaligned offset": (
        lambda m: m["sections"][0].update(offset=m["sections"][0]["offset"] + 8),
        DamagedBundleError,
        ("aligned",),
    ),
    "section inside the header": (_set("sections.0.offset", 0), DamagedBundleError, ("64..",)),
    "offset+length overflows u64": (_overflow, DamagedBundleError, ("claims bytes",)),
    "offset above 2**63": (_set("sections.0.offset", 2**64 - 1), DamagedBundleError, ("offset",)),
    "negative length": (_set("sections.0.length", -1), DamagedBundleError, ("length",)),
    # sizes
    "zstd claims 100 GB": (_claims_100gb, DamagedBundleError, ("size", "68719476736")),
    "zstd 688 B claims 30 GB": (_claims_30gb, DamagedBundleError, ("more than zstd can produce",)),
    "stored size != length": (_stored_size_differs, DamagedBundleError, ("is stored but claims",)),
    "zstd decodes to less than claimed": (_zstd_size_plus, DamagedBundleError, ("decodes to",)),
    "zstd decodes to more than claimed": (
        _zstd_size_minus,
        DamagedBundleError,
        ("decodes to at least",),
    ),
    "not zstd at all": (_not_zstd, DamagedBundleError, ("expected exactly one zstd frame",)),
    "unknown codec": (_set("sections.1.codec", "lz4"), DamagedBundleError, ("stored, zstd",)),
    # digests
    "sha256 digest": (
        _set("sections.0.digest", "sha256:" + "0" * 64),
        DamagedBundleError,
        ("sections[0].digest", "blake3"),
    ),
    "uppercase digest": (
        _set("sections.0.digest", "blake3:" + "AB" * 32),
        DamagedBundleError,
        ("sections[0].digest",),
    ),
    "digest + newline": (
        _set("sections.0.digest", "blake3:" + "ab" * 32 + "\n"),
        DamagedBundleError,
        ("sections[0].digest",),
    ),
    "short digest": (_set("sections.0.digest", "blake3:abc"), DamagedBundleError, ("digest",)),
    "wrong but well-formed digest": (
        _set("sections.0.digest", "blake3:" + "0" * 64),
        IntegrityError,
        ("corrupted", "engine/"),
    ),
    # wrong types
    "manifest is a list": (lambda m: Whole([1, 2]), DamagedBundleError, ("manifest is 'list'",)),
    "manifest is a string": (lambda m: Whole("hi"), DamagedBundleError, ("expected a map",)),
    "manifest is nil": (lambda m: Whole(None), DamagedBundleError, ("expected a map",)),
    "sections is a map": (_set("sections", {"a": 1}), DamagedBundleError, ("sections",)),
    "engines missing": (_drop_engines, DamagedBundleError, ("engines", "missing")),
    "section is a list": (_set("sections.0", [1, 2]), DamagedBundleError, ("sections[0]",)),
    "offset as string": (_set("sections.0.offset", "4096"), DamagedBundleError, (".offset",)),
    "offset as float": (_set("sections.0.offset", 4096.0), DamagedBundleError, (".offset",)),
    "offset as bool": (_set("sections.0.offset", True), DamagedBundleError, (".offset",)),
    "size as bin": (_set("sections.1.size", b"\x01"), DamagedBundleError, (".size",)),
    "kind as int": (_set("sections.0.kind", 1), DamagedBundleError, (".kind",)),
    "engine section as bool": (
        _set("engines.0.section", False),
        DamagedBundleError,
        ("engines[0].section",),
    ),
    "portable as int": (
        _set("engines.0.hardware_portable", 1),
        DamagedBundleError,
        ("hardware_portable", "true or false"),
    ),
    "inputs as string": (_set("engines.0.inputs", "x"), DamagedBundleError, (".inputs",)),
    "shape with a float": (
        _set("engines.0.inputs.0.shape", [1.5, 16]),
        DamagedBundleError,
        ("shape[0]",),
    ),
    "unknown dtype": (
        _set("engines.0.inputs.0.dtype", "complex128"),
        DamagedBundleError,
        (".dtype",),
    ),
    "profile min > max": (
        _set("engines.0.profiles.0.x", {"min": [9, 16], "opt": [4, 16], "max": [8, 16]}),
        DamagedBundleError,
        ("min <= opt <= max",),
    ),
    "profiles of lists": (_set("engines.0.profiles", [[1]]), DamagedBundleError, ("profiles[0]",)),
    "strategy as list": (_set("engines.0.strategy", ["lazy"]), DamagedBundleError, ("strategy",)),
    "strategy value unknown": (
        _set("engines.0.strategy.cuda_graph_strategy", "turbo"),
        DamagedBundleError,
        ("turbo", "whole_graph_capture"),
    ),
    "cc with newline": (
        _set("engines.0.compute_capabilities", ["8.6\n"]),
        DamagedBundleError,
        ("compute_capabilities[0]",),
    ),
    "metadata value int": (_set("metadata", {"a": 1}), DamagedBundleError, ("metadata['a']",)),
    "metadata as list": (_set("metadata", ["a"]), DamagedBundleError, ("metadata",)),
    "files points at a string": (_set("files", {"a": "x"}), DamagedBundleError, ("files['a']",)),
    "bin top-level key": (
        lambda m: m.__setitem__(b"raw", 1),
        DamagedBundleError,
        ("string map keys", "b'raw'"),
    ),
    "bin in an unknown field": (_set("future", b"\x00" * 10), DamagedBundleError, ("future",)),
    "500 levels in an unknown field": (_nested_extra, DamagedBundleError, ("32 levels",)),
    # counts and lengths
    "300 engines": (_too_many_engines, DamagedBundleError, ("at most 256",)),
    "5000-char name": (
        _set("engines.0.name", "n" * 5000),
        DamagedBundleError,
        ("engines[0].name", "at most 4096 code points"),
    ),
    "257-char name": (_set("engines.0.name", "n" * 257), DamagedBundleError, ("1 to 256",)),
    "empty engine name": (_set("engines.0.name", ""), DamagedBundleError, ("1 to 256",)),
    "terminal escape in a name": (
        _set("engines.0.name", "\x1b[2J\x1b[31mok"),
        DamagedBundleError,
        ("printable",),
    ),
    "5000-char platform": (_set("engines.0.platform", "p" * 5000), DamagedBundleError, ("4096",)),
    "5000 sections": (
        lambda m: m.update(sections=[0] * 5000),
        DamagedBundleError,
        ("not valid msgpack",),
    ),
    # references
    "duplicate engine names": (_dup_names, DamagedBundleError, ("unique engine names",)),
    "engine -> source section": (_wrong_kind, DamagedBundleError, ("section of kind 'engine'",)),
    "source -> engine section": (
        _source_is_engine,
        DamagedBundleError,
        ("section of kind 'source'",),
    ),
    "section index out of range": (
        _set("engines.0.section", 99),
        DamagedBundleError,
        ("engines[0].section",),
    ),
    "two engines, one section": (_referenced_twice, DamagedBundleError, ("at most once",)),
    "file referenced twice": (_file_referenced_twice, DamagedBundleError, ("at most once",)),
    "cache for unknown engine": (
        _set(
            "caches",
            [
                {
                    "id": "c1",
                    "engine": "nope",
                    "section": 4,
                    "environment": {},
                    "created_at": "now",
                }
            ],
        ),
        DamagedBundleError,
        ("caches[0]",),
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_manifest(tmp_path: Path, multi: bytes, case: str) -> None:
    mutate, error, fragments = HOSTILE[case]
    data, manifest = split(multi)
    manifest = copy.deepcopy(manifest)
    replaced = mutate(manifest)  # None: changed in place
    new = replaced.value if isinstance(replaced, Whole) else manifest
    expect_error(write(tmp_path, assemble(data, new)), error, *fragments)


# Raw msgpack that is not a manifest at all: deep nesting and headers claiming huge containers.
RAW_MANIFESTS = {
    "100 000 nested arrays": b"\x91" * 100_000 + b"\xc0",
    "100 000 nested maps": b"\x81\xa1k" * 100_000 + b"\xc0",
    "array32 claiming 4G items": b"\xdd\xff\xff\xff\xff",
    "map32 claiming 4G pairs": b"\xdf\xff\xff\xff\xff",
    "str32 claiming 4 GB": b"\xdb\xff\xff\xff\xff" + b"a" * 100,
    "bin32 claiming 4 GB": b"\xc6\xff\xff\xff\xff" + b"a" * 100,
    "ext type": b"\xd4\x01\x00",
    "map with an int key": b"\x81\x01\x02",
    "truncated map": msgpack.packb({"sections": [], "engines": []})[:-3],
    "trailing bytes": msgpack.packb({"sections": [], "engines": []}) + b"\x00",
    "not msgpack": b"\xc1" * 32,
}


@pytest.mark.parametrize("case", list(RAW_MANIFESTS), ids=list(RAW_MANIFESTS))
def test_hostile_raw_manifest(tmp_path: Path, multi: bytes, case: str) -> None:
    data, _ = split(multi)
    path = write(tmp_path, assemble(data, RAW_MANIFESTS[case]))
    said = {"ext type": "no bin or ext", "map with an int key": "string map keys (found key 1)"}
    expect_error(path, DamagedBundleError, said.get(case, "not valid msgpack within rtxpack's"))


@pytest.mark.parametrize(
    "m_len", [0, 16 * 1024 * 1024 + 1, 2**64 - 1], ids=["zero", "limit+1", "u64max"]
)
def test_header_manifest_length_out_of_bounds(tmp_path: Path, multi: bytes, m_len: int) -> None:
    raw = bytearray(multi)
    raw[24:32] = struct.pack("<Q", m_len)
    expect_error(write(tmp_path, bytes(raw)), DamagedBundleError, "manifest of", "bytes")


def test_header_manifest_offset_inside_header(tmp_path: Path, multi: bytes) -> None:
    # A manifest offset below 64 would overlap the header, even if offset + length fits.
    raw = bytearray(b"\0" * 100)
    blob = b"\x80" * 60
    raw[: HEADER.size] = HEADER.pack(MAGIC, 1, 0, 0, 40, 60, blake3.blake3(blob).digest())
    expect_error(
        write(tmp_path, bytes(raw)),
        DamagedBundleError,
        "the header puts the manifest at byte 40, inside the 64-byte header",
    )


def _zstd_bomb_bundle(multi: bytes, claimed: int) -> bytes:
    """The source section replaced by 6 KB of zstd that expands to 200 MB, claiming ``claimed``."""
    data, m = split(multi)
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(200 * 1024 * 1024))
    assert len(bomb) < 8 * 1024
    src = _sec(m, "source")
    later = sorted(
        (s for s in m["sections"] if s["offset"] > src["offset"]), key=lambda s: s["offset"]
    )
    chunks = [data[s["offset"] : s["offset"] + s["length"]] for s in later]
    new_data = data[: src["offset"]] + bomb + bytes(-len(bomb) % ALIGN)
    for s, chunk in zip(later, chunks):  # move the sections after it, keeping alignment
        s["offset"] = len(new_data)
        new_data += chunk + bytes(-len(chunk) % ALIGN)
    src.update(length=len(bomb), size=claimed)
    return assemble(new_data, m)


@pytest.mark.parametrize("claimed", [1000, 100 * 1024 * 1024 - 1])
def test_zstd_bomb_is_refused_without_expanding(tmp_path: Path, multi: bytes, claimed: int) -> None:
    """6 KB that expand to 200 MB: refused with at most the claimed size allocated."""
    path = write(tmp_path, _zstd_bomb_bundle(multi, claimed))
    with rtxpack.open(path) as b:
        idx = b.manifest.engine("enc").source
        assert idx is not None
        tracemalloc.start()
        start = time.process_time()
        try:
            said = f"decodes to at least {claimed + 1} bytes, the manifest says {claimed};"
            with pytest.raises(DamagedBundleError, match=said):
                b.read_section(idx)
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert time.process_time() - start < 2 * MAX_SECONDS
        # at most the claimed size (+ bytearray growth slack and one read), never the 200 MB
        assert peak < claimed * 1.25 + 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# Property-based: random mutations of a real bundle either do no harm (the engines read back
# identical) or end in an RtxpackError. Never another exception, never a hang.


def _mutate(raw: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytearray:
    out = bytearray(raw)
    for op, pos_seed, n, payload in ops:
        pos = pos_seed % (len(out) + 1)
        if op == "flip" and pos < len(out):
            out[pos] ^= n % 255 + 1
        elif op == "insert":
            out[pos:pos] = payload
        elif op == "delete":
            del out[pos : pos + n]
        elif op == "truncate":
            del out[pos:]
        elif op == "overwrite":
            out[pos : pos + len(payload)] = payload
    return out


def _reseal(raw: bytearray, original_m_off: int) -> bytes:
    """Point the header at the (mutated) manifest again, with its digest: reaches the parser."""
    if len(raw) < HEADER.size or original_m_off >= len(raw):
        return bytes(raw)
    blob = bytes(raw[original_m_off:])
    raw[16:32] = struct.pack("<QQ", original_m_off, len(blob))
    raw[32:64] = blake3.blake3(blob).digest()
    return bytes(raw)


_OPS = st.tuples(
    st.sampled_from(["flip", "insert", "delete", "truncate", "overwrite"]),
    st.integers(0, 2**32),
    st.integers(1, 64),
    st.binary(min_size=1, max_size=16),
)


def _check_outcome(
    raw: bytes, directory: Path, engines: dict[str, bytes], *, manifest_edited: bool
) -> None:
    """Success is allowed only with the original engine bytes. A manifest edited with a fixed-up
    digest can legitimately rename an engine (digests detect damage, they do not sign), but it can
    never make the reader return bytes that are not one of the original engines. A failure is a
    bundle-format or integrity error (never an argument error, a backend error...)."""
    path = directory / "mutated.rtxpack"
    path.write_bytes(raw)
    start = time.process_time()
    try:
        got = read_everything(path)
    except (BundleFormatError, IntegrityError) as exc:
        assert str(exc), "an error without a message"
    else:
        if manifest_edited:
            assert got, "a mutated bundle read back without engines"
            for name, data in got.items():
                assert data in engines.values(), f"unverified bytes returned for {name!r}"
        else:
            assert got == engines, "a mutation that was not detected changed the engines"
    assert time.process_time() - start < 2 * MAX_SECONDS


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(_OPS, min_size=1, max_size=4),
    target=st.sampled_from(["anywhere", "header", "manifest"]),
    reseal=st.booleans(),
)
def test_mutated_bundles_fail_cleanly_or_read_identical(
    tmp_path_factory: pytest.TempPathFactory,
    multi: bytes,
    engines: dict[str, bytes],
    ops: list[tuple[str, int, int, bytes]],
    target: str,
    reseal: bool,
) -> None:
    data, _ = split(multi)
    m_off = len(data)
    if target == "header":
        ops = [(op, pos % HEADER.size, n, p) for op, pos, n, p in ops]
    elif target == "manifest":
        ops = [(op, m_off + pos % (len(multi) - m_off), n, p) for op, pos, n, p in ops]
    raw = _mutate(multi, ops)
    out = _reseal(raw, m_off) if reseal else bytes(raw)
    directory = tmp_path_factory.mktemp("prop", numbered=True)
    _check_outcome(out, directory, engines, manifest_edited=reseal)


_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.lists(st.integers(-2, 2**40), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(-10, 10), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(which=st.integers(0, 10_000), value=_LEAVES, drop=st.booleans())
def test_any_manifest_field_replaced_or_dropped_fails_cleanly(
    tmp_path_factory: pytest.TempPathFactory,
    multi: bytes,
    engines: dict[str, bytes],
    which: int,
    value: Any,
    drop: bool,
) -> None:
    """Wrong types everywhere: one field of a valid manifest replaced by any value (or removed)."""
    data, manifest = split(multi)
    paths = _paths(manifest)
    *parents, last = paths[which % len(paths)]
    node: Any = manifest
    for key in parents:
        node = node[key]
    if drop and isinstance(node, dict):
        del node[last]
    else:
        node[last] = value
    directory = tmp_path_factory.mktemp("leaf", numbered=True)
    _check_outcome(assemble(data, manifest), directory, engines, manifest_edited=True)


# ---------------------------------------------------------------------------------------------
# Structure-aware fuzzing with re-signed digests. BLAKE3 is unkeyed: an attacker who edits the
# manifest recomputes every digest, size and the manifest digest, so digests cannot be what
# stops a hostile layout. Each example edits the section table or the references, re-signs
# everything, and then the reader either refuses (a bundle-format or integrity error) or returns,
# for every engine, exactly the bytes an independent decoder finds at that engine's section.


def _decode_independently(data: bytes, s: dict[str, Any]) -> bytes | None:
    off, length = s["offset"], s["length"]
    if not (isinstance(off, int) and isinstance(length, int)) or off < 0 or length < 0:
        return None
    raw = data[off : off + length]
    if len(raw) != length:
        return None
    if s["codec"] == "stored":
        return raw
    try:
        obj = zstandard.ZstdDecompressor().decompressobj()
        out = obj.decompress(raw)
        return out if obj.eof and not obj.unused_data else None
    except zstandard.ZstdError:
        return None


def _resign(data: bytes, m: dict[str, Any]) -> None:
    for s in m["sections"]:
        decoded = _decode_independently(data, s)
        if decoded is not None:
            s["size"], s["digest"] = len(decoded), "blake3:" + blake3.blake3(decoded).hexdigest()


_EDITS = ["offset", "length", "codec", "swap", "duplicate", "drop", "repoint", "rename", "reorder"]


def _edit(m: dict[str, Any], op: str, a: int, b: int, k: int) -> None:
    secs, engines = m["sections"], m["engines"]
    i, j = a % len(secs), b % len(secs)
    if op == "offset":
        secs[i]["offset"] = secs[j]["offset"] + ALIGN * (k % 3 - 1)
    elif op == "length":
        secs[i]["length"] = max(0, secs[i]["length"] + (k % 9 - 4) * (1 + k % 4097))
    elif op == "codec":
        secs[i]["codec"] = "zstd" if secs[i]["codec"] == "stored" else "stored"
    elif op == "swap":
        for key in ("offset", "length", "codec"):
            secs[i][key], secs[j][key] = secs[j][key], secs[i][key]
    elif op == "duplicate":
        secs.append(dict(secs[i], name=f"dup{k}"))
        if secs[i]["kind"] == "engine":
            engines.append(dict(engines[0], name=f"dup{k}", section=len(secs) - 1))
    elif op == "drop" and len(secs) > 1:
        del secs[i]
    elif op == "repoint":
        engines[a % len(engines)]["section"] = j
    elif op == "rename":
        engines[a % len(engines)]["name"] = engines[b % len(engines)]["name"]
    elif op == "reorder":
        secs.reverse()


@settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(_EDITS),
            st.integers(0, 99),
            st.integers(0, 99),
            st.integers(0, 2**16),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_resigned_structural_edits_never_return_other_bytes(
    tmp_path_factory: pytest.TempPathFactory,
    multi: bytes,
    edits: list[tuple[str, int, int, int]],
) -> None:
    data, manifest = split(multi)
    for op, a, b, k in edits:
        _edit(manifest, op, a, b, k)
    _resign(data, manifest)
    path = tmp_path_factory.mktemp("resigned", numbered=True) / "b.rtxpack"
    path.write_bytes(assemble(data, manifest))
    start = time.process_time()
    try:
        got = read_everything(path)
    except (BundleFormatError, IntegrityError) as exc:
        assert str(exc)
        event(f"refused: {type(exc).__name__}")
    else:
        event("read back")
        by_name = {e["name"]: e for e in manifest["engines"]}
        for name, value in got.items():
            expected = _decode_independently(data, manifest["sections"][by_name[name]["section"]])
            assert value == expected, f"engine {name!r}: not the bytes of its section"
    assert time.process_time() - start < 2 * MAX_SECONDS
