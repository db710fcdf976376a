"""``save``: packing engines (built here from torch or ONNX, or given as bytes) into one bundle.

Every argument of every engine is checked first and the output file is opened next, so a mistake
is reported before minutes of export and build. A torch module's weights are read from its own
tensors, streamed into the bundle and handed to TensorRT-RTX without a copy (_build/weights.py);
an ONNX model's external data files are streamed into ``source_data`` sections.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ._build.engine import (
    BuiltEngine,
    build_onnx,
    current_platform,
    normalize_shapes,
    parse_compute_capabilities,
)
from ._build.export import TorchInputs, check_output_tree, export_torch, torch_inputs
from ._build.header import EngineHeader, sniff_engine_header
from ._build.options import BuildOptions, build_platform
from ._build.weights import DATA_NAME
from ._exceptions import (
    BuildError,
    InvalidArgumentError,
    RtxpackError,
    RtxpackWarning,
    ShapeWarning,
)
from ._format import container
from ._format.manifest import DEFAULT_LIMITS, EngineInfo, Manifest, ShapeRange
from ._progress import Progress, as_progress
from ._source import OnnxSource, equal_dims, load_graph_bytes, scan_onnx
from ._strategy import RuntimeStrategy, check_setting_names
from ._tensors import BFLOAT16, encode, to_numpy, to_torch
from ._text import shorten, size_text, string_keys, utc_now
from ._version import __version__

__all__ = ["EngineSpec", "save"]


@dataclass(frozen=True)
class EngineSpec:
    """One engine of a multi-engine bundle: ``save({"encoder": EngineSpec(...), ...}, path)``.

    The fields mean what the keyword arguments of ``rtxpack.save`` mean.
    """

    source: Any
    inputs: Any = None
    shapes: Any = None
    strategy: RuntimeStrategy | Mapping[str, Any] | None = None
    compute_capabilities: Sequence[str | float] | None = None
    include_source: bool = True
    samples: Any = None
    kwarg_inputs: Mapping[str, Any] | None = None
    input_names: Sequence[str] | None = None
    output_names: Sequence[str] | None = None
    build_options: BuildOptions | Mapping[str, Any] | None = None
    platform: str | None = None


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
        check_setting_names(value)
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


def _build_options(value: Any) -> BuildOptions:
    if value is None:
        return BuildOptions()
    if isinstance(value, BuildOptions):
        return value
    if isinstance(value, Mapping):
        return BuildOptions.from_dict(dict(value))
    raise InvalidArgumentError(
        f"build_options: expected an rtxpack.BuildOptions, got {type(value).__name__}"
    )


@dataclass
class _Plan:
    """One engine to write, with every cheap check done (before any export or build)."""

    name: str
    spec: EngineSpec
    strategy: RuntimeStrategy
    profiles: list[dict[str, ShapeRange]]
    options: BuildOptions
    torch_inputs: TorchInputs | None = None
    onnx: OnnxSource | None = None
    engine: bytes | bytearray | memoryview | Path | None = None
    header: EngineHeader | None = None
    #: given sample inputs, or "example" (the torch inputs), "random", or None (no samples)
    samples: dict[str, np.ndarray] | str | None = None


_TORCH_ONLY = ("inputs", "kwarg_inputs", "input_names", "output_names")


def _plan(name: str, spec: EngineSpec) -> _Plan:
    """Check everything that can be checked without exporting or building."""
    plan = _Plan(
        name=name,
        spec=spec,
        strategy=_strategy(spec.strategy),
        profiles=normalize_shapes(spec.shapes),
        options=_build_options(spec.build_options),
    )
    ccs = parse_compute_capabilities(spec.compute_capabilities)
    build_platform(spec.platform, current_platform())
    source = spec.source
    given = [f for f in _TORCH_ONLY if getattr(spec, f) is not None]
    if _is_torch_module(source):
        plan.torch_inputs = torch_inputs(source, spec.inputs, spec.kwarg_inputs, spec.input_names)
        check_output_tree(source, plan.torch_inputs)
        names = plan.torch_inputs.names
        for prof in plan.profiles:
            for key in prof:
                if key not in names:
                    raise InvalidArgumentError(
                        f"shapes given for {key!r}, which is not an input (inputs: "
                        f"{', '.join(names)})"
                    )
    elif given:
        raise InvalidArgumentError(
            f"{', '.join(given)}: only for a torch.nn.Module source; an ONNX model or an engine "
            "already has its inputs and outputs"
        )
    elif isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() == ".onnx":
        if not Path(source).is_file():
            raise InvalidArgumentError(f"source {source}: no such file")
        plan.onnx = scan_onnx(source)
    elif isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)):
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise InvalidArgumentError(f"source {path}: no such file")
            with open(path, "rb") as f:
                head = f.read(64)
            plan.engine = path
        else:
            head = bytes(memoryview(source)[:64])
            plan.engine = source
        header = sniff_engine_header(head)
        if header is None:
            raise InvalidArgumentError(
                f"source for engine {name!r} is not a TensorRT-RTX engine (it starts with "
                f"{head[:8]!r}, engines start with b'vtrt'); give an engine, an .onnx file or a "
                "torch module"
            )
        if ccs is not None and not set(ccs) <= set(header.compute_capabilities):
            raise InvalidArgumentError(
                f"engine {name!r} was built for compute capabilities "
                f"{', '.join(header.compute_capabilities) or 'unknown'}, not {', '.join(ccs)}"
            )
        if spec.build_options is not None or spec.platform is not None:
            raise InvalidArgumentError(
                f"engine {name!r} is already built: build_options and platform apply to builds "
                "from a torch module or an ONNX model"
            )
        plan.header = header
    else:
        raise InvalidArgumentError(
            f"source for engine {name!r}: expected engine bytes, a path to an engine or .onnx "
            f"file, or a torch.nn.Module; got {type(source).__name__}"
        )
    plan.samples = _sample_plan(plan)
    return plan


def _sample_plan(plan: _Plan) -> dict[str, np.ndarray] | str | None:
    value = plan.spec.samples
    torch_source = plan.torch_inputs is not None
    if value is None:
        return "example" if torch_source else None
    if value is False:
        return None
    if value is True:
        if not torch_source:
            raise InvalidArgumentError(
                "samples=True stores a torch module's example inputs; for an ONNX model give a "
                "map of input name to array, or samples='random'"
            )
        return "example"
    if isinstance(value, str) and value == "random":
        if plan.engine is not None:
            raise InvalidArgumentError("samples='random' needs a model to compute outputs with")
        return "random"
    if isinstance(value, Mapping):
        string_keys(value, "samples", "the model's input names")
        arrays = {k: to_numpy(v, f"samples[{k!r}]") for k, v in value.items()}
        names = plan.torch_inputs.names if plan.torch_inputs else None
        if plan.onnx is not None:
            names = plan.onnx.inputs
        unknown = sorted(set(arrays) - set(names or arrays))
        if unknown:
            raise InvalidArgumentError(
                f"samples: {', '.join(map(repr, unknown))} not an input of the model (inputs: "
                f"{', '.join(names or ())})"
            )
        return arrays
    raise InvalidArgumentError(
        f"samples: expected True, False, 'random' or a map of input name to array; got "
        f"{type(value).__name__}"
    )


def _random_inputs(built: BuiltEngine) -> dict[str, np.ndarray]:
    """One input per engine input in the first profile's opt shape: floats from a normal
    distribution, integers 0 or 1, booleans at random (seeded, so bundles are reproducible)."""
    rng = np.random.default_rng(0)
    out: dict[str, np.ndarray] = {}
    profile = built.profiles[0] if built.profiles else {}
    for spec in built.inputs:
        shape = profile[spec.name].opt if spec.name in profile else spec.shape
        if spec.dtype in ("float32", "float16", "bfloat16"):
            dtype = BFLOAT16 if spec.dtype == "bfloat16" else np.dtype(spec.dtype)
            out[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(dtype)
        elif spec.dtype == "bool":
            out[spec.name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif spec.dtype in ("int8", "int32", "int64", "uint8"):
            out[spec.name] = rng.integers(0, 2, shape).astype(spec.dtype)
        else:
            raise InvalidArgumentError(
                f"samples='random': input {spec.name!r} has dtype {spec.dtype}, which rtxpack "
                "cannot make samples of; give sample arrays instead"
            )
    return out


def _torch_outputs(plan: _Plan, feeds: Mapping[str, np.ndarray], built: BuiltEngine) -> Any:
    """Run the torch module on ``feeds`` (by input name) and name its outputs as the engine."""
    import torch
    from torch.utils._pytree import tree_flatten

    ti = plan.torch_inputs
    assert ti is not None
    by_param = {p: to_torch(feeds[n]) for p, n in zip(ti.params, ti.names)}
    args = [by_param[p] for p in ti.params[: len(ti.args)]]
    kwargs = {p: by_param[p] for p in ti.params[len(ti.args) :]}
    module = plan.spec.source
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            result = module(*args, **kwargs)
    finally:
        module.train(was_training)
    leaves = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
    if len(leaves) != len(built.outputs):
        warnings.warn(
            f"{plan.name}: forward returned {len(leaves)} tensors, the engine has "
            f"{len(built.outputs)} outputs; the samples are stored without reference outputs",
            RtxpackWarning,
            stacklevel=4,
        )
        return None
    return {o.name: to_numpy(t, f"output {o.name}") for o, t in zip(built.outputs, leaves)}


def _onnx_outputs(
    graph: Path, feeds: Mapping[str, np.ndarray], built: BuiltEngine
) -> dict[str, np.ndarray] | None:
    """Reference outputs: ONNX Runtime on the source (a float32 copy for a bf16 model, on the
    CPU); None if ONNX Runtime is not installed."""
    from ._backends.session import run_onnx

    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    try:
        return run_onnx(graph, feeds, {o.name: o.dtype for o in built.outputs})
    except RtxpackError:
        raise
    except Exception as exc:  # onnxruntime's own exception types
        raise BuildError(
            f"ONNX Runtime could not run {graph.name} to compute the samples' reference outputs "
            f"({shorten(str(exc), 300)}); fix the model, or build without samples (samples=False)"
        ) from None


def _check_equal_ranges(
    name: str,
    groups: tuple[tuple[tuple[str, int], ...], ...],
    profiles: Sequence[Mapping[str, ShapeRange]],
) -> None:
    for i, prof in enumerate(profiles):
        for group in groups:
            ranges = {
                (n, d): (prof[n].min[d], prof[n].opt[d], prof[n].max[d])
                for n, d in group
                if n in prof
            }
            if len(set(ranges.values())) > 1:
                shown = ", ".join(
                    f"{n} dim {d}: {lo}..{hi} (opt {o})" for (n, d), (lo, o, hi) in ranges.items()
                )
                raise InvalidArgumentError(
                    f"{name}: profile {i} gives different ranges to dimensions the model requires "
                    f"to be equal ({shown}); give them the same min/opt/max"
                )


def _write_engine(
    writer: container.BundleWriter, plan: _Plan, codec: str, progress: Progress
) -> EngineInfo:
    spec, name = plan.spec, plan.name
    build = dict(
        shapes=plan.profiles or None,
        compute_capabilities=spec.compute_capabilities,
        options=plan.options,
        platform=spec.platform,
        progress=progress,
    )
    source = data = None
    tree = None
    if plan.torch_inputs is not None:
        ti = plan.torch_inputs
        if not plan.profiles:
            warnings.warn(
                f"{name}: no shapes given, so the engine takes exactly the example shapes ("
                + ", ".join(f"{n}{list(t.shape)}" for n, t in zip(ti.names, ti.tensors))
                + "); pass shapes={name: (min, opt, max)} to accept other sizes",
                ShapeWarning,
                stacklevel=3,
            )
        phase = f"{name}: exporting the torch module to ONNX (torch.onnx.export)"
        progress.phase_start(phase, None, 0)
        exported = export_torch(spec.source, ti, plan.profiles, spec.output_names)
        progress.phase_finish(phase)
        split, tree = exported.split, exported.output_tree
        groups_all = equal_dims(load_graph_bytes(split.graph), exported.input_names)
        _check_equal_ranges(name, groups_all, plan.profiles)
        progress.message(f"{name}: building the engine with TensorRT-RTX")
        built = build_onnx(split, **build)  # type: ignore[arg-type]
        index = _write_built(writer, name, built, codec, progress)
        digest = container.digest(split.graph)
        if spec.include_source:
            weights = size_text(split.data_size)
            progress.message(f"{name}: writing the ONNX source ({weights} of weights)")
            source = writer.add_bytes("source", name, split.graph, "zstd")
            if split.layout:
                data = [writer.add_chunks("source_data", DATA_NAME, split.data_chunks())]
    elif plan.onnx is not None:
        src = plan.onnx
        groups_all = src.equal_dims
        _check_equal_ranges(name, groups_all, plan.profiles)
        progress.message(f"{name}: building {src.graph.name} with TensorRT-RTX")
        built = build_onnx(src.graph, **build)  # type: ignore[arg-type]
        index = _write_built(writer, name, built, codec, progress)
        if spec.include_source:
            progress.message(f"{name}: writing the ONNX source")
            source = writer.add_path("source", name, src.graph, "zstd")
            data = [writer.add_path("source_data", loc, f, "stored") for loc, f in src.data]
            digest = writer.sections[source].digest
        else:
            digest = container.digest_file(src.graph)
    else:
        header = plan.header
        assert header is not None and plan.engine is not None
        progress.message(f"{name}: writing the engine")
        if isinstance(plan.engine, Path):
            index = writer.add_path("engine", name, plan.engine, codec)
        else:
            index = writer.add_bytes("engine", name, plan.engine, codec)
        return EngineInfo(
            name=name,
            section=index,
            trt_version=header.trt_version,
            compute_capabilities=header.compute_capabilities,
            hardware_portable=header.hardware_portable,
            platform="unknown",  # the bytes do not say (Windows and Linux plans can be identical)
            inputs=(),
            outputs=(),
            profiles=tuple(plan.profiles),
            strategy=plan.strategy,
            samples=_write_samples(writer, name, plan.samples, None)
            if isinstance(plan.samples, dict)
            else None,
        )
    dynamic = {(t.name, d) for t in built.inputs for d, v in enumerate(t.shape) if v == -1}
    groups = tuple(g for g in groups_all if all(p in dynamic for p in g))
    samples = _samples_of(plan, built)
    return replace(
        built.info(name, plan.strategy, digest),
        section=index,
        source=source,
        source_data=tuple(data or ()),
        samples=None if samples is None else _write_samples(writer, name, *samples),
        output_tree=tree,
        equal_dims=groups,
    )


def _write_built(
    writer: container.BundleWriter, name: str, built: BuiltEngine, codec: str, progress: Progress
) -> int:
    progress.message(f"{name}: writing the engine ({size_text(len(built.data))})")
    return writer.add_bytes("engine", name, built.data, codec)


def _samples_of(
    plan: _Plan, built: BuiltEngine
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None] | None:
    """(inputs, reference outputs or None) to store, or None for no samples."""
    if plan.samples is None:
        return None
    if plan.samples == "example":
        ti = plan.torch_inputs
        assert ti is not None
        feeds = {n: to_numpy(t, f"input {n}") for n, t in zip(ti.names, ti.tensors)}
    elif plan.samples == "random":
        feeds = _random_inputs(built)
    else:
        assert isinstance(plan.samples, dict)
        feeds = plan.samples
        _check_given_samples(plan.name, feeds, built)
    if plan.torch_inputs is not None:
        return feeds, _torch_outputs(plan, feeds, built)
    assert plan.onnx is not None
    return feeds, _onnx_outputs(plan.onnx.graph, feeds, built)


def _check_given_samples(name: str, feeds: Mapping[str, np.ndarray], built: BuiltEngine) -> None:
    """Given sample inputs must be what the engine takes: every input, its dtype, its rank and a
    shape inside one of its profiles (else ``verify --run`` could never pass on a GPU)."""
    for spec in built.inputs:
        what = f"{name}: samples[{spec.name!r}]"
        if spec.name not in feeds:
            raise InvalidArgumentError(
                f"{what} is missing; give an array for every input "
                f"({', '.join(t.name for t in built.inputs)})"
            )
        arr = feeds[spec.name]
        try:
            want = BFLOAT16 if spec.dtype == "bfloat16" else np.dtype(spec.dtype)
        except TypeError:  # a dtype numpy has no name for (fp8, int4): nothing to compare
            want = arr.dtype
        if arr.dtype != want:
            raise InvalidArgumentError(f"{what} has dtype {arr.dtype}, the input takes {want}")
        shape = tuple(arr.shape)
        ranges = [p[spec.name] for p in built.profiles if spec.name in p]
        fits = (
            any(r.contains(shape) for r in ranges)
            if ranges
            else len(shape) == len(spec.shape)
            and all(w in (-1, d) for w, d in zip(spec.shape, shape))
        )
        if not fits:
            allowed = ", ".join(f"{list(r.min)}..{list(r.max)}" for r in ranges)
            raise InvalidArgumentError(
                f"{what} has shape {list(shape)}, outside what the input takes "
                f"({allowed or list(spec.shape)}); give samples inside a profile"
            )


def _write_samples(
    writer: container.BundleWriter,
    name: str,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray] | None,
) -> int:
    tensors = {f"inputs/{k}": v for k, v in inputs.items()}
    tensors.update({f"outputs/{k}": v for k, v in (outputs or {}).items()})
    return writer.add_bytes("samples", name, encode(tensors), "zstd")


def save(
    source: Any,
    path: str | os.PathLike[str],
    *,
    inputs: Any = None,
    kwarg_inputs: Mapping[str, Any] | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    shapes: Any = None,
    strategy: RuntimeStrategy | Mapping[str, Any] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    build_options: BuildOptions | Mapping[str, Any] | None = None,
    platform: str | None = None,
    include_source: bool = True,
    samples: Any = None,
    metadata: Mapping[str, str] | None = None,
    files: Mapping[str, bytes | str | os.PathLike[str]] | None = None,
    name: str = "main",
    compress_engines: bool = False,
    progress: Progress | Callable[[str], None] | None = None,
) -> Path:
    """Build (if needed) and write a bundle to ``path`` atomically; returns ``path``.

    ``source`` is engine bytes, a path to an engine or ``.onnx`` file (with its external data
    files beside it, if any), a ``torch.nn.Module`` (exported with ``inputs`` -- a tensor or a
    tuple -- and ``kwarg_inputs`` as example inputs, then built CPU-only), or a map of engine name
    to any of those or an ``EngineSpec`` for a bundle of several engines. ``shapes`` maps input
    names to ``(min, opt, max)`` (or is a list of such maps, one per optimization profile).
    ``input_names`` / ``output_names`` name a torch module's inputs and outputs (by default:
    ``forward``'s parameter names; the keys of the dict it returns, positions in tuples).
    ``build_options`` (``BuildOptions``) sets weight streaming, tiling and auxiliary streams;
    ``platform="windows"`` builds a Windows engine on Linux. ``samples`` is a map of input name
    to array, ``True`` to store the example inputs (the default for a torch module),
    ``"random"``, or ``False``; the outputs of the reference model (torch, or ONNX Runtime for
    ONNX) are stored beside them. ``include_source=False`` leaves the ONNX source (and its
    weights) out. Every argument is checked before anything is exported or built.
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
                kwarg_inputs=kwarg_inputs,
                input_names=input_names,
                output_names=output_names,
                shapes=shapes,
                strategy=strategy,
                compute_capabilities=compute_capabilities,
                build_options=build_options,
                platform=platform,
                include_source=include_source,
                samples=samples,
            )
        }
    plans = [_plan(n, s) for n, s in specs.items()]
    user_files: dict[str, bytes | Path] = {}
    for fname, content in (files or {}).items():
        _check_name(fname, "file")
        if isinstance(content, (bytes, bytearray, memoryview)):
            user_files[fname] = bytes(content)
        elif not Path(content).is_file():
            raise InvalidArgumentError(f"files[{fname!r}]: no such file {Path(content)}")
        else:
            user_files[fname] = Path(content)
    report = as_progress(progress)
    engine_codec = "zstd" if compress_engines else "stored"
    # The output is opened first: a folder that does not exist or cannot be written to is
    # reported before minutes of export and build.
    with container.atomic_output(target) as f:
        writer = container.BundleWriter(f)
        engines = [_write_engine(writer, p, engine_codec, report) for p in plans]
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
