"""EPContext models of ONNX Runtime's TensorRT-RTX execution provider: export and import.

ONNX Runtime's ``NvTensorRTRTXExecutionProvider`` (built into ONNX Runtime, and as the plugin
package ``onnxruntime-ep-nv-tensorrt-rtx``) loads a precompiled engine from an ONNX model whose
graph is one ``EPContext`` node (domain ``com.microsoft``). docs/interop.md says which provider
source every attribute written here was checked against, and what could not be checked.

Import reads models from strangers: the file size is checked before the protobuf is parsed, the
protobuf is parsed from bytes (ONNX never resolves external data itself), every attribute is
type-, size- and value-checked, and an external engine path must name a regular file inside the
model's folder (no ``..``, no absolute path, no link out of the folder, no NUL, no FIFO/device).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from .._build.engine import current_platform
from .._build.header import sniff_engine_header
from .._bundle import Bundle, open_bundle
from .._exceptions import (
    ImportFormatError,
    InvalidArgumentError,
    OutputError,
    RtxpackError,
    attach_path,
)
from .._format import container
from .._format.manifest import (
    DTYPES,
    VERSION_RE,
    CacheInfo,
    EngineInfo,
    Limits,
    Manifest,
    ShapeRange,
    TensorSpec,
    _check_profiles,
)
from .._strategy import CudaGraphStrategy, RuntimeStrategy
from .._text import is_printable, shown, utc_now
from .._version import __version__
from .torch_tensorrt import PLATFORMS

__all__ = [
    "EP_NAME",
    "EpContextExport",
    "EpContextLimits",
    "export_epcontext",
    "import_epcontext",
]

#: The execution provider's name in ONNX Runtime.
EP_NAME = "NvTensorRTRTXExecutionProvider"
EPCONTEXT_OP = "EPContext"
EPCONTEXT_DOMAIN = "com.microsoft"
#: ``source`` names the EP that wrote a node. The provider's name is spelled several ways
#: (``NvTensorRTRTXExecutionProvider``, the plugin's ``nv_tensorrt_rtx``, ``NvTensorRtRtx...``):
#: a source is TensorRT-RTX's when, lower-cased and without punctuation, it contains this.
#: TensorRT's own ``TensorrtExecutionProvider`` does not. Absent or empty is accepted too.
_SOURCE_KEY = "tensorrtrtx"
#: The model-level metadata key under which rtxpack keeps what ONNX cannot express (profiles,
#: runtime strategy, platform), so that bundle -> EPContext -> bundle loses nothing.
METADATA_KEY = "rtxpack.epcontext"
_IR_VERSION = 9  # ONNX 1.15+ / ONNX Runtime 1.16+
_OPSET = 17
_EMBED_LIMIT = (2 << 30) - (64 << 20)  # protobuf messages stop at 2 GiB; leave room for the rest

#: rtxpack dtype name <-> ONNX TensorProto element type (numbers from onnx.proto).
_ONNX_TYPES = {
    "float32": 1,
    "uint8": 2,
    "int8": 3,
    "int32": 6,
    "int64": 7,
    "bool": 9,
    "float16": 10,
    "bfloat16": 16,
    "float8_e4m3fn": 17,
    "int4": 22,
    "float4_e2m1fn_x2": 23,
    "float8_e8m0fnu": 24,
}
_DTYPE_OF = {v: k for k, v in _ONNX_TYPES.items()}
assert set(_ONNX_TYPES) == set(DTYPES)
#: The element types ONNX Runtime's ``com.microsoft`` EPContext schema allows for the node's
#: inputs and outputs (type constraint ``T``; ONNX Runtime 1.32 refuses a model with any other,
#: e.g. float8 or int4 I/O, as invalid before any provider sees it).
_EPCONTEXT_DTYPES = ("float32", "float16", "bfloat16", "int8", "int32", "int64", "bool", "uint8")


@dataclass(frozen=True)
class EpContextLimits:
    """Bounds on everything the author of an EPContext model controls."""

    max_model_bytes: int = (2 << 30) - 1  # protobuf cannot hold more
    max_engine_bytes: int = 64 << 30  # an external engine file (embedded ones are in the model)
    max_nodes: int = 256  # as many engines as a bundle holds
    max_io_tensors: int = 1024
    max_rank: int = 16
    max_dim: int = 2**40
    max_text: int = 4096  # any string attribute but the engine, any name or path
    max_metadata_bytes: int = 1 << 20
    #: Protobuf fields in the whole model, counted on the wire before it is parsed (a packed
    #: repeated field counts one per byte): a parsed field costs ~100x its 2 bytes on the wire.
    max_protobuf_fields: int = 250_000
    max_protobuf_depth: int = 32  # levels of nested messages


DEFAULT_LIMITS = EpContextLimits()


@dataclass(frozen=True)
class EpContextExport:
    """What ``export_epcontext`` wrote, and the provider options that go with it."""

    model: Path
    engine_file: Path | None = None  # the engine beside the model (``embed=False``)
    source: Path | None = None  # the ONNX source, named by ``onnx_model_filename``
    runtime_cache: Path | None = None  # the runtime cache, named as the provider looks it up
    provider_options: Mapping[str, str] = field(default_factory=dict)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise InvalidArgumentError(
            "EPContext models need the onnx package: pip install 'rtxpack[onnxruntime]'"
        ) from None
    return onnx


# ---------------------------------------------------------------------------------------------
# Export


def partition_name(engine: str, digest: str) -> str:
    """The node's ``partition_name`` for an engine: also the file name the provider gives its
    runtime cache inside ``nv_runtime_cache_path``, so it must be a plain, portable file name,
    and differ between engines (several models usually share one cache folder, and most
    bundles name their engine ``main``): the engine's digest tells them apart, as the
    provider's own names carry a hash of the model."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", engine).strip(".")[:160]
    return f"rtxpack_{safe or 'engine'}_{digest.split(':')[-1][:12]}"


