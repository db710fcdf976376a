"""Import an engine serialized by Torch-TensorRT into a bundle, without torch_tensorrt.

Torch-TensorRT serializes one engine as a list of strings indexed by ``SerializedInfoIndex``
(Torch-TensorRT's ``TRTEngine`` ABI; docs/migration.md has the table of layouts). The list
comes as a Python list, a JSON file, or inside a TorchScript / ExportedProgram zip, where it is
found by walking the pickle opcodes with ``pickletools.genops``: nothing is ever unpickled, no
code from the file runs, and the pickled compile settings (slot 7) are only measured.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import pickletools
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .._build.header import sniff_engine_header
from .._exceptions import ImportFormatError, InvalidArgumentError, attach_path
from .._format import container
from .._format.manifest import EngineInfo, Manifest
from .._strategy import (
    AllocationStrategy,
    CudaGraphStrategy,
    DynamicShapesStrategy,
    RuntimeStrategy,
)
from .._text import utc_now
from .._version import __version__

__all__ = ["TorchTRTEngine", "import_torch_tensorrt", "parse_serialized_info"]

_COMMON = (
    "ABI_TARGET",
    "NAME",
    "DEVICE",
    "ENGINE",
    "INPUT_BINDING_NAMES",
    "OUTPUT_BINDING_NAMES",
    "HW_COMPATIBLE",
    "SERIALIZED_METADATA",
    "TARGET_PLATFORM",
    "REQUIRES_OUTPUT_ALLOCATOR",
    "RESOURCE_ALLOCATION_STRATEGY",
)
#: (ABI version string, slot count) -> (layout description, slot names).
LAYOUTS: dict[tuple[str, int], tuple[str, tuple[str, ...]]] = {
    ("8", 11): ("ABI 8 (11 slots)", _COMMON),
    ("9", 12): ("ABI 9 (12 slots)", (*_COMMON, "REQUIRES_NATIVE_MULTIDEVICE")),
    ("10", 13): ("ABI 10 (13 slots)", (*_COMMON, "REQUIRES_NATIVE_MULTIDEVICE", "ALIASED_IO")),
    ("9", 14): (
        "ABI 9, 14-slot TensorRT-RTX variant (never merged upstream)",
        (
            *_COMMON,
            "RUNTIME_CACHE_PATH",
            "DYNAMIC_SHAPES_KERNEL_STRATEGY",
            "CUDA_GRAPH_STRATEGY",
        ),
    ),
}
SUPPORTED = "ABI 8 (11 slots), 9 (12 slots), 10 (13 slots), 9 (14 slots, TensorRT-RTX variant)"
PLATFORMS = ("linux_x86_64", "linux_aarch64", "windows_x86_64", "windows_arm64", "unknown")
_MAX_SLOTS = 15
_MAX_TEXT = 1 << 20  # a name, device string or binding list longer than 1 MiB is not real
_MAX_METADATA = 256 << 20  # the pickled compile settings (only measured)
_MAX_ENGINE_B64 = 16 << 30
_MAX_ZIP_MEMBER = 16 << 30
_MAX_PICKLE_OPS = 50_000_000
_DYN = {
    "0": DynamicShapesStrategy.LAZY,
    "1": DynamicShapesStrategy.EAGER,
    "2": DynamicShapesStrategy.NONE,
}


@dataclass(frozen=True)
class TorchTRTEngine:
    """One decoded Torch-TensorRT engine record."""

    layout: str
    name: str
    engine: bytes
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    device: dict[str, str]
    hw_compatible: bool
    target_platform: str
    strategy: RuntimeStrategy
    metadata: dict[str, str] = field(default_factory=dict)


def _fail(slot: str, found: str, expected: str) -> ImportFormatError:
    return ImportFormatError(
        f"Torch-TensorRT engine: slot {slot} is {found}, expected {expected}; the serialized "
        "info is damaged or not from Torch-TensorRT"
    )


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _text(value: Any, slot: str, limit: int = _MAX_TEXT) -> str:
    if isinstance(value, (bytes, bytearray)):
        if len(value) > limit:
            raise _fail(slot, f"{len(value)} bytes long", f"at most {limit} bytes")
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(slot, "bytes that are not UTF-8 text", "text") from None
    if not isinstance(value, str):
        raise _fail(slot, f"a {type(value).__name__}", "a string")
    if len(value) > limit:
        raise _fail(slot, f"{len(value)} characters long", f"at most {limit} characters")
    return value


def _flag(value: Any, slot: str) -> bool:
    text = _text(value, slot)
    if text not in ("0", "1"):
        raise _fail(slot, _shown(text), '"0" or "1"')
    return text == "1"


def _names(value: Any, slot: str) -> tuple[str, ...]:
    text = _text(value, slot)
    return tuple(text.split("%")) if text else ()


def _engine(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)) and bytes(value[:4]) == b"vtrt":
        data = bytes(value)  # already raw (Python-side state holds bytes)
    else:
        if isinstance(value, str):
            value = value.encode("ascii", "replace")
        if not isinstance(value, (bytes, bytearray)):
            raise _fail("ENGINE", f"a {type(value).__name__}", "base64 text")
        if len(value) > _MAX_ENGINE_B64:
            raise _fail("ENGINE", f"{len(value)} bytes", f"at most {_MAX_ENGINE_B64}")
        try:
            data = base64.b64decode(bytes(value), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _fail("ENGINE", f"not valid base64 ({exc})", "base64 engine bytes") from None
    if sniff_engine_header(data) is None:
        raise _fail(
            "ENGINE",
            f"data starting with {data[:8]!r}",
            "a TensorRT-RTX engine (starting with b'vtrt'); engines built by TensorRT (not "
            "-RTX) cannot be imported — recompile with Torch-TensorRT-RTX",
        )
    return data


def _device(value: Any) -> dict[str, str]:
    text = _text(value, "DEVICE", 1024)
    parts = text.split("%")
    if len(parts) != 5:
        raise _fail(
            "DEVICE",
            f"{_shown(text)} ({len(parts)} fields)",
            "5 %-separated fields id%major%minor%device_type%device_name",
        )
    for label, p in zip(("id", "major", "minor", "device_type"), parts):
        if not (p.isascii() and p.isdigit() and len(p) <= 9):
            raise _fail("DEVICE", f"{_shown(text)} (field {label} = {p!r})", "an integer there")
    return {
        "id": parts[0],
        "compute_capability": f"{int(parts[1])}.{int(parts[2])}",
        "device_type": parts[3],
        "device_name": parts[4],
    }


def parse_serialized_info(info: Sequence[str | bytes]) -> TorchTRTEngine:
    """Decode one Torch-TensorRT serialized-info list; raises ImportFormatError if malformed."""
    if isinstance(info, (str, bytes)) or not isinstance(info, Sequence):
        raise ImportFormatError(
            f"Torch-TensorRT engine: expected a list of strings, got {type(info).__name__}"
        )
    n = len(info)
    if n == 0:
        raise ImportFormatError(f"Torch-TensorRT engine: the list is empty; supported: {SUPPORTED}")
    abi = _text(info[0], "ABI_TARGET", 16)
    if n > _MAX_SLOTS:
        raise ImportFormatError(
            f"Torch-TensorRT engine: {n} slots (ABI {abi!r}), more than any known layout "
            f"({_MAX_SLOTS}); supported: {SUPPORTED}"
        )
    if (abi, n) == ("9", 15):
        raise ImportFormatError(
            "Torch-TensorRT engine: ABI '9' with 15 slots is the second, never-merged "
            "TensorRT-RTX proposal (runtime settings in slots 12-14); its slot meanings are not "
            f"documented well enough to import safely. Supported: {SUPPORTED}. Re-serialize the "
            "module with a released Torch-TensorRT, or write a 14-slot list as JSON"
        )
    if (abi, n) not in LAYOUTS:
        counts = sorted(c for a, c in LAYOUTS if a == abi)
        known = f" (ABI {abi} has {' or '.join(map(str, counts))} slots)" if counts else ""
        raise ImportFormatError(
            f"Torch-TensorRT engine: found ABI {abi!r} with {n} slots{known}; supported: "
            f"{SUPPORTED}. Re-serialize the module with a Torch-TensorRT release that writes one "
            "of these"
        )
    layout, names = LAYOUTS[(abi, n)]
    slot = dict(zip(names, info))
    meta_blob = slot["SERIALIZED_METADATA"]
    if not isinstance(meta_blob, (str, bytes, bytearray)) or len(meta_blob) > _MAX_METADATA:
        raise _fail("SERIALIZED_METADATA", "too large or not text", f"< {_MAX_METADATA} bytes")
    platform = _text(slot["TARGET_PLATFORM"], "TARGET_PLATFORM", 64)
    if platform not in PLATFORMS:
        raise _fail("TARGET_PLATFORM", _shown(platform), "one of " + ", ".join(PLATFORMS))
    alloc = _flag(slot["RESOURCE_ALLOCATION_STRATEGY"], "RESOURCE_ALLOCATION_STRATEGY")
    strategy = RuntimeStrategy(
        execution_context_allocation_strategy=AllocationStrategy.ON_PROFILE_CHANGE
        if alloc
        else AllocationStrategy.STATIC
    )
    device = _device(slot["DEVICE"])
    hw = _flag(slot["HW_COMPATIBLE"], "HW_COMPATIBLE")
    meta = {
        "torch_tensorrt.abi": abi,
        "torch_tensorrt.layout": layout,
        "torch_tensorrt.device": json.dumps(device, sort_keys=True),
        "torch_tensorrt.compute_capability": device["compute_capability"],
        "torch_tensorrt.hw_compatible": "1" if hw else "0",
        "torch_tensorrt.target_platform": platform,
        "torch_tensorrt.requires_output_allocator": "1"
        if _flag(slot["REQUIRES_OUTPUT_ALLOCATOR"], "REQUIRES_OUTPUT_ALLOCATOR")
        else "0",
        "torch_tensorrt.resource_allocation_strategy": "dynamic" if alloc else "static",
        "torch_tensorrt.serialized_metadata": (
            f"{len(meta_blob)} bytes, pickled compile settings, not decoded"
            if meta_blob
            else "absent"
        ),
    }
    if "REQUIRES_NATIVE_MULTIDEVICE" in slot:
        multi = _flag(slot["REQUIRES_NATIVE_MULTIDEVICE"], "REQUIRES_NATIVE_MULTIDEVICE")
        meta["torch_tensorrt.requires_native_multidevice"] = "1" if multi else "0"
    if "ALIASED_IO" in slot:
        aliased = _text(slot["ALIASED_IO"], "ALIASED_IO", 4096)
        for rec in aliased.split("%") if aliased else ():
            if len(rec.split("@")) != 3:
                raise _fail("ALIASED_IO", f"the record {_shown(rec)}", "records out@in@kind")
        meta["torch_tensorrt.aliased_io"] = aliased
    if "RUNTIME_CACHE_PATH" in slot:
        # Recorded only: the path named a file on the machine that compiled; never opened.
        meta["torch_tensorrt.runtime_cache_path"] = _text(
            slot["RUNTIME_CACHE_PATH"], "RUNTIME_CACHE_PATH", 4096
        )
        dyn = _text(slot["DYNAMIC_SHAPES_KERNEL_STRATEGY"], "DYNAMIC_SHAPES_KERNEL_STRATEGY")
        if dyn not in _DYN:
            raise _fail("DYNAMIC_SHAPES_KERNEL_STRATEGY", _shown(dyn), '"0", "1" or "2"')
        graph = _flag(slot["CUDA_GRAPH_STRATEGY"], "CUDA_GRAPH_STRATEGY")
        strategy = strategy.with_overrides(
            dynamic_shapes_kernel_specialization_strategy=_DYN[dyn],
            cuda_graph_strategy=CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            if graph
            else CudaGraphStrategy.DISABLED,
        )
    inputs = _names(slot["INPUT_BINDING_NAMES"], "INPUT_BINDING_NAMES")
    outputs = _names(slot["OUTPUT_BINDING_NAMES"], "OUTPUT_BINDING_NAMES")
    for key, names_ in (("inputs", inputs), ("outputs", outputs)):
        listed = json.dumps(list(names_))
        # Long lists (hundreds of KV-cache bindings) live in the bundle's file
        # torch_tensorrt.json only: metadata values are at most 4096 characters.
        meta[f"torch_tensorrt.{key}"] = listed if len(listed) <= 4096 else "see torch_tensorrt.json"
    name = _text(slot["NAME"], "NAME", 4096)
    meta["torch_tensorrt.name"] = name
    return TorchTRTEngine(
        layout=layout,
        name=name,
        engine=_engine(slot["ENGINE"]),
        inputs=inputs,
        outputs=outputs,
        device=device,
        hw_compatible=hw,
        target_platform=platform,
        strategy=strategy,
        metadata=meta,
    )


# ---------------------------------------------------------------------------------------------
# Finding the list inside TorchScript / ExportedProgram zips, without unpickling


class _Opaque:
    """Anything the pickle would build by calling code: never built, only a placeholder."""


class _Mark:
    pass


_MARK = _Mark()
_STRINGS = {
    "SHORT_BINUNICODE",
    "BINUNICODE",
    "BINUNICODE8",
    "UNICODE",
    "STRING",
    "BINSTRING",
    "SHORT_BINSTRING",
    "SHORT_BINBYTES",
    "BINBYTES",
    "BINBYTES8",
    "BYTEARRAY8",
}
_SCALARS = {"BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4", "BINFLOAT", "FLOAT"}
_CONSTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _string_lists(blob: bytes) -> list[list[str | bytes]]:
    """Every list of strings a pickle builds, found by simulating only its data opcodes."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    lists: list[list[Any]] = []

    def to_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1 :]
                del stack[i:]
                return items
        raise ValueError("MARK missing")

    def new_list(items: list[Any]) -> list[Any]:
        lst = list(items)
        lists.append(lst)
        return lst

    for count, (op, arg, _) in enumerate(pickletools.genops(blob)):
        if count > _MAX_PICKLE_OPS:
            raise ValueError("too many opcodes")
        name = op.name
        if name in _STRINGS:
            stack.append(cast(str, arg).encode("latin-1") if name.endswith("STRING") else arg)
        elif name in _SCALARS:
            stack.append(arg)
        elif name in _CONSTS:
            stack.append(_CONSTS[name])
        elif name == "EMPTY_LIST":
            stack.append(new_list([]))
        elif name == "LIST":
            stack.append(new_list(to_mark()))
        elif name == "APPEND":
            value = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name == "APPENDS":
            items = to_mark()
            if isinstance(stack[-1], list):
                stack[-1].extend(items)
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            k = int(name[-1])
            items = stack[-k:]
            del stack[-k:]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(to_mark()))
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[cast(int, arg)] = stack[-1]
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo[cast(int, arg)])
        elif name in ("EMPTY_DICT", "EMPTY_SET", "GLOBAL", "PERSID", "EXT1", "EXT2", "EXT4"):
            stack.append(_Opaque())
        elif name in ("DICT", "FROZENSET", "OBJ", "INST"):
            to_mark()
            stack.append(_Opaque())
        elif name in ("SETITEMS", "ADDITEMS", "POP_MARK"):
            to_mark()
        elif name == "SETITEM":
            del stack[-2:]
        elif name in ("STACK_GLOBAL", "REDUCE", "NEWOBJ"):
            del stack[-2:]
            stack.append(_Opaque())
        elif name == "NEWOBJ_EX":
            del stack[-3:]
            stack.append(_Opaque())
        elif name in ("BINPERSID", "BUILD", "POP"):
            stack.pop()
            if name == "BINPERSID":
                stack.append(_Opaque())
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("NEXT_BUFFER",):
            stack.append(_Opaque())
        elif name in ("PROTO", "FRAME", "READONLY_BUFFER"):
            pass
        elif name == "STOP":
            break
        else:
            raise ValueError(f"unsupported opcode {name}")
    return [lst for lst in lists if lst and all(isinstance(x, (str, bytes)) for x in lst)]


