"""Writer and reader edges that mutation testing found unpinned: the manifest size bound at exactly
its limit, the messages of unwritable outputs and of a corrupted section (they say what was found),
and the manifest fields that only a round trip shows."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import msgpack
import pytest

import rtxpack
from rtxpack._format import container
from rtxpack._format.container import BundleWriter
from rtxpack._format.manifest import Manifest

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests/golden/v1.1/models.rtxpack"


def _rewrite(src: Path, dst: Path) -> None:
    bf = container.open_bundle_file(src)
    try:
        with container.atomic_output(dst) as f:
            writer = BundleWriter(f)
            index = {i: writer.copy_section(bf, s) for i, s in enumerate(bf.manifest.sections)}
            writer.finish(bf.manifest.renumbered(index, tuple(writer.sections)))
    finally:
        bf.close()


def _manifest_size(path: Path) -> int:
    bf = container.open_bundle_file(path)
    try:
        return len(msgpack.packb(bf.manifest.to_dict(), use_bin_type=True))
    finally:
        bf.close()


def test_a_manifest_of_exactly_the_limit_is_written_and_one_byte_less_refuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = _manifest_size(GOLDEN)
    at_limit = dataclasses.replace(container.DEFAULT_LIMITS, max_manifest_bytes=size)
    monkeypatch.setattr(container, "DEFAULT_LIMITS", at_limit)
    _rewrite(GOLDEN, tmp_path / "at.rtxpack")
    assert container.open_bundle_file(tmp_path / "at.rtxpack").manifest.engines

    below = dataclasses.replace(container.DEFAULT_LIMITS, max_manifest_bytes=size - 1)
    monkeypatch.setattr(container, "DEFAULT_LIMITS", below)
    with pytest.raises(rtxpack.InvalidArgumentError) as info:
        _rewrite(GOLDEN, tmp_path / "over.rtxpack")
    assert str(info.value) == (
        f"the manifest would be {size} bytes, above the limit of {size - 1}; store less metadata"
    )
    assert not (tmp_path / "over.rtxpack").exists()


def test_an_output_under_a_file_says_why_it_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"x")
    target = tmp_path / "plain" / "out.rtxpack"
    with pytest.raises(rtxpack.OutputError) as info:
        container.output_target(target)
    assert str(info.value) == f"cannot write {target}: Not a directory"
    assert info.value.path == str(target)


def test_an_output_that_is_a_fifo_is_refused_with_what_to_do(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(rtxpack.OutputError) as info:
        container.output_target(fifo)
    assert str(info.value) == (
        f"cannot write {fifo}: it is a FIFO, device or socket, not a regular file; rtxpack "
        "writes bundles and extracted files only to regular files — choose another output path"
    )


def test_a_corrupted_section_names_the_digest_found(tmp_path: Path) -> None:
    bundle = tmp_path / "b.rtxpack"
    shutil.copyfile(GOLDEN, bundle)
    bf = container.open_bundle_file(bundle)
    section = next(s for s in bf.manifest.sections if s.kind == "engine")
    bf.close()
    with open(bundle, "r+b") as f:
        f.seek(section.offset + section.length // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    bf = container.open_bundle_file(bundle)
    try:
        with pytest.raises(rtxpack.IntegrityError) as info:
            bf.decode(section)
    finally:
        bf.close()
    with open(bundle, "rb") as f:
        f.seek(section.offset)
        found = container.digest(f.read(section.length))
    assert str(info.value) == (
        f"section engine/{section.name!r} is corrupted: its digest is {found}, the manifest says "
        f"{section.digest}; the file was changed after it was written — re-download or rebuild "
        "the bundle"
    )


def test_every_engine_field_survives_a_round_trip() -> None:
    bf = container.open_bundle_file(GOLDEN)
    try:
        manifest = bf.manifest
    finally:
        bf.close()
    assert any(e.output_tree is not None for e in manifest.engines)
    assert any(e.build_options is not None for e in manifest.engines)
    assert Manifest.from_dict(manifest.to_dict()) == manifest


def test_a_bundle_of_several_engines_names_them_when_none_is_chosen() -> None:
    bf = container.open_bundle_file(GOLDEN)
    try:
        manifest = bf.manifest
    finally:
        bf.close()
    names = [e.name for e in manifest.engines]
    assert len(names) >= 2
    with pytest.raises(rtxpack.InvalidArgumentError) as info:
        manifest.engine()
    assert f"this bundle holds several engines ({', '.join(names)}); choose one" in str(info.value)


def test_a_stored_section_is_decoded_without_a_copy_unless_asked() -> None:
    bf = container.open_bundle_file(GOLDEN)
    try:
        section = next(s for s in bf.manifest.sections if s.codec == "stored" and s.length)
        shared = bf.decode(section)
        assert isinstance(shared, memoryview) and shared.readonly
        assert type(bf.decode(section, private=True)) is bytes
        del shared
    finally:
        bf.close()


def test_a_map_key_of_exactly_the_string_limit_is_read_and_one_longer_is_not() -> None:
    limits = dataclasses.replace(container.DEFAULT_LIMITS, max_string=8)
    blob = msgpack.packb({"format": "x", "k" * 8: {"é" * 8: 1}}, use_bin_type=True)
    assert container.unpack_manifest(blob, limits, "m")["k" * 8] == {"é" * 8: 1}
    for key in ("k" * 9, "é" * 9):
        long = msgpack.packb({"format": "x", "a": {key: 1}}, use_bin_type=True)
        with pytest.raises(rtxpack.DamagedBundleError, match="keys of at most 8 code points"):
            container.unpack_manifest(long, limits, "m")
