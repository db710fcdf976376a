"""The model source of an engine: an ONNX graph and the external data files it references.

A model above protobuf's 2 GB limit (and any torch export above 1536 MiB of weights) keeps its
weights in external data files beside the graph; the graph names them by relative location.
A bundle stores the graph in a ``source`` section and each data file in a ``source_data`` section
named by its location (docs/format.md). Nothing is ever read through a location when a bundle is
used: ``materialized`` writes the graph and the bundle's own data files into a new private
temporary folder and checks that every location the graph names is one of them, so ONNX Runtime and
TensorRT-RTX's parser find the bundle's bytes there and nothing else (not the current folder, not a
file beside the bundle).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._backends.external_data import external_data_locations, refuse_outside_data
from ._exceptions import DamagedBundleError, InvalidArgumentError

__all__ = [
    "GRAPH_NAME",
    "OnnxSource",
    "check_location",
    "drop_source",
    "equal_dims",
    "external_locations",
    "load_graph",
    "load_graph_bytes",
    "materialize",
    "materialized",
    "scan_onnx",
]

#: The graph's file name in a materialized folder.
GRAPH_NAME = "model.onnx"
_CHUNK = 8 * 1024 * 1024


def check_location(location: str) -> str:
    """An external-data location that stays inside its folder: a relative POSIX path of plain
    names (no ``..``, no drive, no backslash), 1 to 256 printable characters. Returns it as is."""
    parts = PurePosixPath(location).parts if isinstance(location, str) else ()
    if (
        not isinstance(location, str)
        or not 1 <= len(location) <= 256
        or not location.isprintable()
        or "\\" in location
        or ":" in location
        or location.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or location.split("/") != list(parts)
        or location == GRAPH_NAME
    ):
        raise ValueError(location)
    return location


def external_locations(model: Any) -> list[str]:
    """The distinct external-data locations a ``ModelProto`` names, in first-use order (raw: not
    checked)."""
    return list(dict.fromkeys(external_data_locations(model)))


def equal_dims(model: Any, inputs: Iterable[str]) -> tuple[tuple[tuple[str, int], ...], ...]:
    """Groups of ``(input, dim)`` that share one symbolic dimension (``dim_param``) in a
    ``ModelProto``: the model requires them to be equal (e.g. the batch of two inputs)."""
    wanted = set(inputs)
    groups: dict[str, list[tuple[str, int]]] = {}
    for value in model.graph.input:
        if value.name not in wanted:
            continue
        for d, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                groups.setdefault(dim.dim_param, []).append((value.name, d))
    return tuple(tuple(g) for g in groups.values() if len(g) >= 2)


def load_graph(path: str | os.PathLike[str]) -> Any:
    """The ``ModelProto`` at ``path`` without its external data."""
    return _load_graph(Path(path))


def load_graph_bytes(data: bytes) -> Any:
    """The ``ModelProto`` of serialized graph bytes (a small graph whose weights are external)."""
    import onnx

    return onnx.load_from_string(data)


@dataclass(frozen=True)
class OnnxSource:
    """An ONNX model on disk: its graph file, ``(location, file)`` for each data file, its
    input names (initializers excluded) and the groups of input dims it requires equal."""

    graph: Path
    data: tuple[tuple[str, Path], ...] = ()
    inputs: tuple[str, ...] = ()
    equal_dims: tuple[tuple[tuple[str, int], ...], ...] = ()

    @property
    def data_bytes(self) -> int:
        return sum(p.stat().st_size for _, p in self.data)


def _load_graph(path: Path) -> Any:
    try:
        import onnx
    except ImportError:
        raise InvalidArgumentError(
            "an ONNX source needs the onnx package: pip install 'rtxpack[onnxruntime]'"
        ) from None
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise InvalidArgumentError(f"{path} is not a readable ONNX model ({exc})") from None


def _inside(graph: Path, loc: str, file: Path) -> Path:
    """``file`` if it is a regular file whose real path lies in the model's folder (or, for a
    model that is itself a link, as in the Hugging Face cache, in its target's folder): a link out
    of the folder would put any file of this machine (a key, a password store) into the bundle."""
    real = Path(os.path.realpath(file))
    folders = {Path(os.path.realpath(graph.parent)), Path(os.path.realpath(graph)).parent}
    if not any(real.is_relative_to(f) for f in folders):
        raise InvalidArgumentError(
            f"{graph} keeps weights in {loc!r}, a link to {real}, outside the model's folder; "
            "rtxpack stores only data files inside it: copy the file there instead of linking it"
        )
    if not real.is_file():
        raise InvalidArgumentError(
            f"{graph} keeps weights in {loc!r}, which is not a regular file (a folder, FIFO or "
            "device); put the model's data file there"
        )
    return file


def scan_onnx(path: str | os.PathLike[str]) -> OnnxSource:
    """The graph at ``path`` and the external data files it references (which must lie beside it,
    inside its folder). Reads only the graph (``load_external_data=False``)."""
    graph = Path(path)
    model = _load_graph(graph)
    weights = {t.name for t in model.graph.initializer}
    inputs = tuple(v.name for v in model.graph.input if v.name not in weights)
    locations = external_locations(model)
    data = []
    for loc in locations:
        try:
            check_location(loc)
        except ValueError:
            raise InvalidArgumentError(
                f"{graph} references external data at {loc!r}, outside the model's folder; "
                "rtxpack stores only data files inside it (relative names without '..'): "
                "re-save the model with its data beside it (onnx.save(..., "
                "save_as_external_data=True, location='model.onnx.data'))"
            ) from None
        file = graph.parent / loc
        if not file.exists():
            raise InvalidArgumentError(
                f"{graph} keeps weights in the external data file {loc!r}, which is not at "
                f"{file}; copy it beside the model (ONNX resolves data files relative to the "
                "model's folder)"
            )
        data.append((loc, _inside(graph, loc, file)))
    return OnnxSource(graph, tuple(data), inputs, equal_dims(model, inputs))


def _write_view(target: Path, view: Any) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    with os.fdopen(fd, "wb") as f:
        for i in range(0, len(view), _CHUNK):
            f.write(view[i : i + _CHUNK])


def materialize(bundle: Any, info: Any) -> Path:
    """The engine's ONNX source written from ``bundle`` (a ``Bundle`` or an open container
    ``BundleFile``) into a new private
    temporary folder (mode 0700); returns the graph's path. The caller removes
    ``graph.parent`` (``materialized`` does it for a ``with`` block).

    Every section is digest-checked as it is read; every location the graph names must be one of
    the bundle's own data files (``refuse_outside_data``), else ``DamagedBundleError``: nothing
    outside the folder is read.
    """
    if info.source is None:
        raise InvalidArgumentError(f"engine {info.name!r} carries no ONNX source")
    sections = bundle.manifest.sections
    if hasattr(bundle, "read_section"):  # a Bundle
        read = bundle.read_section
    else:  # a container.BundleFile

        def read(index: int) -> Any:
            return bundle.decode(sections[index])

    folder = Path(tempfile.mkdtemp(prefix="rtxpack-source-"))
    try:
        graph = folder / GRAPH_NAME
        _write_view(graph, read(info.source))
        stored = set()
        for index in info.source_data:
            name = sections[index].name
            try:
                check_location(name)
            except ValueError:
                raise DamagedBundleError(
                    f"engine {info.name!r}: source data section {name!r} is not a plain relative "
                    "file name; the bundle is damaged or hostile"
                ) from None
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            view = read(index)
            try:
                _write_view(target, view)
            finally:
                if isinstance(view, memoryview):
                    view.release()
            stored.add(name)
        refuse_outside_data(
            graph.read_bytes(), what=f"the ONNX source of engine {info.name!r}", allowed=stored
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return graph


@contextlib.contextmanager
def materialized(bundle: Any, info: Any) -> Iterator[Path]:
    """``materialize`` for a ``with`` block: yields the graph's path, then removes the folder."""
    graph = materialize(bundle, info)
    try:
        yield graph
    finally:
        shutil.rmtree(graph.parent, ignore_errors=True)


