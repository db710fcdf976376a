"""Building engines with TensorRT-RTX on the CPU (ahead of time).

Three sources lead here: an ONNX file (parsed by TensorRT-RTX's ONNX parser), a torch module
(exported to ONNX first, ``export.export_torch``) and raw engine bytes (nothing to build; the
header tells the TensorRT-RTX version and targets, ``header.sniff_engine_header``).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._exceptions import BuildError, InvalidArgumentError
from .._facts import SUPPORTED_CCS, TRT_DTYPES
from .._format.manifest import EngineInfo, ShapeRange, TensorSpec
from .._progress import Progress, as_progress, trt_logger, trt_progress_monitor
from .._strategy import RuntimeStrategy
from .._text import string_keys
from .header import sniff_engine_header
from .options import BuildOptions, build_platform
from .weights import SplitModel

__all__ = [
    "ARCH_ALIASES",
    "BuiltEngine",
    "build_network",
    "build_onnx",
    "current_platform",
    "normalize_shapes",
    "parse_compute_capabilities",
    "trt_dtype_name",
    "trt_module",
]


def trt_dtype_name(dtype: Any) -> str:
    """rtxpack's dtype name for a ``tensorrt_rtx.DataType``."""
    return TRT_DTYPES[dtype.name]


#: Other names of one CPU architecture (Windows and Torch-TensorRT say amd64/arm64).
ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def current_platform() -> str:
    """This machine's platform tag, spelled like Torch-TensorRT's: ``linux_x86_64`` etc."""
    system = {"win32": "windows", "linux": "linux"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    machine = ARCH_ALIASES.get(machine, machine)
    return f"{system}_{machine}"


def parse_compute_capabilities(values: Sequence[str | float] | None) -> tuple[str, ...] | None:
    """Validate user-given targets ("8.6", 8.6, "sm86") into canonical strings."""
    if values is None:
        return None
    out: list[str] = []
    for v in values:
        text = str(v).strip().lower().removeprefix("sm_").removeprefix("sm")
        if text.isdigit() and len(text) >= 2:
            text = f"{text[:-1]}.{text[-1]}"
        if text not in SUPPORTED_CCS:
            raise InvalidArgumentError(
                f"compute capability {v!r} is not a TensorRT-RTX target; expected one of "
                f"{', '.join(SUPPORTED_CCS)}"
            )
        if text not in out:
            out.append(text)
    if not out:
        raise InvalidArgumentError("compute_capabilities is empty; give at least one, or None")
    return tuple(out)


ShapeArg = Mapping[str, Any]


def normalize_shapes(
    shapes: ShapeArg | Sequence[ShapeArg] | None,
) -> list[dict[str, ShapeRange]]:
    """``{"x": (min, opt, max)}`` or a list of such maps (one per profile) -> checked ranges."""
    if shapes is None:
        return []
    profiles = [shapes] if isinstance(shapes, Mapping) else list(shapes)
    out: list[dict[str, ShapeRange]] = []
    for p in profiles:
        if not isinstance(p, Mapping):
            raise InvalidArgumentError(
                f"shapes: expected a map of input name to (min, opt, max), got {type(p).__name__}"
            )
        string_keys(p, "shapes", "the model's input names")
        prof: dict[str, ShapeRange] = {}
        for name, rng in p.items():
            if isinstance(rng, ShapeRange):
                prof[name] = rng
                continue
            try:
                lo, opt, hi = (tuple(int(d) for d in s) for s in rng)
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"shapes[{name!r}]: expected (min, opt, max) shapes, got {rng!r}"
                ) from None
            if not len(lo) == len(opt) == len(hi) or not all(
                0 <= a <= b <= c for a, b, c in zip(lo, opt, hi)
            ):
                raise InvalidArgumentError(
                    f"shapes[{name!r}]: need min <= opt <= max of one rank, got "
                    f"min={lo} opt={opt} max={hi}"
                )
            prof[name] = ShapeRange(lo, opt, hi)
        out.append(prof)
    return out


@dataclass(frozen=True)
class BuiltEngine:
    """A built engine: ``data`` is TensorRT-RTX's serialized plan (its own buffer, not copied)."""

    data: bytes | memoryview
    trt_version: str
    compute_capabilities: tuple[str, ...]
    hardware_portable: bool
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    profiles: tuple[dict[str, ShapeRange], ...]
    options: BuildOptions = field(default_factory=BuildOptions)

    def info(
        self, name: str, strategy: RuntimeStrategy, source_digest: str | None = None
    ) -> EngineInfo:
        """The manifest record of this engine (``section`` -1 until it is written)."""
        return EngineInfo(
            name=name,
            section=-1,
            trt_version=self.trt_version,
            compute_capabilities=self.compute_capabilities,
            hardware_portable=self.hardware_portable,
            platform=self.platform,
            inputs=self.inputs,
            outputs=self.outputs,
            profiles=self.profiles,
            strategy=strategy,
            source_digest=source_digest,
            build_options=self.options,
        )


def trt_module() -> Any:
    """The ``tensorrt_rtx`` module (BuildError if it cannot be imported)."""
    try:
        import tensorrt_rtx
    except ImportError as exc:  # pragma: no cover - it is a hard dependency
        raise BuildError(
            f"cannot import tensorrt_rtx ({exc}); install it: pip install tensorrt-rtx"
        ) from None
    return tensorrt_rtx


class _Logger:
    """TensorRT-RTX's log, on the ``rtxpack.tensorrt_rtx`` logger; errors are kept so that a
    failure message can quote them."""

    def __init__(self, trt: Any) -> None:
        self.messages: list[str] = []
        self.trt_logger = trt_logger(trt, self.messages)