def _looks_like_info(lst: list[str | bytes]) -> bool:
    if not 4 <= len(lst) <= _MAX_SLOTS or not isinstance(lst[0], str) or not lst[0].isdigit():
        return False
    engine = lst[3]
    head = engine[:8] if isinstance(engine, bytes) else engine[:8].encode("ascii", "replace")
    return head.startswith((b"dnRydA", b"vtrt"))  # base64 of b"vtrt", or raw


def _lists_in_zip(data: bytes | Path, where: str, depth: int = 0) -> list[list[str | bytes]]:
    found: list[list[str | bytes]] = []
    src = io.BytesIO(data) if isinstance(data, bytes) else data
    with zipfile.ZipFile(src) as zf:
        members = zf.infolist()
        if len(members) > 100_000:
            raise ImportFormatError(f"{where}: {len(members)} zip members; expected a model file")
        for m in members:
            base = m.filename.rsplit("/", 1)[-1]
            wanted = base.endswith(".pkl") or "constants" in m.filename or "custom_obj" in base
            if m.is_dir() or not wanted or m.file_size > _MAX_ZIP_MEMBER:
                continue
            try:
                blob = zf.read(m)
            except (RuntimeError, NotImplementedError, EOFError, zlib.error, zipfile.BadZipFile):
                continue  # encrypted, an unknown compression, or damaged: not a model member
            if blob[:4] == b"PK\x03\x04":
                if depth < 2:
                    found += _lists_in_zip(blob, f"{where}:{m.filename}", depth + 1)
                continue
            try:
                found += [lst for lst in _string_lists(blob) if _looks_like_info(lst)]
            except Exception:  # not a pickle, or one this reader does not follow: skip it
                continue
    return found