def drop_source(
    bundle_path: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    engines: Iterable[str] | None = None,
) -> int:
    """Write the bundle without the ONNX source (graph and external data) of ``engines`` (all by
    default); ``output`` defaults to rewriting it in place. Returns the bytes removed.

    The ``source_digest`` stays, so the bundle still says which model it was built from; what is
    lost is the ONNX Runtime fallback, ``verify --run`` without a GPU, and ``rebuild``.
    """
    from dataclasses import replace

    from ._format import container

    src_path = Path(bundle_path)
    with container.rewriting(src_path, Path(output) if output else src_path) as (src, writer):
        manifest = src.manifest
        names = list(engines) if engines is not None else [e.name for e in manifest.engines]
        chosen = {manifest.engine(n).name for n in names}
        skip: set[int] = set()
        for e in manifest.engines:
            if e.name in chosen and e.source is not None:
                skip.add(e.source)
                skip.update(e.source_data)
        removed = sum(manifest.sections[i].length for i in skip)
        kept = replace(
            manifest,
            engines=tuple(
                replace(e, source=None, source_data=()) if e.name in chosen else e
                for e in manifest.engines
            ),
        )
        index = writer.copy_all(src, skip=skip)
        writer.finish(kept.renumbered(index, tuple(writer.sections)))
    return removed