def build_onnx(
    onnx_model: Path | bytes | SplitModel,
    *,
    shapes: ShapeArg | Sequence[ShapeArg] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    options: BuildOptions | None = None,
    platform: str | None = None,
    progress: Progress | Callable[[str], None] | None = None,
) -> BuiltEngine:
    """Parse an ONNX model with TensorRT-RTX and build a portable engine, CPU-only.

    ``onnx_model`` is a file (external data files beside it are read by TensorRT-RTX from its
    folder), the bytes of a self-contained model, or a ``SplitModel`` (an exported torch module:
    the parser gets its weights' memory, no file is read). ``platform`` is None (this machine's)
    or ``"windows"``.
    """
    trt = trt_module()
    log = _Logger(trt)
    builder = trt.Builder(log.trt_logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, log.trt_logger)
    if isinstance(onnx_model, SplitModel):
        ok = parser.load_model_proto(onnx_model.graph)
        if ok:
            try:
                onnx_model.load_into(parser)
            except RuntimeError:
                ok = False
            ok = ok and parser.parse_model_proto()
    elif isinstance(onnx_model, (bytes, bytearray, memoryview)):
        ok = parser.parse(bytes(onnx_model))
    else:
        ok = parser.parse_from_file(os.fspath(onnx_model))
    if not ok:
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] + log.messages
        raise BuildError(
            "TensorRT-RTX could not parse the ONNX model: "
            + ("; ".join(list(dict.fromkeys(errors))[:5]) or "no reason given")
        )
    return build_network(
        trt,
        builder,
        network,
        log,
        shapes=shapes,
        compute_capabilities=compute_capabilities,
        options=options,
        platform=platform,
        progress=progress,
    )


def build_network(
    trt: Any,
    builder: Any,
    network: Any,
    log: Any,
    *,
    shapes: ShapeArg | Sequence[ShapeArg] | None = None,
    compute_capabilities: Sequence[str | float] | None = None,
    options: BuildOptions | None = None,
    platform: str | None = None,
    progress: Progress | Callable[[str], None] | None = None,
) -> BuiltEngine:
    """Build a TensorRT-RTX network definition with the given profiles, targets and options."""
    ccs = parse_compute_capabilities(compute_capabilities)
    options = options or BuildOptions()
    platform_tag, runtime_platform = build_platform(platform, current_platform())
    profiles = normalize_shapes(shapes)
    inputs = tuple(
        TensorSpec(t.name, trt_dtype_name(t.dtype), tuple(t.shape))
        for t in (network.get_input(i) for i in range(network.num_inputs))
    )
    outputs = tuple(
        TensorSpec(t.name, trt_dtype_name(t.dtype), tuple(t.shape))
        for t in (network.get_output(i) for i in range(network.num_outputs))
    )
    by_name = {t.name: t for t in inputs}
    for prof in profiles:
        for name in prof:
            if name not in by_name:
                raise InvalidArgumentError(
                    f"shapes given for {name!r}, which is not an input of the model "
                    f"(inputs: {', '.join(by_name)})"
                )
    dynamic = [t for t in inputs if -1 in t.shape]
    if not profiles and dynamic:
        raise InvalidArgumentError(
            "the model has dynamic inputs "
            + ", ".join(f"{t.name}{list(t.shape)}" for t in dynamic)
            + "; give their min/opt/max shapes (shapes={name: (min, opt, max)} or "
            "--shape NAME=MIN:OPT:MAX)"
        )
    config = builder.create_builder_config()
    full_profiles: list[dict[str, ShapeRange]] = []
    for i, prof in enumerate(profiles or [{}]):
        full: dict[str, ShapeRange] = {}
        for t in inputs:
            rng = prof.get(t.name)
            if rng is None:
                if -1 in t.shape:
                    raise InvalidArgumentError(
                        f"profile {i}: dynamic input {t.name}{list(t.shape)} has no shapes; "
                        "give min/opt/max for every dynamic input"
                    )
                rng = ShapeRange(t.shape, t.shape, t.shape)
            if len(rng.min) != len(t.shape) or any(
                d != -1 and not lo == hi == d for d, lo, hi in zip(t.shape, rng.min, rng.max)
            ):
                raise InvalidArgumentError(
                    f"profile {i}: shapes for {t.name!r} (min={list(rng.min)}, "
                    f"max={list(rng.max)}) do not fit the model's shape {list(t.shape)} "
                    "(-1 = dynamic; fixed dimensions must match)"
                )
            full[t.name] = rng
        full_profiles.append(full)
        if dynamic:
            p = builder.create_optimization_profile()
            for name, rng in full.items():
                p.set_shape(name, rng.min, rng.opt, rng.max)
            config.add_optimization_profile(p)
    if ccs is not None:
        config.num_compute_capabilities = len(ccs)
        for i, cc in enumerate(ccs):
            config.set_compute_capability(getattr(trt.ComputeCapability, SUPPORTED_CCS[cc]), i)
    options.apply(trt, config)
    if runtime_platform is not None:
        config.runtime_platform = getattr(trt.RuntimePlatform, runtime_platform)
    monitor = as_progress(progress)
    config.progress_monitor = trt_progress_monitor(trt, monitor)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BuildError(
            "TensorRT-RTX failed to build the engine: "
            + ("; ".join(log.messages[-5:]) or "no reason given")
        )
    data = memoryview(serialized)  # the plan stays in TensorRT-RTX's buffer: no copy
    header = sniff_engine_header(data[:64])
    return BuiltEngine(
        data=data,
        trt_version=trt.__version__,
        compute_capabilities=ccs or (header.compute_capabilities if header else ()),
        hardware_portable=header.hardware_portable if header else ccs is None,
        platform=platform_tag,
        inputs=inputs,
        outputs=outputs,
        profiles=tuple(full_profiles),
        options=options,
    )