def _load_info(source: Any, engine: str | None) -> list[str | bytes]:
    if not isinstance(source, (str, os.PathLike)):
        return source  # type: ignore[no-any-return]
    path = Path(source)
    if not path.is_file():
        raise InvalidArgumentError(f"{path}: no such file")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise ImportFormatError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, list):
            raise ImportFormatError(
                f"{path}: holds a JSON {type(data).__name__}; expected the list of strings "
                "Torch-TensorRT serializes an engine as"
            )
        return data
    if not zipfile.is_zipfile(path):
        raise ImportFormatError(
            f"{path}: neither a .json list nor a TorchScript/ExportedProgram zip; give one of "
            "those (docs/migration.md says how to export the list as JSON)"
        )
    try:
        candidates = _lists_in_zip(path, str(path))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ImportFormatError(f"{path}: cannot read the zip ({exc})") from None
    unique: dict[tuple[Any, ...], list[str | bytes]] = {}
    for c in candidates:
        unique.setdefault(tuple(c), c)
    found = list(unique.values())
    if not found:
        raise ImportFormatError(
            f"{path}: no Torch-TensorRT engine found in its pickles (looked for a list of strings "
            "whose slot 3 holds a base64 TensorRT-RTX engine). Export the list as JSON with "
            "torch_tensorrt installed (docs/migration.md) and import that"
        )
    if engine is not None:
        found = [c for c in found if _text(c[1], "NAME", 4096) == engine]
        if not found:
            raise InvalidArgumentError(f"{path}: no Torch-TensorRT engine named {engine!r}")
    if len(found) > 1:
        names = ", ".join(repr(_text(c[1], "NAME", 4096)) for c in found)
        raise InvalidArgumentError(
            f"{path} holds {len(found)} Torch-TensorRT engines ({names}); choose one with "
            "engine=NAME (--engine NAME)"
        )
    return found[0]


