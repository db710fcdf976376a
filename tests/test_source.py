"""Model sources with external data: found at save, stored inside the bundle, materialized from
the bundle alone (never from the current folder or beside the bundle)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtxpack import InvalidArgumentError, _source

onnx = pytest.importorskip("onnx")


def make_external_mlp(folder: Path, *, one_file: bool = False, location: str | None = None) -> Path:
    """The conftest MLP with its weights in external data: one file per tensor (``W``, ``B``),
    or all in ``location``/``mlp.data``."""
    from conftest import make_onnx_mlp

    folder.mkdir(parents=True, exist_ok=True)
    path = make_onnx_mlp(folder / "inline.onnx")
    model = onnx.load(str(path))
    out = folder / "mlp.onnx"
    onnx.save(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=one_file,
        location=location or "mlp.data",
        size_threshold=0,
    )
    path.unlink()
    return out


def test_scan_finds_every_external_data_file(tmp_path: Path) -> None:
    src = _source.scan_onnx(make_external_mlp(tmp_path))
    assert sorted(loc for loc, _ in src.data) == ["B", "W"]
    assert all(p.parent == tmp_path for _, p in src.data)
    assert src.data_bytes == 16 * 8 * 4 + 8 * 4
    one = _source.scan_onnx(make_external_mlp(tmp_path / "one", one_file=True))
    assert [loc for loc, _ in one.data] == ["mlp.data"]


def test_scan_of_an_inline_model_has_no_data(onnx_mlp: Path) -> None:
    assert _source.scan_onnx(onnx_mlp).data == ()


def test_missing_data_file_is_named(tmp_path: Path) -> None:
    path = make_external_mlp(tmp_path, one_file=True)
    (tmp_path / "mlp.data").unlink()
    with pytest.raises(InvalidArgumentError, match=r"'mlp.data', which is not at .*copy it beside"):
        _source.scan_onnx(path)


@pytest.mark.parametrize("location", ["../mlp.data", "/etc/passwd", "sub/../../x", "C:x", "a\\b"])
def test_locations_outside_the_folder_are_refused(tmp_path: Path, location: str) -> None:
    path = make_external_mlp(tmp_path, one_file=True)
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, str(path))
    with pytest.raises(InvalidArgumentError, match="outside the model's folder"):
        _source.scan_onnx(path)


@pytest.mark.parametrize("good", ["mlp.data", "weights/part-1.bin", "a.b.c"])
def test_plain_relative_locations_pass(good: str) -> None:
    assert _source.check_location(good) == good


@pytest.mark.parametrize(
    "bad", ["", ".", "..", "a/../b", "/abs", "a//b", "a/", "x\\y", "c:d", "model.onnx", "a\nb"]
)
def test_unsafe_locations_fail(bad: str) -> None:
    with pytest.raises(ValueError):
        _source.check_location(bad)


def test_not_an_onnx_file_is_an_argument_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(InvalidArgumentError, match="not a readable ONNX model"):
        _source.scan_onnx(bad)
