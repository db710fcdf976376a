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


def test_a_data_file_linked_from_outside_the_folder_is_refused(tmp_path: Path) -> None:
    # A cloned repository's "mlp.data" may be a link to a key or password store: building
    # used to copy that file into the bundle (ONNX Runtime refuses the same link).
    path = make_external_mlp(tmp_path / "m", one_file=True)
    (tmp_path / "m" / "mlp.data").rename(tmp_path / "secret")
    (tmp_path / "m" / "mlp.data").symlink_to(tmp_path / "secret")
    with pytest.raises(
        InvalidArgumentError, match=r"a link to .*secret, outside the model's folder"
    ):
        _source.scan_onnx(path)


def test_a_linked_subfolder_leading_outside_is_refused(tmp_path: Path) -> None:
    path = make_external_mlp(tmp_path / "m", one_file=True, location="mlp.data")
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "sub/mlp.data"
    onnx.save(model, str(path))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "m" / "mlp.data").rename(tmp_path / "elsewhere" / "mlp.data")
    (tmp_path / "m" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidArgumentError, match="outside the model's folder"):
        _source.scan_onnx(path)


def test_links_inside_the_folder_and_the_hugging_face_cache_layout_pass(tmp_path: Path) -> None:
    # snapshots/<rev>/model.onnx -> ../../blobs/<hash>, and the data file likewise
    make_external_mlp(tmp_path / "blobs", one_file=True)
    (tmp_path / "blobs" / "mlp.onnx").rename(tmp_path / "blobs" / "aaa")
    (tmp_path / "blobs" / "mlp.data").rename(tmp_path / "blobs" / "bbb")
    snap = tmp_path / "snapshots" / "rev"
    snap.mkdir(parents=True)
    (snap / "mlp.onnx").symlink_to("../../blobs/aaa")
    (snap / "mlp.data").symlink_to("../../blobs/bbb")
    assert [loc for loc, _ in _source.scan_onnx(snap / "mlp.onnx").data] == ["mlp.data"]


def test_a_fifo_or_folder_as_data_file_is_refused_without_blocking(tmp_path: Path) -> None:
    import os

    path = make_external_mlp(tmp_path, one_file=True)
    (tmp_path / "mlp.data").unlink()
    os.mkfifo(tmp_path / "mlp.data")
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        _source.scan_onnx(path)
    (tmp_path / "mlp.data").unlink()
    (tmp_path / "mlp.data").mkdir()
    with pytest.raises(InvalidArgumentError, match="not a regular file"):
        _source.scan_onnx(path)


def test_not_an_onnx_file_is_an_argument_error(tmp_path: Path) -> None:
    bad = tmp_path / "m.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(InvalidArgumentError, match="not a readable ONNX model"):
        _source.scan_onnx(bad)


# -- end to end: stored inside the bundle, used from the bundle alone ---------------------------


import numpy as np  # noqa: E402

import rtxpack  # noqa: E402
from rtxpack import DamagedBundleError  # noqa: E402
from rtxpack._format import container  # noqa: E402

MLP_SHAPES = {"x": ((1, 16), (4, 16), (8, 16))}


def _reference(x: np.ndarray) -> np.ndarray:
    from conftest import make_onnx_mlp

    ort = pytest.importorskip("onnxruntime")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = make_onnx_mlp(Path(tmp) / "ref.onnx")
        return ort.InferenceSession(str(path)).run(None, {"x": x})[0]  # type: ignore[no-any-return]


@pytest.fixture
def external_bundle(tmp_path: Path) -> Path:
    """A bundle built from an ONNX model whose weights are in two external data files; the
    model's folder is deleted afterwards."""
    import shutil

    model = make_external_mlp(tmp_path / "model")
    # for 8.9 only: a rebuild for 8.6 must then really rebuild
    out = rtxpack.save(
        model, tmp_path / "ext.rtxpack", shapes=MLP_SHAPES, compute_capabilities=["8.9"]
    )
    shutil.rmtree(tmp_path / "model")
    return out


def test_external_data_is_stored_inside_the_bundle(external_bundle: Path) -> None:
    with rtxpack.open(external_bundle) as b:
        info = b.manifest.engine()
        data = {b.manifest.sections[i].name: b.manifest.sections[i] for i in info.source_data}
        assert sorted(data) == ["B", "W"]
        assert data["W"].size == 16 * 8 * 4 and data["W"].codec == "stored"
        b.verify()