def import_torch_tensorrt(
    info: Sequence[str | bytes] | str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    name: str | None = None,
    strategy: RuntimeStrategy | None = None,
    engine: str | None = None,
) -> Path:
    """Write a bundle holding the engine of a Torch-TensorRT serialized-info list.

    ``info`` is the list, a ``.json`` file holding it, or a TorchScript/ExportedProgram file.
    ``name`` names the engine in the bundle (default: the Torch-TensorRT name, else "main");
    ``strategy`` replaces the runtime settings read from the list; ``engine`` picks one engine
    by its Torch-TensorRT name when a file holds several.
    """
    try:
        decoded = parse_serialized_info(_load_info(info, engine))
    except ImportFormatError as exc:
        if isinstance(info, (str, os.PathLike)):
            attach_path(exc, info)
        raise
    bundle_name = name or decoded.name or "main"
    if len(bundle_name) > 256 or not bundle_name.isprintable():
        raise InvalidArgumentError(
            f"engine name {bundle_name!r}: expected a printable string of 1 to 256 characters; "
            "pass name=..."
        )
    header = sniff_engine_header(decoded.engine)
    assert header is not None  # checked by _engine
    target = Path(output)
    with container.atomic_output(target) as f:
        writer = container.BundleWriter(f)
        idx = writer.add_bytes("engine", bundle_name, decoded.engine)
        record = {
            "layout": decoded.layout,
            "name": decoded.name,
            "inputs": list(decoded.inputs),
            "outputs": list(decoded.outputs),
            "device": decoded.device,
            "hw_compatible": decoded.hw_compatible,
            "target_platform": decoded.target_platform,
        }
        record_idx = writer.add_bytes(
            "file", "torch_tensorrt.json", json.dumps(record, indent=1).encode(), "zstd"
        )
        info_ = EngineInfo(
            name=bundle_name,
            section=idx,
            trt_version=header.trt_version,
            compute_capabilities=header.compute_capabilities,
            # The engine header decides: Torch-TensorRT's HW_COMPATIBLE means TensorRT's
            # "any SM >= 8" mode, not TensorRT-RTX's PTX targets (it is kept in metadata).
            hardware_portable=header.hardware_portable,
            platform=decoded.target_platform,
            inputs=(),
            outputs=(),
            profiles=(),
            strategy=strategy or decoded.strategy,
        )
        manifest = Manifest(
            rtxpack_version=__version__,
            created_at=utc_now(),
            sections=tuple(writer.sections),
            engines=(info_,),
            files={"torch_tensorrt.json": record_idx},
            metadata=decoded.metadata,
        )
        writer.finish(manifest)
    return target