def _hardware_architecture(info: EngineInfo) -> str:
    # The providers write "<sm>+" ("80+" for their portable default builds) and only compare it
    # with the GPU to log a warning; rtxpack writes the same spelling.
    if info.hardware_portable or not info.compute_capabilities:
        return "80+"
    return ",".join(cc.replace(".", "") for cc in info.compute_capabilities)


def _value_info(onnx: Any, tensor: TensorSpec, dims: Sequence[str | int]) -> Any:
    return onnx.helper.make_tensor_value_info(tensor.name, _ONNX_TYPES[tensor.dtype], list(dims))


def _symbolic_dims(tensor: TensorSpec) -> list[str | int]:
    return [f"{tensor.name}_dim{i}" if d < 0 else d for i, d in enumerate(tensor.shape)]


def _rtxpack_metadata(info: EngineInfo, part: str) -> str:
    return json.dumps(
        {
            part: {
                "engine": info.name,
                "platform": info.platform,
                "trt_version": info.trt_version,
                "profiles": [{k: r.to_dict() for k, r in p.items()} for p in info.profiles],
                "strategy": info.strategy.to_dict(),
            }
        },
        sort_keys=True,
    )


def _pick_cache(caches: Sequence[CacheInfo], engine: str, cache_id: str | None) -> CacheInfo:
    mine = [c for c in caches if c.engine == engine]
    if cache_id is not None:
        for c in mine:
            if c.id == cache_id:
                return c
        raise InvalidArgumentError(
            f"no runtime cache {cache_id!r} for engine {engine!r} (it has: "
            f"{', '.join(c.id for c in mine) or 'none'})"
        )
    if not mine:
        raise InvalidArgumentError(
            f"engine {engine!r} has no runtime cache to export; prewarm one on the target GPU "
            "(rtxpack prewarm) or export without a runtime cache folder"
        )
    if len(mine) > 1:
        listed = ", ".join(
            f"{c.id} ({c.environment.gpu_name}, driver {c.environment.driver_version})"
            for c in mine
        )
        raise InvalidArgumentError(
            f"engine {engine!r} has {len(mine)} runtime caches ({listed}); the provider reads one "
            "file per engine, so choose one with cache_id=ID (--cache ID)"
        )
    return mine[0]


def export_epcontext(
    bundle: str | os.PathLike[str] | Bundle,
    output: str | os.PathLike[str],
    *,
    engine: str | None = None,
    embed: bool = True,
    include_source: bool = True,
    runtime_cache_dir: str | os.PathLike[str] | None = None,
    cache_id: str | None = None,
) -> EpContextExport:
    """Write one engine of a bundle as an EPContext model for ONNX Runtime's TensorRT-RTX EP.

    ``embed=True`` stores the engine bytes in the node's ``ep_cache_context``; ``embed=False``
    writes them to ``<model stem>.engine`` beside the model and stores that relative name. The
    bundle's ONNX source (if any, and ``include_source``) is written as
    ``<model stem>.source.onnx`` and named by ``onnx_model_filename``. ``runtime_cache_dir`` also
    writes the engine's runtime cache (``cache_id`` picks one when there are several) where the
    provider looks for it when ``nv_runtime_cache_path`` is that folder. Every file is written
    atomically; the model last, so it never names a file that is not there.
    """
    if isinstance(bundle, Bundle):
        return _export(bundle, output, engine, embed, include_source, runtime_cache_dir, cache_id)
    with open_bundle(bundle) as b:
        return _export(b, output, engine, embed, include_source, runtime_cache_dir, cache_id)


