"""``save``: packing engines (built here from torch or ONNX, or given as bytes) into one bundle."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ._build.engine import (
    BuiltEngine,
    build_onnx,
    current_platform,
    normalize_shapes,
    parse_compute_capabilities,
)
from ._build.export import export_torch
from ._build.header import sniff_engine_header
from ._exceptions import InvalidArgumentError
from ._format import container
from ._format.manifest import DEFAULT_LIMITS, EngineInfo, Manifest
from ._strategy import RuntimeStrategy
from ._text import utc_now
from ._version import __version__

__all__ = ["EngineSpec", "save"]


@dataclass(frozen=True)
class EngineSpec:
    """One engine of a multi-engine bundle: ``save({"encoder": EngineSpec(...), ...}, path)``.

    The fields mean what the keyword arguments of ``rtxpack.save`` mean.
    """

    source: Any
    inputs: Sequence[Any] | None = None
    shapes: Any = None
    strategy: RuntimeStrategy | Mapping[str, str] | None = None
    compute_capabilities: Sequence[str | float] | None = None
    include_source: bool = True
    samples: Any = None


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 256 or not name.isprintable():
        raise InvalidArgumentError(
            f"{what} name {name!r}: expected a printable string of 1 to 256 characters"
        )
    return name


def _strategy(value: Any) -> RuntimeStrategy:
    if value is None:
        return RuntimeStrategy()
    if isinstance(value, RuntimeStrategy):
        return value
    if isinstance(value, Mapping):
        unknown = set(value) - set(RuntimeStrategy().to_dict())
        if unknown:
            raise InvalidArgumentError(
                f"strategy: unknown settings {sorted(unknown)}; expected "
                f"{sorted(RuntimeStrategy().to_dict())}"
            )
        return RuntimeStrategy.from_dict(dict(value))
    raise InvalidArgumentError(
        f"strategy: expected an rtxpack.RuntimeStrategy, got {type(value).__name__}"
    )


def _metadata(value: Mapping[str, str] | None) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(
            f"metadata: expected a map of str to str, got {type(value).__name__}"
        )
    lim = DEFAULT_LIMITS
    if len(value) > lim.max_metadata_entries:
        raise InvalidArgumentError(f"metadata: at most {lim.max_metadata_entries} entries")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise InvalidArgumentError(
                f"metadata[{k!r}]: keys and values must be strings, got {v!r}"
            )
        if len(k) > lim.max_string or len(v) > lim.max_string:
            raise InvalidArgumentError(f"metadata[{k!r}]: at most {lim.max_string} characters each")
    return dict(value)


def _is_torch_module(obj: Any) -> bool:
    mod = type(obj).__module__
    if not (mod.startswith("torch") or "torch" in str(type(obj).__mro__)):
        return False
    try:
        import torch
    except ImportError:
        return False
    return isinstance(obj, torch.nn.Module)


def _to_numpy(value: Any, what: str) -> Any:
    import numpy as np

    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            raise InvalidArgumentError(
                f"{what}: bfloat16 samples are not supported; cast to float32"
            )
        value = value.numpy()
    arr = np.ascontiguousarray(value)
    if arr.dtype == object:
        raise InvalidArgumentError(f"{what}: expected a numeric array, got objects")
    return arr


def _flatten_outputs(result: Any) -> list[Any]:
    if isinstance(result, (list, tuple)):
        return [t for r in result for t in _flatten_outputs(r)]
    if isinstance(result, Mapping):
        return [t for r in result.values() for t in _flatten_outputs(r)]
    return [result]


def _reference_outputs(onnx_model: bytes, feeds: dict[str, Any]) -> dict[str, Any] | None:
    """Run the ONNX model with ONNX Runtime to get sample outputs (None if it is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


@dataclass
class _Prepared:
    name: str
    built: BuiltEngine | None  # None: raw engine from a file or bytes
    engine_bytes: bytes | bytearray | memoryview | None
    engine_path: Path | None
    info: EngineInfo
    onnx: bytes | None
    samples: bytes | None


def _prepare(name: str, spec: EngineSpec, progress: Callable[[str], None] | None) -> _Prepared:
    strategy = _strategy(spec.strategy)
    source = spec.source
    onnx_bytes: bytes | None = None
    built: BuiltEngine | None = None
    engine_bytes: bytes | bytearray | memoryview | None = None
    engine_path: Path | None = None
    sample_inputs: dict[str, Any] | None = None
    sample_outputs: dict[str, Any] | None = None
    profiles = normalize_shapes(spec.shapes)

    if _is_torch_module(source):
        if progress:
            progress(f"{name}: exporting the torch module to ONNX")
        onnx_bytes, input_names = export_torch(source, list(spec.inputs or ()), profiles)
        if progress:
            progress(f"{name}: building the engine with TensorRT-RTX")
        built = build_onnx(
            onnx_bytes,
            shapes=profiles or None,
            compute_capabilities=spec.compute_capabilities,
            progress=progress,
        )
        if spec.samples is True or (spec.samples is None and spec.inputs):
            import torch

            examples = tuple(spec.inputs or ())
            with torch.no_grad():
                result = _flatten_outputs(source(*examples))
            sample_inputs = {
                n: _to_numpy(t, f"inputs[{i}]")
                for i, (n, t) in enumerate(zip(input_names, examples))
            }
            sample_outputs = {
                o.name: _to_numpy(t, f"output {o.name}") for o, t in zip(built.outputs, result)
            }
    elif isinstance(source, (bytes, bytearray, memoryview)):
        engine_bytes = source
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise InvalidArgumentError(f"source {path}: no such file")
        if path.suffix.lower() == ".onnx":
            onnx_bytes = path.read_bytes()
            if progress:
                progress(f"{name}: building {path.name} with TensorRT-RTX")
            built = build_onnx(
                path,
                shapes=profiles or None,
                compute_capabilities=spec.compute_capabilities,
                progress=progress,
            )
        else:
            engine_path = path
    else:
        raise InvalidArgumentError(
            f"source for engine {name!r}: expected engine bytes, a path to an engine or .onnx "
            f"file, or a torch.nn.Module; got {type(source).__name__}"
        )

    if built is not None:
        info = built.info(
            name, strategy, container.digest(onnx_bytes) if onnx_bytes is not None else None
        )
        engine_bytes = built.data
    else:
        if engine_path is not None:
            with open(engine_path, "rb") as f:
                head = f.read(64)
        else:
            head = bytes(memoryview(engine_bytes)[:64])  # type: ignore[arg-type]
        header = sniff_engine_header(head)
        if header is None:
            raise InvalidArgumentError(
                f"source for engine {name!r} is not a TensorRT-RTX engine (it starts with "
                f"{head[:8]!r}, engines start with b'vtrt'); give an engine, an .onnx file or a "
                "torch module"
            )
        ccs = parse_compute_capabilities(spec.compute_capabilities)
        if ccs is not None and not set(ccs) <= set(header.compute_capabilities):
            raise InvalidArgumentError(
                f"engine {name!r} was built for compute capabilities "
                f"{', '.join(header.compute_capabilities) or 'unknown'}, not {', '.join(ccs)}"
            )
        info = EngineInfo(
            name=name,
            section=-1,
            trt_version=header.trt_version,
            compute_capabilities=header.compute_capabilities,
            hardware_portable=header.hardware_portable,
            platform=current_platform(),
            inputs=(),
            outputs=(),
            profiles=tuple(profiles),
            strategy=strategy,
        )

    samples_blob: bytes | None = None
    if isinstance(spec.samples, Mapping):
        sample_inputs = {k: _to_numpy(v, f"samples[{k!r}]") for k, v in spec.samples.items()}
        if onnx_bytes is not None:
            sample_outputs = _reference_outputs(onnx_bytes, sample_inputs)
    if sample_inputs is not None:
        import safetensors.numpy

        tensors = {f"inputs/{k}": v for k, v in sample_inputs.items()}
        tensors.update({f"outputs/{k}": v for k, v in (sample_outputs or {}).items()})
        samples_blob = safetensors.numpy.save(tensors)

    return _Prepared(
        name=name,
        built=built,
        engine_bytes=engine_bytes,
        engine_path=engine_path,
        info=info,
        onnx=onnx_bytes if spec.include_source else None,
        samples=samples_blob,
    )


def save(
    source: Any,
    path: str | os.PathLike[str],
    *,
    inputs: Sequence[Any] | None = None,
    shapes: Any = None,
    strategy: RuntimeStrategy | Mapping[str, str] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    include_source: bool = True,
    samples: Any = None,
    metadata: Mapping[str, str] | None = None,
    files: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    name: str = "main",
    compress_engines: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Build (if needed) and write a bundle to ``path`` atomically; returns ``path``.

    ``source`` is engine bytes, a path to an engine or ``.onnx`` file, a ``torch.nn.Module``
    (exported with ``inputs`` as example inputs, then built CPU-only), or a map of engine name to
    any of those or an ``EngineSpec`` for a bundle of several engines. ``shapes`` maps input names
    to ``(min, opt, max)`` (or is a list of such maps, one per optimization profile).
    ``samples`` is a map of input name to array, or ``True`` to store ``inputs``; the outputs of
    the reference model (torch, or ONNX Runtime for ONNX) are stored beside them. For a torch
    module the example ``inputs`` are stored as samples by default; ``samples=False`` stores none.
    """
    target = Path(path)
    meta = _metadata(metadata)
    if isinstance(source, Mapping):
        specs = {
            _check_name(n, "engine"): s if isinstance(s, EngineSpec) else EngineSpec(source=s)
            for n, s in source.items()
        }
        if not specs:
            raise InvalidArgumentError("source: an empty map; give at least one engine")
    else:
        specs = {
            _check_name(name, "engine"): EngineSpec(
                source=source,
                inputs=inputs,
                shapes=shapes,
                strategy=strategy,
                compute_capabilities=compute_capabilities,
                include_source=include_source,
                samples=samples,
            )
        }
    prepared = [_prepare(n, s, progress) for n, s in specs.items()]
    user_files: dict[str, bytes | Path] = {}
    for fname, content in (files or {}).items():
        _check_name(fname, "file")
        user_files[fname] = (
            bytes(content) if isinstance(content, (bytes, bytearray, memoryview)) else Path(content)
        )

    engine_codec = "zstd" if compress_engines else "stored"
    with container.atomic_output(target) as f:
        writer = container.BundleWriter(f)
        engines: list[EngineInfo] = []
        for p in prepared:
            if progress:
                progress(f"{p.name}: writing the engine")
            if p.engine_path is not None:
                idx = writer.add_path("engine", p.name, p.engine_path, engine_codec)
            else:
                assert p.engine_bytes is not None
                idx = writer.add_bytes("engine", p.name, p.engine_bytes, engine_codec)
            src = writer.add_bytes("source", p.name, p.onnx, "zstd") if p.onnx is not None else None
            smp = (
                writer.add_bytes("samples", p.name, p.samples, "zstd")
                if p.samples is not None
                else None
            )
            engines.append(replace(p.info, section=idx, source=src, samples=smp))
        file_index = {
            fname: (
                writer.add_path("file", fname, content, "zstd")
                if isinstance(content, Path)
                else writer.add_bytes("file", fname, content, "zstd")
            )
            for fname, content in user_files.items()
        }
        manifest = Manifest(
            rtxpack_version=__version__,
            created_at=utc_now(),
            sections=tuple(writer.sections),
            engines=tuple(engines),
            files=file_index,
            metadata=meta,
        )
        writer.finish(manifest)
    return target