def test_fallback_and_rebuild_read_nothing_but_the_bundle(
    external_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decoys named like the data files, in the current folder and beside the bundle, with
    wrong (zero) weights of the right size: never read."""
    for folder in (tmp_path / "elsewhere", external_bundle.parent):
        folder.mkdir(exist_ok=True)
        (folder / "W").write_bytes(bytes(16 * 8 * 4))
        (folder / "B").write_bytes(bytes(8 * 4))
    monkeypatch.chdir(tmp_path / "elsewhere")
    x = np.random.default_rng(3).standard_normal((4, 16)).astype(np.float32)
    torch = pytest.importorskip("torch")
    with pytest.warns(rtxpack.FallbackWarning):
        module = rtxpack.load(external_bundle, device="cpu", fallback="onnxruntime")
    workdir = module._workdir
    assert workdir is not None and workdir.is_dir() and workdir.parent != Path.cwd()
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), _reference(x), rtol=1e-5)
    module.close()
    assert not workdir.exists()  # the private folder goes with the module
    out = rtxpack.rebuild(external_bundle, tmp_path / "re.rtxpack", compute_capabilities=["8.6"])
    with rtxpack.open(out) as b:
        assert b.manifest.engine().compute_capabilities == ("8.6",)
        assert len(b.manifest.engine().source_data) == 2


def test_a_source_naming_data_the_bundle_lacks_is_refused(
    external_bundle: Path, tmp_path: Path
) -> None:
    """A hostile bundle whose graph points outside it: refused before anything is read."""
    with rtxpack.open(external_bundle) as b:
        info = b.manifest.engine()
        graph = onnx.load_from_string(bytes(b.read_section(info.source)))
    for t in graph.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = "../../etc/" + e.value
    hostile = tmp_path / "hostile.rtxpack"
    with container.rewriting(external_bundle, hostile) as (src, writer):
        index = writer.copy_all(src, replacements={info.source: graph.SerializeToString()})
        writer.finish(src.manifest.renumbered(index, tuple(writer.sections)))
    with pytest.raises(DamagedBundleError, match="outside the bundle"):
        rtxpack.load(hostile, device="cpu", fallback="onnxruntime")
    with pytest.raises(DamagedBundleError, match="outside the bundle"):
        rtxpack.rebuild(hostile, tmp_path / "no.rtxpack", compute_capabilities=["8.6"])
    assert not (tmp_path / "no.rtxpack").exists()


def test_torch_export_above_the_large_model_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch's exporter writes external data above 1536 MiB (its _LARGE_MODEL_THRESHOLD); forced
    to 0 here, save still builds, stores the weights inside the bundle and runs from it."""
    torch = pytest.importorskip("torch")
    from torch.onnx._internal.exporter import _onnx_program

    monkeypatch.setattr(_onnx_program, "_LARGE_MODEL_THRESHOLD", 0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU()).eval()  # 4 KiB
    x = torch.randn(4, 16)
    out = rtxpack.save(
        model, tmp_path / "t.rtxpack", inputs=(x,), shapes={"input": MLP_SHAPES["x"]}
    )
    with rtxpack.open(out) as b:
        info = b.manifest.engine()
        (data,) = info.source_data
        assert b.manifest.sections[data].size >= 16 * 64 * 4
    monkeypatch.chdir(tmp_path)
    with pytest.warns(rtxpack.FallbackWarning):
        module = rtxpack.load(out, device="cpu", fallback="onnxruntime")
    with torch.no_grad():
        torch.testing.assert_close(module(x), model(x))


def test_extract_source_writes_the_data_files_beside_the_graph(
    external_bundle: Path, tmp_path: Path
) -> None:
    from rtxpack.cli import main

    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    assert main(["extract", str(external_bundle), "--source", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["B", "W", "model.onnx"]
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(4).standard_normal((2, 16)).astype(np.float32)
    (y,) = ort.InferenceSession(str(out)).run(None, {"x": x})
    np.testing.assert_allclose(y, _reference(x), rtol=1e-5)


def test_data_files_in_a_subfolder_round_trip(tmp_path: Path) -> None:
    import shutil

    (tmp_path / "m" / "weights").mkdir(parents=True)
    model = make_external_mlp(tmp_path / "m", one_file=True, location="weights/mlp.data")
    out = rtxpack.save(model, tmp_path / "sub.rtxpack", shapes=MLP_SHAPES)
    shutil.rmtree(tmp_path / "m")
    with rtxpack.open(out) as b:
        (i,) = b.manifest.engine().source_data
        assert b.manifest.sections[i].name == "weights/mlp.data"
    x = np.random.default_rng(6).standard_normal((2, 16)).astype(np.float32)
    torch = pytest.importorskip("torch")
    with pytest.warns(rtxpack.FallbackWarning):
        module = rtxpack.load(out, device="cpu", fallback="onnxruntime")
    np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), _reference(x), rtol=1e-5)


def test_onnx_runtime_refusing_the_source_at_save_is_a_build_error(tmp_path: Path) -> None:
    # TensorRT-RTX builds it; ONNX Runtime (computing the samples' reference outputs) refuses
    # the declared output type. That was onnxruntime's own exception, a raw traceback in the CLI.
    from conftest import make_onnx_mlp

    pytest.importorskip("onnxruntime")
    path = make_onnx_mlp(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.output[0].type.tensor_type.elem_type = onnx.TensorProto.INT32
    onnx.save(model, str(path))
    with pytest.raises(
        rtxpack.BuildError, match=r"ONNX Runtime could not run m\.onnx.*samples=False"
    ):
        rtxpack.save(path, tmp_path / "m.rtxpack", shapes=MLP_SHAPES, samples="random")
    assert not (tmp_path / "m.rtxpack").exists()