def _export(
    bundle: Bundle,
    output: str | os.PathLike[str],
    engine: str | None,
    embed: bool,
    include_source: bool,
    runtime_cache_dir: str | os.PathLike[str] | None,
    cache_id: str | None,
) -> EpContextExport:
    onnx = _onnx()
    info = bundle.manifest.engine(engine)
    if not info.inputs or not info.outputs:
        raise InvalidArgumentError(
            f"engine {info.name!r} has no recorded I/O signature (it was packed from a raw "
            "engine), and an EPContext model must declare the engine's inputs and outputs; "
            "rebuild the bundle from its ONNX model (rtxpack build) and export that"
        )
    odd = [t for t in (*info.inputs, *info.outputs) if t.dtype not in _EPCONTEXT_DTYPES]
    if odd:
        raise InvalidArgumentError(
            f"engine {info.name!r} has I/O tensor {odd[0].name!r} of type {odd[0].dtype}, which "
            "ONNX Runtime's EPContext operator does not take (it allows "
            f"{', '.join(_EPCONTEXT_DTYPES)}): ONNX Runtime would refuse the model as invalid; "
            "rebuild the engine with I/O of those types (quantize inside the network)"
        )
    target = Path(output)
    if target.suffix.lower() != ".onnx":
        raise InvalidArgumentError(f"output {target}: expected a file name ending in .onnx")
    part = partition_name(info.name, bundle.manifest.sections[info.section].digest)
    engine_view = bundle.read_engine(info.name)  # digest-checked before anything is written
    if embed and len(engine_view) > _EMBED_LIMIT:
        raise InvalidArgumentError(
            f"engine {info.name!r} is {len(engine_view)} bytes; a protobuf model cannot embed "
            "more than 2 GiB — export with embed=False (--external)"
        )
    engine_path = target.with_name(f"{target.stem}.engine")
    if not embed and target.stem.lower().endswith(".stripped"):
        raise InvalidArgumentError(
            f"output {target}: the engine file would be named {engine_path.name}, which the "
            "provider takes for a weight-stripped engine to refit; choose another model name"
        )
    source = bundle.read_source(info.name) if include_source else None
    source_path = target.with_name(f"{target.stem}.source.onnx") if source is not None else None
    cache_bytes: bytes | None = None
    cache_path: Path | None = None
    if runtime_cache_dir is not None:
        cache = _pick_cache(bundle.manifest.caches, info.name, cache_id)
        cache_bytes = bundle.read_cache(cache.id)
        cache_path = Path(runtime_cache_dir) / part
    elif cache_id is not None:
        raise InvalidArgumentError("cache_id needs runtime_cache_dir (--runtime-cache-dir DIR)")
    outputs = {"model": target, "engine file": None if embed else engine_path}
    outputs |= {"source model": source_path, "runtime cache": cache_path}
    container.distinct_outputs(
        {what: p for what, p in outputs.items() if p is not None}, {"bundle": bundle.path}
    )

    attrs: dict[str, Any] = {
        "main_context": 1,
        "embed_mode": 1 if embed else 0,
        "ep_cache_context": bytes(engine_view) if embed else engine_path.name.encode(),
        "hardware_architecture": _hardware_architecture(info),
        "partition_name": part,
        "source": EP_NAME,
        "ep_sdk_version": info.trt_version,
    }
    if source_path is not None:
        attrs["onnx_model_filename"] = source_path.name
    node = onnx.helper.make_node(
        EPCONTEXT_OP,
        [t.name for t in info.inputs],
        [t.name for t in info.outputs],
        name=part,
        domain=EPCONTEXT_DOMAIN,
        **attrs,
    )
    graph = onnx.helper.make_graph(
        [node],
        part,
        [_value_info(onnx, t, _symbolic_dims(t)) for t in info.inputs],
        [_value_info(onnx, t, _symbolic_dims(t)) for t in info.outputs],
    )
    model = onnx.helper.make_model(
        graph,
        opset_imports=[
            onnx.helper.make_opsetid("", _OPSET),
            onnx.helper.make_opsetid(EPCONTEXT_DOMAIN, 1),
        ],
        producer_name="rtxpack",
        producer_version=__version__,
    )
    model.ir_version = _IR_VERSION
    onnx.helper.set_model_props(model, {METADATA_KEY: _rtxpack_metadata(info, part)})
    blob = model.SerializeToString()

    # Enter the model's writer first so that it is renamed last: a failure anywhere leaves no
    # model that names a missing file, and no partial file at all (and an output folder that
    # does not exist is refused before the cache folder is made).
    with contextlib.ExitStack() as stack:
        model_f = stack.enter_context(container.atomic_output(target))
        if not embed:
            _write_view(stack.enter_context(container.atomic_output(engine_path)), engine_view)
        if source is not None and source_path is not None:
            stack.enter_context(container.atomic_output(source_path)).write(source)
        if cache_bytes is not None and cache_path is not None:
            try:
                cache_path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(
                    f"cannot create the runtime cache folder {cache_path.parent}: "
                    f"{exc.strerror or exc}; choose a folder you can write to",
                    path=cache_path.parent,
                ) from None
            stack.enter_context(container.atomic_output(cache_path)).write(cache_bytes)
        model_f.write(blob)
    options: dict[str, str] = {}
    if cache_path is not None:
        options["nv_runtime_cache_path"] = str(cache_path.parent)
    if info.strategy.cuda_graph_strategy is CudaGraphStrategy.WHOLE_GRAPH_CAPTURE:
        options["enable_cuda_graph"] = "1"
    return EpContextExport(
        model=target,
        engine_file=None if embed else engine_path,
        source=source_path,
        runtime_cache=cache_path,
        provider_options=options,
    )


def _write_view(f: BinaryIO, view: bytes | memoryview) -> None:
    data = memoryview(view).cast("B")
    for i in range(0, len(data), 1 << 24):
        f.write(data[i : i + (1 << 24)])


# ---------------------------------------------------------------------------------------------
# Import


