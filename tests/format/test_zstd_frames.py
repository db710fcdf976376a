"""The length of a zstd frame from its headers alone (RFC 8878, 3.1.1): what both the reader and a
raw copy use to hold a zstd section to exactly one frame. Checked against frames the zstd library
writes and against hand-made headers of every shape, which the library's own header parser reads
the same way."""

from __future__ import annotations

import itertools
import random

import pytest
import zstandard

from rtxpack._format.container import zstd_frame_length

MAGIC = b"\x28\xb5\x2f\xfd"
#: content sizes that need each Frame_Content_Size field width (1, 2, 4, 8 bytes)
CONTENT = {1: 200, 2: 300, 4: 70_000, 8: 2**33}


def _block(kind: int, size: int, last: bool) -> bytes:
    header = int(last) | kind << 1 | size << 3
    body = b"x" if kind == 1 else bytes(size)  # an RLE block holds one byte
    return header.to_bytes(3, "little") + body


def _frame(
    fcs_flag: int, single: int, checksum: int, dict_flag: int, *, unused: int = 0, blocks: bytes
) -> bytes:
    descriptor = fcs_flag << 6 | single << 5 | unused << 4 | checksum << 2 | dict_flag
    out = MAGIC + bytes([descriptor])
    if not single:
        out += bytes([0x50])  # window descriptor: 2**20 bytes
    if dict_flag:
        out += (7).to_bytes((0, 1, 2, 4)[dict_flag], "little")
    width = (single, 2, 4, 8)[fcs_flag]
    if width:
        size = CONTENT[width]
        out += (size - 256 if width == 2 else size).to_bytes(width, "little")
    return out + blocks + b"\xc5\xc5\xc5\xc5" * checksum


BLOCKS = {
    "raw, RLE, compressed": _block(0, 5, False) + _block(1, 195, False) + _block(2, 9, True),
    "one RLE block": _block(1, 1000, True),
    "an empty last block": _block(0, 4, False) + _block(0, 0, True),
}
SHAPES = list(itertools.product(range(4), range(2), range(2), range(4), BLOCKS))


@pytest.mark.parametrize("fcs_flag,single,checksum,dict_flag,blocks", SHAPES)
def test_every_frame_header_shape(
    fcs_flag: int, single: int, checksum: int, dict_flag: int, blocks: str
) -> None:
    frame = _frame(fcs_flag, single, checksum, dict_flag, blocks=BLOCKS[blocks])
    # the zstd library reads these headers as meant
    params = zstandard.get_frame_parameters(frame)
    assert params.dict_id == (7 if dict_flag else 0)
    assert params.has_checksum == bool(checksum)
    width = (single, 2, 4, 8)[fcs_flag]
    assert params.content_size == (CONTENT[width] if width else zstandard.CONTENTSIZE_UNKNOWN)
    assert zstandard.frame_header_size(frame) == len(frame) - len(BLOCKS[blocks]) - 4 * checksum

    assert zstd_frame_length(frame) == len(frame)
    assert zstd_frame_length(memoryview(frame + b"more")) == len(frame)
    for cut in range(len(frame)):
        assert zstd_frame_length(frame[:cut]) is None, cut


def test_the_unused_bit_is_ignored_and_the_reserved_bit_refused() -> None:
    blocks = BLOCKS["raw, RLE, compressed"]
    assert zstd_frame_length(_frame(0, 1, 1, 0, unused=1, blocks=blocks)) is not None
    frame = bytearray(_frame(0, 1, 1, 0, blocks=blocks))
    frame[4] |= 1 << 3
    assert zstd_frame_length(frame) is None


def test_a_reserved_block_type_is_refused() -> None:
    assert zstd_frame_length(_frame(0, 1, 0, 0, blocks=_block(3, 2, True))) is None
    assert zstd_frame_length(_frame(0, 1, 0, 0, blocks=_block(2, 2, True))) is not None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x28", MAGIC, MAGIC + b"\x20", b"\x28\xb5\x2f\xfe" + b"\x20" + _block(0, 0, True)],
)
def test_what_does_not_start_with_a_frame(data: bytes) -> None:
    assert zstd_frame_length(data) is None


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"write_checksum": True}, {"write_content_size": False}, {"level": 19}],
    ids=["default", "checksum", "no size", "level 19"],
)
@pytest.mark.parametrize(
    "data", [b"", bytes(5000), random.Random(0).randbytes(300_000)], ids=["0", "zeros", "random"]
)
def test_frames_the_zstd_library_writes(kwargs: dict[str, object], data: bytes) -> None:
    frame = zstandard.ZstdCompressor(**kwargs).compress(data)  # type: ignore[arg-type]
    assert zstd_frame_length(frame) == len(frame)
    assert zstd_frame_length(frame + frame) == len(frame)
    assert zstd_frame_length(frame[:-1]) is None
