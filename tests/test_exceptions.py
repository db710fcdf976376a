"""The error and warning hierarchy: what a user catches or filters."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import rtxpack
from rtxpack import _exceptions


def test_a_missing_bundle_is_a_file_not_found_error_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.rtxpack"
    with pytest.raises(FileNotFoundError) as err:
        rtxpack.open(missing)
    assert isinstance(err.value, rtxpack.BundleNotFoundError)
    assert isinstance(err.value, rtxpack.InvalidArgumentError)  # what it was before
    assert err.value.path == str(missing)
    assert str(err.value) == f"no such bundle: {missing}"


def test_format_and_integrity_errors_name_the_file(tmp_path: Path, onnx_bundle: Path) -> None:
    junk = tmp_path / "junk.rtxpack"
    junk.write_bytes(b"not a bundle at all" * 10)
    with pytest.raises(rtxpack.NotABundleError) as err:
        rtxpack.open(junk)
    assert err.value.path == str(junk)

    damaged = tmp_path / "damaged.rtxpack"
    data = bytearray(onnx_bundle.read_bytes())
    with rtxpack.open(onnx_bundle) as b:
        section = b.manifest.sections[b.manifest.engine().section]
    data[section.offset + section.length // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with rtxpack.open(damaged) as b, pytest.raises(rtxpack.IntegrityError) as ierr:
        b.read_engine()
    assert ierr.value.path == str(damaged)


def test_output_errors_name_the_file(tmp_path: Path, onnx_bundle: Path) -> None:
    target = tmp_path / "a-folder"
    target.mkdir()  # the final rename onto a folder fails (root may write anywhere else)
    with pytest.raises(rtxpack.OutputError) as err:
        rtxpack.migrate(onnx_bundle, target)
    assert err.value.path == str(target)
    assert isinstance(err.value, OSError)


def test_import_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "engine.json"
    bad.write_text("{not json")
    with pytest.raises(rtxpack.ImportFormatError) as err:
        rtxpack.import_torch_tensorrt(bad, tmp_path / "out.rtxpack")
    assert err.value.path == str(bad)


def test_runtime_failure_is_the_old_name_of_backend_error() -> None:
    assert rtxpack.RuntimeFailure is rtxpack.BackendError
    with pytest.raises(rtxpack.RuntimeFailure):
        raise rtxpack.BackendError("refused", detail=None)


def test_every_warning_class_derives_from_rtxpack_warning() -> None:
    found = [
        obj
        for obj in vars(_exceptions).values()
        if isinstance(obj, type) and issubclass(obj, Warning)
    ]
    assert {w.__name__ for w in found} >= {
        "CaptureWarning",
        "FallbackWarning",
        "RebuildWarning",
        "RuntimeCacheWarning",
    }
    assert all(issubclass(w, rtxpack.RtxpackWarning) for w in found)
    assert issubclass(rtxpack.RtxpackWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error", rtxpack.RtxpackWarning)
        with pytest.raises(rtxpack.RuntimeCacheWarning):
            warnings.warn("x", rtxpack.RuntimeCacheWarning, stacklevel=1)


def test_every_warning_rtxpack_raises_names_an_rtxpack_category() -> None:
    """Plain warnings.warn(msg) would be a bare UserWarning that RtxpackWarning filters miss."""
    import ast

    root = Path(rtxpack.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "warn"
            ):
                category = node.args[1] if len(node.args) > 1 else None
                assert isinstance(category, ast.Name) and category.id.endswith("Warning"), (
                    f"{path.name}:{node.lineno}: warnings.warn without an rtxpack category"
                )
                assert issubclass(getattr(_exceptions, category.id), rtxpack.RtxpackWarning)


def _hierarchy() -> list[type[BaseException] | type[Warning]]:
    return [
        obj
        for name, obj in vars(_exceptions).items()
        if isinstance(obj, type)
        and issubclass(obj, (rtxpack.RtxpackError, rtxpack.RtxpackWarning))
        and obj.__name__ == name  # not an alias (RuntimeFailure)
    ]


def test_the_docstring_tree_names_every_error_and_warning() -> None:
    doc = _exceptions.__doc__ or ""
    import re

    missing = [c.__name__ for c in _hierarchy() if not re.search(rf"\b{c.__name__}\b", doc)]
    assert not missing, f"add {missing} to the tree in rtxpack/_exceptions.py"


def test_every_error_and_warning_is_public() -> None:
    hidden = [cls.__name__ for cls in _hierarchy() if cls.__name__ not in rtxpack.__all__]
    assert not hidden, f"export {hidden} from rtxpack/__init__.py"


def test_errors_and_warnings_are_declared_only_in_exceptions_module() -> None:
    import ast

    root = Path(rtxpack.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "_exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                # (a private exception for control flow inside one module is fine)
                bases = [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
                assert not any(b.endswith(("Error", "Warning", "Exception")) for b in bases), (
                    f"{path.relative_to(root)}: class {node.name} belongs in _exceptions.py"
                )