def _bad(where: str, found: str, expected: str) -> ImportFormatError:
    return ImportFormatError(
        f"EPContext model {where}: found {found}, expected {expected}; the model is damaged, "
        "was not made for the TensorRT-RTX execution provider, or is hostile — get it again "
        "from its publisher"
    )


def _open_without_links(path: Path, flags: int) -> int:
    """Open an absolute path that has no links, one component at a time, refusing a link that
    appears in any component between a check and this open (where ``dir_fd`` is supported)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    if not nofollow or os.open not in os.supports_dir_fd:  # Windows: only the final component
        return os.open(path, flags | nofollow)
    fd = os.open(path.anchor, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.parts[1:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
            os.close(fd)
            fd = inner
        return os.open(path.name, flags | nofollow, dir_fd=fd)
    finally:
        os.close(fd)


def _open_regular(
    path: Path, what: str, max_bytes: int, *, no_links: bool = False
) -> tuple[int, int]:
    """Open ``path`` read-only without blocking on a FIFO (and, with ``no_links``, without
    following any link); returns (fd, size) after checking that it is a regular file of at most
    ``max_bytes``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = _open_without_links(path, flags) if no_links else os.open(path, flags)
    except FileNotFoundError:
        raise InvalidArgumentError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise ImportFormatError(f"{what} {path}: cannot be opened ({exc.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO, device or socket"
        raise ImportFormatError(f"{what} {path} is {kind}, expected a regular file")
    if st.st_size > max_bytes:
        os.close(fd)
        raise ImportFormatError(
            f"{what} {path} is {st.st_size} bytes, above the limit of {max_bytes}; if it is "
            "genuine, raise the limit (EpContextLimits)"
        )
    return fd, st.st_size


def _read_fd(fd: int, size: int, what: str) -> bytes:
    with os.fdopen(fd, "rb") as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise ImportFormatError(f"{what} changed size while it was read; try again")
    return data


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while shift < 70:
        if pos >= len(data):
            raise ValueError("a varint runs past the end")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("a varint longer than 10 bytes")


def _check_wire(data: bytes, descriptor: Any, where: str, limits: EpContextLimits) -> None:
    """Walk the protobuf wire format of ``data`` (a message of type ``descriptor``) and count
    its fields before anything is parsed: protobuf would expand a few MB of tiny repeated
    messages into GBs of objects, so the field count and nesting are bounded first. Raises
    ImportFormatError for a limit passed, ValueError for malformed wire data."""
    view = memoryview(data)
    left = limits.max_protobuf_fields

    def walk(pos: int, end: int, desc: Any, depth: int) -> None:
        nonlocal left
        if depth > limits.max_protobuf_depth:
            raise _bad(
                where,
                f"protobuf messages nested deeper than {limits.max_protobuf_depth} levels",
                "the few levels an EPContext model has",
            )
        while pos < end:
            key, pos = _varint(view, pos)
            left -= 1
            wire = key & 7
            if wire == 0:
                pos = _varint(view, pos)[1]
            elif wire in (1, 5):
                pos += 8 if wire == 1 else 4
            elif wire == 2:
                length, pos = _varint(view, pos)
                if pos + length > end:
                    raise ValueError("a length runs past the end")
                field = desc.fields_by_number.get(key >> 3) if desc is not None else None
                if field is not None and field.message_type is not None:
                    walk(pos, pos + length, field.message_type, depth + 1)
                elif field is not None and field.type not in (field.TYPE_STRING, field.TYPE_BYTES):
                    left -= length  # packed numbers: at most one per byte
                pos += length
            else:  # groups (3, 4): ONNX has none; 6, 7 do not exist
                raise ValueError(f"wire type {wire}")
            if left < 0:
                raise _bad(
                    where,
                    f"more than {limits.max_protobuf_fields} protobuf fields",
                    "fewer (EpContextLimits.max_protobuf_fields bounds the memory parsing takes)",
                )
        if pos != end:
            raise ValueError("a field runs past the end")

    walk(0, len(view), descriptor, 0)


def _parse_model(path: Path, limits: EpContextLimits) -> Any:
    onnx = _onnx()
    fd, size = _open_regular(path, "EPContext model", limits.max_model_bytes)
    data = _read_fd(fd, size, f"EPContext model {path}")
    model = onnx.ModelProto()
    try:
        _check_wire(data, model.DESCRIPTOR, path.name, limits)
        # Parsed from bytes: onnx.load would also open files named by external-data entries.
        model.ParseFromString(data)
    except ImportFormatError:
        raise
    except Exception as exc:  # ValueError, google.protobuf.message.DecodeError, RecursionError
        raise ImportFormatError(
            f"EPContext model {path} is not a valid ONNX protobuf ({type(exc).__name__}: "
            f"{str(exc)[:200]}); it is truncated or not an ONNX model"
        ) from None
    if not model.HasField("graph"):
        raise _bad(str(path), "no graph", "an ONNX model with a graph of EPContext nodes")
    return model


def _text(value: Any, where: str, limit: int) -> str:
    if isinstance(value, bytes):
        if len(value) > limit:
            raise _bad(where, f"{len(value)} bytes", f"at most {limit}")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad(where, "bytes that are not UTF-8", "text") from None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(where, shown(value), f"text of at most {limit} characters")
    if "\x00" in value:
        raise _bad(where, shown(value), "text without NUL characters")
    return value


@dataclass(frozen=True)
class _Attrs:
    embed_mode: int
    context: bytes
    main_context: int
    partition_name: str
    source: str
    hardware_architecture: str
    ep_sdk_version: str
    onnx_model_filename: str


def _attributes(onnx: Any, node: Any, where: str, limits: EpContextLimits) -> _Attrs:
    ints: dict[str, int] = {}
    strings: dict[str, bytes] = {}
    for a in node.attribute:
        if a.name in ints or a.name in strings:
            raise _bad(where, f"attribute {a.name!r} twice", "each attribute once")
        if a.type == onnx.AttributeProto.INT:
            ints[a.name] = a.i
        elif a.type == onnx.AttributeProto.STRING:
            strings[a.name] = a.s
        elif a.name in ("embed_mode", "main_context", "ep_cache_context"):
            raise _bad(f"{where} attribute {a.name!r}", f"type {a.type}", "INT or STRING")
    for key in ("embed_mode", "ep_cache_context"):
        if key not in ints and key not in strings:
            raise _bad(
                where,
                f"no {key!r} attribute",
                "the attributes embed_mode and ep_cache_context, which the provider reads",
            )
    if "embed_mode" not in ints:
        raise _bad(f"{where} embed_mode", "a string", "the integer 0 or 1")
    if "ep_cache_context" not in strings:
        raise _bad(f"{where} ep_cache_context", "an integer", "a string (engine bytes or path)")
    if "main_context" in strings:
        raise _bad(f"{where} main_context", "a string", "the integer 0 or 1")
    embed_mode = ints["embed_mode"]
    main_context = ints.get("main_context", 1)
    if embed_mode not in (0, 1):
        raise _bad(f"{where} embed_mode", str(embed_mode), "0 or 1")
    if main_context not in (0, 1):
        raise _bad(f"{where} main_context", str(main_context), "0 or 1")

    def text(key: str) -> str:
        return _text(strings.get(key, b""), f"{where} attribute {key!r}", limits.max_text)

    return _Attrs(
        embed_mode=embed_mode,
        context=strings["ep_cache_context"],
        main_context=main_context,
        partition_name=text("partition_name"),
        source=text("source"),
        hardware_architecture=text("hardware_architecture"),
        ep_sdk_version=text("ep_sdk_version"),
        onnx_model_filename=text("onnx_model_filename"),
    )


_WINDOWS_ABSOLUTE = re.compile(r"^([A-Za-z]:|[\\/]{2})")


def _safe_relative(value: str, where: str) -> PurePosixPath:
    """A path from a stranger's model as parts relative to the model's folder, or an error."""
    if not value:
        raise _bad(where, "an empty path", "the engine file's path relative to the model")
    if value.startswith(("/", "\\")) or _WINDOWS_ABSOLUTE.match(value):
        raise _bad(
            where,
            f"the absolute path {shown(value)}",
            "a path relative to the model's folder (the provider refuses absolute paths too)",
        )
    parts = [p for p in re.split(r"[\\/]+", value) if p not in ("", ".")]
    if ".." in parts:
        raise _bad(
            where,
            f"the path {shown(value)} with '..'",
            "a file inside the model's folder (the provider refuses '..' too)",
        )
    if not parts or not all(map(is_printable, parts)):
        raise _bad(where, shown(value), "a printable relative file path")
    return PurePosixPath(*parts)


def _open_external(
    model_path: Path, rel: PurePosixPath, where: str, limits: EpContextLimits
) -> tuple[int, int]:
    # The folder the model is in as named, as ONNX Runtime joins the path to it: a model that
    # is a link to elsewhere does not bring the link target's folder's files along.
    folder = Path(os.path.realpath(model_path.absolute().parent))
    candidate = folder.joinpath(*rel.parts)
    real = Path(os.path.realpath(candidate))
    if os.path.commonpath([str(folder), str(real)]) != str(folder):
        raise _bad(
            where,
            f"{rel} which resolves (through a link) to {real}, outside {folder}",
            "a file inside the model's folder",
        )
    if not real.exists():
        raise ImportFormatError(
            f"EPContext model {where}: the engine file {rel} is not in {folder}; copy it beside "
            "the model (external engines travel with their model)"
        )
    # realpath has no links left; a link swapped in after the check is refused at open.
    return _open_regular(real, "engine file", limits.max_engine_bytes, no_links=True)


def _check_engine_head(head: bytes, where: str) -> None:
    if sniff_engine_header(head) is not None:
        return
    if head[:4] == b"ftrt":
        raise _bad(
            where,
            "a TensorRT (not TensorRT-RTX) engine",
            "a TensorRT-RTX engine; models compiled by TensorrtExecutionProvider cannot be "
            "imported — compile the model with NvTensorRTRTXExecutionProvider",
        )
    raise _bad(where, f"data starting with {head[:8]!r}", "a TensorRT-RTX engine (b'vtrt...')")


def _tensor(onnx: Any, vi: Any, where: str, limits: EpContextLimits) -> TensorSpec:
    name = _text(vi.name, f"{where} name", limits.max_text)
    t = vi.type
    if t.WhichOneof("value") != "tensor_type":
        raise _bad(where, f"{name!r} of a non-tensor type", "a tensor")
    elem = t.tensor_type.elem_type
    if elem not in _DTYPE_OF:
        kind = (
            onnx.TensorProto.DataType.Name(elem)
            if elem in onnx.TensorProto.DataType.values()
            else str(elem)
        )
        raise _bad(where, f"{name!r} of element type {kind}", "a type TensorRT-RTX engines take")
    if not t.tensor_type.HasField("shape"):
        raise _bad(where, f"{name!r} without a shape", "a shape (symbolic dimensions are fine)")
    dims = t.tensor_type.shape.dim
    if len(dims) > limits.max_rank:
        raise _bad(where, f"{name!r} of rank {len(dims)}", f"rank at most {limits.max_rank}")
    shape: list[int] = []
    for d in dims:
        if d.WhichOneof("value") == "dim_value":
            if not 0 <= d.dim_value <= limits.max_dim:
                raise _bad(where, f"{name!r} dimension {d.dim_value}", f"0..{limits.max_dim}")
            shape.append(d.dim_value)
        else:
            shape.append(-1)
    return TensorSpec(name, _DTYPE_OF[elem], tuple(shape))


def _signature(
    onnx: Any, graph: Any, node: Any, where: str, limits: EpContextLimits
) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    if len(node.input) > limits.max_io_tensors or len(node.output) > limits.max_io_tensors:
        raise _bad(
            where,
            f"{len(node.input)} inputs, {len(node.output)} outputs",
            f"at most {limits.max_io_tensors} each",
        )
    known: dict[str, Any] = {}
    for vi in (*graph.input, *graph.output, *graph.value_info):
        known.setdefault(vi.name, vi)

    def spec(name: str, role: str) -> TensorSpec:
        if name not in known:
            raise _bad(where, f"{role} {shown(name)} with no declared type", "typed graph I/O")
        return _tensor(onnx, known[name], f"{where} {role}", limits)

    names = [*node.input, *node.output]
    if "" in names or len(set(names)) != len(names):
        raise _bad(
            where,
            f"inputs {shown(list(node.input))} and outputs {shown(list(node.output))}",
            "distinct, non-empty names: each is one I/O tensor of the engine",
        )
    return (
        tuple(spec(n, "input") for n in node.input),
        tuple(spec(n, "output") for n in node.output),
    )


def _extras(model: Any, limits: EpContextLimits) -> dict[str, Any]:
    """rtxpack's own metadata (profiles, strategy, platform) if this model carries it."""
    for p in model.metadata_props:
        if p.key != METADATA_KEY:
            continue
        if len(p.value) > limits.max_metadata_bytes:
            raise _bad(f"metadata {METADATA_KEY!r}", f"{len(p.value)} characters", "less")
        try:
            data = json.loads(p.value)
        except (ValueError, RecursionError):
            raise _bad(f"metadata {METADATA_KEY!r}", "invalid JSON", "rtxpack's JSON") from None
        if not isinstance(data, dict):
            raise _bad(f"metadata {METADATA_KEY!r}", type(data).__name__, "a JSON object")
        return data
    return {}


@dataclass(frozen=True)
class _Extras:
    """What rtxpack's metadata adds for one node (all None/empty for other writers' models)."""

    engine: str | None = None
    profiles: tuple[dict[str, ShapeRange], ...] = ()
    strategy: RuntimeStrategy | None = None
    platform: str | None = None
    trt_version: str | None = None


def _engine_extras(
    extra: Any, inputs: tuple[TensorSpec, ...], where: str, limits: EpContextLimits
) -> _Extras:
    """Validate rtxpack's metadata for one node."""
    if extra is None:
        return _Extras()
    here = f"{where} rtxpack metadata"
    if not isinstance(extra, dict):
        raise _bad(here, type(extra).__name__, "a JSON object")
    name = extra.get("engine")
    if name is not None and not _bundle_name(name):
        raise _bad(here, f"engine name {shown(name)}", "1 to 256 printable characters")
    platform = extra.get("platform")
    if platform is not None and platform not in PLATFORMS:
        raise _bad(here, f"platform {shown(platform)}", "one of " + ", ".join(PLATFORMS))
    manifest_limits = Limits(max_io_tensors=limits.max_io_tensors, max_rank=limits.max_rank)
    raw_profiles = extra.get("profiles", [])
    if not isinstance(raw_profiles, list) or len(raw_profiles) > manifest_limits.max_profiles:
        raise _bad(here, "profiles that are not a short list", "a list of profiles")
    profiles: list[dict[str, ShapeRange]] = []
    for i, prof in enumerate(raw_profiles):
        if not isinstance(prof, dict):
            raise _bad(here, f"profile {i} {shown(prof)}", "ranges for the node's inputs")
        try:
            profiles.append(
                {
                    k: ShapeRange.from_dict(v, f"profiles[{i}][{k!r}]", manifest_limits)
                    for k, v in prof.items()
                }
            )
        except RtxpackError as exc:
            raise _bad(here, str(exc).split("; the bundle")[0], "valid shape ranges") from None
    try:
        _check_profiles(inputs, profiles, "profiles")
    except RtxpackError as exc:
        found = str(exc).split("; the bundle")[0].removeprefix("invalid bundle manifest: ")
        raise _bad(here, f"profiles that break the format's rule ({found})", "valid ones") from None
    strategy = None
    if "strategy" in extra:
        try:
            strategy = RuntimeStrategy.from_dict(extra["strategy"])
        except Exception as exc:  # InvalidArgumentError, or a non-map
            raise _bad(here, f"strategy {shown(extra['strategy'])}", str(exc)[:200]) from None
    trt_version = extra.get("trt_version")
    if trt_version is not None and (
        not isinstance(trt_version, str) or not VERSION_RE.fullmatch(trt_version)
    ):
        raise _bad(here, f"trt_version {shown(trt_version)}", "a version like 1.7.1.116")
    return _Extras(name, tuple(profiles), strategy, platform, trt_version)


def _bundle_name(value: Any) -> bool:
    """Whether ``value`` is a name the bundle format takes (docs/format.md, "Names")."""
    return isinstance(value, str) and 1 <= len(value) <= 256 and is_printable(value)


def _plain_name(value: str, where: str) -> None:
    """The provider names the runtime cache file after ``partition_name``: refuse a name that
    would put that file anywhere but inside ``nv_runtime_cache_path``."""
    if value and (
        any(c in value for c in "/\\:") or value in (".", "..") or not is_printable(value)
    ):
        raise _bad(
            f"{where} partition_name",
            shown(value),
            "a plain file name (the provider names its runtime cache file after it; separators "
            "or '..' would make it write outside nv_runtime_cache_path)",
        )


@dataclass
class _Node:
    name: str
    attrs: _Attrs
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    extras: _Extras
    external: Path | None  # the engine file, for embed_mode 0


def _nodes(onnx: Any, model: Any, path: Path, limits: EpContextLimits) -> list[_Node]:
    graph = model.graph
    nodes = list(graph.node)
    where = f"{path.name}"
    if not nodes:
        raise _bad(where, "a graph without nodes", "one EPContext node per engine")
    if len(nodes) > limits.max_nodes:
        raise _bad(where, f"{len(nodes)} nodes", f"at most {limits.max_nodes}")
    others = sorted({n.op_type for n in nodes if n.op_type != EPCONTEXT_OP})
    if others:
        raise _bad(
            where,
            f"nodes other than EPContext ({shown(', '.join(others), 120)})",
            "a model compiled whole by the TensorRT-RTX provider; a partly compiled model (some "
            "nodes left to other providers) is more than a bundle of engines can hold",
        )
    extras = _extras(model, limits)
    out: list[_Node] = []
    for i, n in enumerate(nodes):
        here = f"{path.name} node {i} ({shown(n.name, 40)})"
        if n.domain != EPCONTEXT_DOMAIN:
            raise _bad(here, f"domain {shown(n.domain)}", f"{EPCONTEXT_DOMAIN!r}")
        attrs = _attributes(onnx, n, here, limits)
        if attrs.source and _SOURCE_KEY not in re.sub(r"[^a-z0-9]", "", attrs.source.lower()):
            raise _bad(
                here,
                f"source {shown(attrs.source)}",
                f"{EP_NAME} (this node holds another execution provider's context)",
            )
        if not attrs.context:
            raise _bad(
                here,
                "an empty ep_cache_context"
                + (
                    " and main_context 0 (a reference to another node's context)"
                    if attrs.main_context == 0
                    else ""
                ),
                "an engine or the path of one: TensorRT-RTX nodes each carry their own engine",
            )
        _plain_name(attrs.partition_name, here)
        inputs, outputs = _signature(onnx, graph, n, here, limits)
        part = attrs.partition_name or _text(n.name, f"{here} name", limits.max_text)
        extra = extras.get(part) if part else None
        extras_ = _engine_extras(extra, inputs, here, limits)
        name = extras_.engine or part or f"engine{i}"
        if not _bundle_name(name):
            name = f"engine{i}"
        external = None
        if attrs.embed_mode == 0:
            rel = _safe_relative(
                _text(attrs.context, f"{here} ep_cache_context", limits.max_text),
                f"{here} ep_cache_context",
            )
            external = path.parent / Path(*rel.parts)
        out.append(_Node(name, attrs, inputs, outputs, extras_, external))
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, node in enumerate(out):
        key = node.attrs.partition_name or node.name
        if key in seen:
            raise _bad(
                path.name,
                f"nodes {seen[key]} and {i} both claiming the main context {key!r}",
                "one main context per partition (the provider would give both the same runtime "
                "cache file, and the engines could not be told apart)",
            )
        seen[key] = i
        if node.name in names:
            raise _bad(
                path.name,
                f"nodes {names[node.name]} and {i} both named {node.name!r}",
                "one engine name per node",
            )
        names[node.name] = i
    files = [str(n.external) for n in out if n.external is not None]
    if len(set(files)) != len(files):
        raise _bad(
            path.name,
            "several nodes naming the same engine file",
            "one engine file per node (TensorRT-RTX contexts are not shared between nodes)",
        )
    return out


def _chunks(f: BinaryIO, size: int, what: str) -> Iterator[bytes]:
    left = size
    while left:
        chunk = f.read(min(left, 1 << 24))
        if not chunk:
            raise ImportFormatError(f"{what} got shorter while it was read; try again")
        left -= len(chunk)
        yield chunk
    if f.read(1):
        raise ImportFormatError(f"{what} got longer while it was read; try again")


def import_epcontext(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    source: str | os.PathLike[str] | None = None,
    strategy: RuntimeStrategy | None = None,
    limits: EpContextLimits = DEFAULT_LIMITS,
) -> Path:
    """Write a bundle holding the engines of an EPContext model (one engine per node).

    Engines come from the nodes (embedded, or a file beside the model); their I/O signature from
    the graph; the TensorRT-RTX version and targets from each engine's header. ``source`` is the
    ONNX model the engine was compiled from (for a single-engine model). Profiles and runtime
    settings come back when the model was exported by rtxpack; ``strategy`` overrides them.
    """
    onnx = _onnx()
    path = Path(model)
    try:
        proto = _parse_model(path, limits)
        nodes = _nodes(onnx, proto, path, limits)
    except ImportFormatError as exc:
        attach_path(exc, path)  # errors about the model name it in .path
        raise
    del proto  # the embedded engines are kept in the nodes' attributes only
    src_bytes: bytes | None = None
    if source is not None:
        if len(nodes) != 1:
            raise InvalidArgumentError(
                f"{path} holds {len(nodes)} engines; a source model can be attached to a "
                "single-engine model only — import without source"
            )
        fd, size = _open_regular(Path(source), "source model", limits.max_model_bytes)
        src_bytes = _read_fd(fd, size, f"source model {source}")
    target = Path(output)
    inputs: dict[str, Path | str | os.PathLike[str]] = {"EPContext model": path}
    inputs |= {f"engine file of {n.name!r}": n.external for n in nodes if n.external is not None}
    if source is not None:
        inputs["source model"] = source
    container.distinct_outputs({"bundle": target}, inputs)
    records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        opened: list[tuple[BinaryIO, int] | None] = []
        for node in nodes:
            here = f"{path.name} engine {node.name!r}"
            if node.external is None:
                _check_engine_head(node.attrs.context[:64], here)
                opened.append(None)
                continue
            rel = PurePosixPath(*node.external.relative_to(path.parent).parts)
            fd, size = _open_external(path, rel, f"{here} ep_cache_context", limits)
            f: BinaryIO = stack.enter_context(os.fdopen(fd, "rb"))
            _check_engine_head(f.read(64), here)
            f.seek(0)
            opened.append((f, size))
        out = stack.enter_context(container.atomic_output(target))
        writer = container.BundleWriter(out)
        engines: list[EngineInfo] = []
        for node, handle in zip(nodes, opened):
            if handle is None:
                data: bytes = node.attrs.context
                head = data[:64]
                idx = writer.add_bytes("engine", node.name, data)
            else:
                fin, size = handle
                head = fin.read(64)
                fin.seek(0)
                idx = writer.add_chunks("engine", node.name, _chunks(fin, size, str(node.external)))
            header = sniff_engine_header(head)
            assert header is not None  # checked above
            ext = node.extras
            # A build records the full version (1.7.1.116); the header only major.minor.patch.
            full = ext.trt_version
            trt_version = full if full and full.startswith(header.trt_version + ".") else None
            src_idx = (
                writer.add_bytes("source", node.name, src_bytes, "zstd")
                if src_bytes is not None
                else None
            )
            engines.append(
                EngineInfo(
                    name=node.name,
                    section=idx,
                    trt_version=trt_version or header.trt_version,
                    compute_capabilities=header.compute_capabilities,
                    hardware_portable=header.hardware_portable,
                    platform=ext.platform or current_platform(),
                    inputs=node.inputs,
                    outputs=node.outputs,
                    profiles=ext.profiles,
                    strategy=strategy or ext.strategy or RuntimeStrategy(),
                    source=src_idx,
                    source_digest=container.digest(src_bytes) if src_bytes is not None else None,
                )
            )
            a = node.attrs
            records.append(
                {
                    "engine": node.name,
                    "partition_name": a.partition_name,
                    "embed_mode": a.embed_mode,
                    "main_context": a.main_context,
                    "engine_file": None
                    if node.external is None
                    else str(node.external.relative_to(path.parent).as_posix()),
                    "hardware_architecture": a.hardware_architecture,
                    "ep_sdk_version": a.ep_sdk_version,
                    "source": a.source,
                    "onnx_model_filename": a.onnx_model_filename,
                }
            )
        record_idx = writer.add_bytes(
            "file",
            "epcontext.json",
            json.dumps({"model": path.name, "nodes": records}, indent=1).encode(),
            "zstd",
        )
        writer.finish(
            Manifest(
                rtxpack_version=__version__,
                created_at=utc_now(),
                sections=tuple(writer.sections),
                engines=tuple(engines),
                files={"epcontext.json": record_idx},
                metadata={"epcontext.model": path.name[:4096]},
            )
        )
    return target
