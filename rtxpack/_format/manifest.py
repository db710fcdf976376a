"""The typed manifest of a bundle, and its strict parser for untrusted data.

Everything here is plain data: frozen dataclasses with ``to_dict()`` (what is written, as msgpack)
and ``from_dict()`` (what is read: every type, length, count and range is checked, and anything
wrong becomes a ``DamagedBundleError`` that names the field). docs/format.md is the prose version
of this file and schemas/manifest.schema.json the machine-readable one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import _tree
from .._build.options import BuildOptions
from .._exceptions import DamagedBundleError
from .._strategy import RuntimeStrategy
from .._text import is_printable

__all__ = [
    "DTYPES",
    "CacheInfo",
    "EngineInfo",
    "Environment",
    "Limits",
    "Manifest",
    "Migration",
    "Section",
    "ShapeRange",
    "TensorSpec",
]

#: Section kinds. ``file`` is a user file; ``signature`` a DSSE envelope (format 1.1,
#: docs/signing.md); ``source_data`` (1.1) one external data file of an engine's ONNX source,
#: named by its location; readers skip kinds they do not know.
SECTION_KINDS = ("engine", "runtime_cache", "source", "source_data", "samples", "file", "signature")
CODECS = ("stored", "zstd")
#: Tensor element types, named as numpy/torch name them (TensorRT-RTX's DataType in parentheses):
#: float32 (FLOAT), float16 (HALF), bfloat16 (BF16), int8, int32, int64, bool, uint8,
#: float8_e4m3fn (FP8), int4 (INT4), float4_e2m1fn_x2 (FP4), float8_e8m0fnu (E8M0).
DTYPES = (
    "float32",
    "float16",
    "bfloat16",
    "int8",
    "int32",
    "int64",
    "bool",
    "uint8",
    "float8_e4m3fn",
    "int4",
    "float4_e2m1fn_x2",
    "float8_e8m0fnu",
)
OS_NAMES = ("linux", "windows")
STRATEGY_KEYS = (
    "dynamic_shapes_kernel_specialization_strategy",
    "cuda_graph_strategy",
    "execution_context_allocation_strategy",
)
DIGEST_RE = re.compile(r"^blake3:[0-9a-f]{64}$")
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+){1,3}$")
CC_RE = re.compile(r"^[0-9]{1,2}\.[0-9]{1,2}$")


@dataclass(frozen=True)
class Limits:
    """Bounds on everything a bundle's author controls (msgpack-python style).

    docs/format.md's Limits table is the prose form of these defaults and the schema holds the same
    numbers (a test checks all three agree). Pass your own to ``rtxpack.open(..., limits=...)``.
    """

    max_manifest_bytes: int = 16 * 1024 * 1024
    max_sections: int = 4096
    max_engines: int = 256
    max_caches: int = 1024
    max_files: int = 1024
    max_metadata_entries: int = 1024
    max_migrations: int = 1024
    max_io_tensors: int = 1024  # inputs, outputs; entries of a profile or a cache's shape map
    max_profiles: int = 64
    max_compute_capabilities: int = 64
    max_cache_shapes: int = 1024
    max_rank: int = 16
    max_dim: int = 2**40
    max_string: int = 4096  # code points
    max_name: int = 256  # code points
    max_depth: int = 32  # levels of arrays and maps below the manifest map
    max_array: int = 4096  # items of any msgpack array
    max_map: int = 1024  # entries of any msgpack map
    max_values: int = 512 * 1024  # keys and items of all arrays and maps, at all levels
    max_decoded_section: int = 64 * 1024**3  # bytes after decompression
    max_zstd_ratio: int = 32768  # zstd cannot expand input by more than this


DEFAULT_LIMITS = Limits()


# ---------------------------------------------------------------------------------------------
# Small checked readers for untrusted plain data. `where` is the path shown in messages.


def _fail(where: str, found: Any, expected: str) -> DamagedBundleError:
    shown = repr(found)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return DamagedBundleError(
        f"invalid bundle manifest: {where} is {shown}, expected {expected}; "
        "the bundle is damaged or was not written by rtxpack — rebuild or re-download it"
    )


def _map(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(where, type(data).__name__, "a map")
    return data


def _req(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise _fail(f"{where}.{key}", "missing", "a value")
    return data[key]


def _str(value: Any, where: str, limits: Limits, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or len(value) > limits.max_string:
        raise _fail(
            where, value, f"a string of at most {limits.max_string} characters (code points)"
        )
    if pattern is not None and not pattern.fullmatch(value):
        raise _fail(where, value, f"a string matching {pattern.pattern}")
    return value


def _name(value: Any, where: str, limits: Limits) -> str:
    """Names (engines, sections, caches, files): 1 to 256 printable code points (docs/format.md,
    "Names": printable is a fixed table, the same on every Python version)."""
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= limits.max_name
        or not is_printable(value)
    ):
        raise _fail(
            where, value, f"a name of 1 to {limits.max_name} printable characters (code points)"
        )
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _fail(where, value, f"an integer in [{lo}, {hi}]")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, value, "true or false")
    return value


def _choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(where, value, "one of " + ", ".join(allowed))
    return value  # type: ignore[no-any-return]


def _list(value: Any, where: str, max_len: int) -> list[Any]:
    if not isinstance(value, list) or len(value) > max_len:
        found = f"{len(value)} items" if isinstance(value, list) else type(value).__name__
        raise _fail(where, found, f"a list of at most {max_len} items")
    return value


def _section_ref(value: Any, where: str, sections: tuple[Section, ...], kind: str) -> int:
    index = _int(value, where, 0, max(len(sections) - 1, 0))
    if index >= len(sections) or sections[index].kind != kind:
        raise _fail(where, value, f"the index of a section of kind {kind!r}")
    return index


def _shape(value: Any, where: str, limits: Limits, allow_dynamic: bool) -> tuple[int, ...]:
    dims = _list(value, where, limits.max_rank)
    lo = -1 if allow_dynamic else 0
    return tuple(_int(d, f"{where}[{i}]", lo, limits.max_dim) for i, d in enumerate(dims))


def _plain_metadata(value: Any, where: str, limits: Limits) -> dict[str, str]:
    data = _map(value, where)
    if len(data) > limits.max_metadata_entries:
        raise _fail(where, f"{len(data)} entries", f"at most {limits.max_metadata_entries}")
    out = {
        _str(k, f"{where} key", limits): _str(v, f"{where}[{k!r}]", limits) for k, v in data.items()
    }
    return out


def _check_profiles(
    inputs: tuple[TensorSpec, ...], profiles: list[dict[str, ShapeRange]], where: str
) -> None:
    """docs/format.md, [rule engine.profiles]: profiles agree with the inputs they range over."""
    if not inputs:
        if profiles:
            raise _fail(where, f"{len(profiles)} profiles", "no profile when no input is recorded")
        return
    by_name = {t.name: t for t in inputs}
    dynamic = [t.name for t in inputs if -1 in t.shape]
    for i, profile in enumerate(profiles):
        for name in dynamic:
            if name not in profile:
                raise _fail(f"{where}[{i}]", sorted(profile), f"a profile range for {name!r}")
        for name, rng in profile.items():
            spec = by_name.get(name)
            if spec is None:
                raise _fail(f"{where}[{i}] key", name, "the name of an input of the engine")
            if len(rng.min) != len(spec.shape) or any(
                d != -1 and not lo == opt == hi == d
                for d, lo, opt, hi in zip(spec.shape, rng.min, rng.opt, rng.max)
            ):
                raise _fail(
                    f"{where}[{i}][{name!r}]",
                    rng.to_dict(),
                    f"a profile range of the input's shape {list(spec.shape)} (static "
                    "dimensions equal in min, opt and max)",
                )


def _equal_group(
    value: Any, where: str, inputs: tuple[TensorSpec, ...], limits: Limits
) -> tuple[tuple[str, int], ...]:
    """One ``equal_dims`` group: at least two ``[input name, dim]`` pairs of dynamic dims."""
    ranks = {t.name: len(t.shape) for t in inputs}
    pairs = _list(value, where, limits.max_io_tensors * limits.max_rank)
    out = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, list) and len(pair) == 2 and pair[0] in ranks):
            raise _fail(f"{where}[{i}]", pair, "[the name of an input, a dimension]")
        out.append((pair[0], _int(pair[1], f"{where}[{i}][1]", 0, ranks[pair[0]] - 1)))
    if len(out) < 2 or len(set(out)) != len(out):
        raise _fail(where, pairs, "two or more distinct [input, dim] pairs")
    return tuple(out)


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One byte range of the file. ``digest`` covers the decoded bytes."""

    kind: str
    name: str
    offset: int
    length: int  # bytes in the file
    codec: str  # "stored" or "zstd"
    size: int  # bytes after decoding
    digest: str  # "blake3:<64 hex>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "offset": self.offset,
            "length": self.length,
            "codec": self.codec,
            "size": self.size,
            "digest": self.digest,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str, limits: Limits) -> Section:
        d = _map(data, where)
        kind = _str(_req(d, "kind", where), f"{where}.kind", limits)
        return cls(
            kind=kind,
            name=_name(_req(d, "name", where), f"{where}.name", limits),
            offset=_int(_req(d, "offset", where), f"{where}.offset", 0, 2**63 - 1),
            length=_int(_req(d, "length", where), f"{where}.length", 0, 2**63 - 1),
            codec=_choice(_req(d, "codec", where), f"{where}.codec", CODECS),
            size=_int(_req(d, "size", where), f"{where}.size", 0, limits.max_decoded_section),
            digest=_str(_req(d, "digest", where), f"{where}.digest", limits, DIGEST_RE),
        )


@dataclass(frozen=True)
class TensorSpec:
    """An engine input or output: name, dtype and shape (``-1`` marks a dynamic dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Any, where: str, limits: Limits) -> TensorSpec:
        d = _map(data, where)
        return cls(
            name=_str(_req(d, "name", where), f"{where}.name", limits),
            dtype=_choice(_req(d, "dtype", where), f"{where}.dtype", DTYPES),
            shape=_shape(_req(d, "shape", where), f"{where}.shape", limits, allow_dynamic=True),
        )


@dataclass(frozen=True)
class ShapeRange:
    """The min/opt/max shapes of one input in one optimization profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max)
        )

    @classmethod
    def from_dict(cls, data: Any, where: str, limits: Limits) -> ShapeRange:
        d = _map(data, where)
        lo, opt, hi = (
            _shape(_req(d, k, where), f"{where}.{k}", limits, allow_dynamic=False)
            for k in ("min", "opt", "max")
        )
        if not len(lo) == len(opt) == len(hi) or not all(
            a <= b <= c for a, b, c in zip(lo, opt, hi)
        ):
            raise _fail(where, d, "min <= opt <= max, all of one rank")
        return cls(lo, opt, hi)


@dataclass(frozen=True)
class Environment:
    """Where a runtime cache was made; a cache only loads where these match (docs/caches.md)."""

    trt_version: str
    gpu_name: str
    compute_capability: str
    driver_version: str
    os: str  # "linux" or "windows"
    #: Made in a CUDA context with Compute-in-Graphics (CiG) enabled. TensorRT-RTX 1.6+ loads a
    #: cache only in a context of the same CiG state; absent in older bundles: false (format 1.1).
    compute_in_graphics: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "trt_version": self.trt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "driver_version": self.driver_version,
            "os": self.os,
            "compute_in_graphics": self.compute_in_graphics,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str, limits: Limits = DEFAULT_LIMITS) -> Environment:
        d = _map(data, where)
        return cls(
            trt_version=_str(_req(d, "trt_version", where), f"{where}.trt_version", limits),
            gpu_name=_str(_req(d, "gpu_name", where), f"{where}.gpu_name", limits),
            compute_capability=_str(
                _req(d, "compute_capability", where), f"{where}.compute_capability", limits, CC_RE
            ),
            driver_version=_str(
                _req(d, "driver_version", where), f"{where}.driver_version", limits
            ),
            os=_choice(_req(d, "os", where), f"{where}.os", OS_NAMES),
            compute_in_graphics=_bool(
                d.get("compute_in_graphics", False), f"{where}.compute_in_graphics"
            ),
        )


@dataclass(frozen=True)
class EngineInfo:
    """ABI-tagged metadata of one engine in the bundle."""

    name: str
    section: int
    trt_version: str  # the TensorRT-RTX version that built it
    compute_capabilities: tuple[str, ...]  # e.g. ("8.6", "8.9"); empty if unknown
    hardware_portable: bool  # also runs on newer GPUs (PTX); true for default targets
    platform: str  # e.g. "linux_x86_64", "windows_x86_64"
    inputs: tuple[TensorSpec, ...]  # empty when the I/O signature was not recorded
    outputs: tuple[TensorSpec, ...]
    profiles: tuple[Mapping[str, ShapeRange], ...]
    strategy: RuntimeStrategy
    source: int | None = None  # index of a "source" section (ONNX), if included
    source_digest: str | None = None  # digest of the model source, even if not included
    samples: int | None = None  # index of a "samples" section (safetensors), if included
    #: (format 1.1) indices of the ``source_data`` sections: the source's external data files
    source_data: tuple[int, ...] = ()
    #: (1.1) what the model's forward returned, as plain data (rtxpack/_tree.py); None: flat
    output_tree: Any = None
    #: (1.1) the builder options it was built with; None when unknown (packed, imported engines)
    build_options: BuildOptions | None = None
    #: (1.1) groups of (input, dim) that the model requires to be equal (one symbolic dimension)
    equal_dims: tuple[tuple[tuple[str, int], ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "section": self.section,
            "trt_version": self.trt_version,
            "compute_capabilities": list(self.compute_capabilities),
            "hardware_portable": self.hardware_portable,
            "platform": self.platform,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "profiles": [{k: r.to_dict() for k, r in p.items()} for p in self.profiles],
            "strategy": self.strategy.to_dict(),
            "source": self.source,
            "source_digest": self.source_digest,
            "samples": self.samples,
            "source_data": list(self.source_data),
            "output_tree": self.output_tree,
            "build_options": None if self.build_options is None else self.build_options.to_dict(),
            "equal_dims": [[[n, d] for n, d in group] for group in self.equal_dims],
        }

    @classmethod
    def from_dict(
        cls, data: Any, where: str, sections: tuple[Section, ...], limits: Limits
    ) -> EngineInfo:
        d = _map(data, where)
        inputs = tuple(
            TensorSpec.from_dict(t, f"{where}.inputs[{i}]", limits)
            for i, t in enumerate(
                _list(_req(d, "inputs", where), f"{where}.inputs", limits.max_io_tensors)
            )
        )
        outputs = tuple(
            TensorSpec.from_dict(t, f"{where}.outputs[{i}]", limits)
            for i, t in enumerate(
                _list(_req(d, "outputs", where), f"{where}.outputs", limits.max_io_tensors)
            )
        )
        profiles = []
        for i, p in enumerate(
            _list(_req(d, "profiles", where), f"{where}.profiles", limits.max_profiles)
        ):
            pw = f"{where}.profiles[{i}]"
            pm = _map(p, pw)
            if len(pm) > limits.max_io_tensors:
                raise _fail(pw, f"{len(pm)} inputs", f"at most {limits.max_io_tensors}")
            profiles.append(
                {
                    _str(k, f"{pw} key", limits): ShapeRange.from_dict(v, f"{pw}[{k!r}]", limits)
                    for k, v in pm.items()
                }
            )
        _check_profiles(inputs, profiles, f"{where}.profiles")
        raw_strategy = _map(_req(d, "strategy", where), f"{where}.strategy")
        missing = [k for k in STRATEGY_KEYS if k not in raw_strategy]
        if missing:
            raise _fail(f"{where}.strategy", raw_strategy, f"a strategy with {', '.join(missing)}")
        try:
            strategy = RuntimeStrategy.from_dict(raw_strategy)
        except Exception as exc:  # InvalidArgumentError from the enums
            raise _fail(f"{where}.strategy", raw_strategy, str(exc)) from None
        source = d.get("source")
        samples = d.get("samples")
        data_refs = _list(d.get("source_data", []), f"{where}.source_data", limits.max_sections)
        source_data = tuple(
            _section_ref(v, f"{where}.source_data[{i}]", sections, "source_data")
            for i, v in enumerate(data_refs)
        )
        if source_data and source is None:
            raise _fail(f"{where}.source_data", data_refs, "no data files without a source")
        outputs_count = len(outputs)
        tree = d.get("output_tree")
        if tree is not None:
            try:
                _tree.check(tree, outputs_count)
            except ValueError as exc:
                raise _fail(f"{where}.output_tree", tree, str(exc)) from None
        raw_options = d.get("build_options")
        try:
            build_options = None if raw_options is None else BuildOptions.from_dict(raw_options)
        except Exception as exc:  # InvalidArgumentError from the checks
            raise _fail(f"{where}.build_options", raw_options, str(exc)) from None
        equal_dims = tuple(
            _equal_group(g, f"{where}.equal_dims[{i}]", inputs, limits)
            for i, g in enumerate(
                _list(d.get("equal_dims", []), f"{where}.equal_dims", limits.max_io_tensors)
            )
        )
        source_digest = d.get("source_digest")
        return cls(
            name=_name(_req(d, "name", where), f"{where}.name", limits),
            section=_section_ref(_req(d, "section", where), f"{where}.section", sections, "engine"),
            trt_version=_str(_req(d, "trt_version", where), f"{where}.trt_version", limits),
            compute_capabilities=tuple(
                _str(c, f"{where}.compute_capabilities[{i}]", limits, CC_RE)
                for i, c in enumerate(
                    _list(
                        _req(d, "compute_capabilities", where),
                        f"{where}.compute_capabilities",
                        limits.max_compute_capabilities,
                    )
                )
            ),
            hardware_portable=_bool(
                _req(d, "hardware_portable", where), f"{where}.hardware_portable"
            ),
            platform=_str(_req(d, "platform", where), f"{where}.platform", limits),
            inputs=inputs,
            outputs=outputs,
            profiles=tuple(profiles),
            strategy=strategy,
            source=None
            if source is None
            else _section_ref(source, f"{where}.source", sections, "source"),
            source_digest=None
            if source_digest is None
            else _str(source_digest, f"{where}.source_digest", limits, DIGEST_RE),
            samples=None
            if samples is None
            else _section_ref(samples, f"{where}.samples", sections, "samples"),
            source_data=source_data,
            output_tree=tree,
            build_options=build_options,
            equal_dims=equal_dims,
        )


@dataclass(frozen=True)
class CacheInfo:
    """A prewarmed runtime cache for one engine in one environment."""

    id: str
    engine: str
    section: int
    environment: Environment
    created_at: str
    shapes: tuple[Mapping[str, tuple[int, ...]], ...] = ()  # the input shapes it was warmed with

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "engine": self.engine,
            "section": self.section,
            "environment": self.environment.to_dict(),
            "created_at": self.created_at,
            "shapes": [{k: list(v) for k, v in s.items()} for s in self.shapes],
        }

    @classmethod
    def from_dict(
        cls, data: Any, where: str, sections: tuple[Section, ...], limits: Limits
    ) -> CacheInfo:
        d = _map(data, where)
        shapes = []
        for i, s in enumerate(
            _list(d.get("shapes", []), f"{where}.shapes", limits.max_cache_shapes)
        ):
            sm = _map(s, f"{where}.shapes[{i}]")
            if len(sm) > limits.max_io_tensors:
                raise _fail(f"{where}.shapes[{i}]", len(sm), f"at most {limits.max_io_tensors}")
            shapes.append(
                {
                    _str(k, f"{where}.shapes[{i}] key", limits): _shape(
                        v, f"{where}.shapes[{i}][{k!r}]", limits, allow_dynamic=False
                    )
                    for k, v in sm.items()
                }
            )
        return cls(
            id=_name(_req(d, "id", where), f"{where}.id", limits),
            engine=_str(_req(d, "engine", where), f"{where}.engine", limits),
            section=_section_ref(
                _req(d, "section", where), f"{where}.section", sections, "runtime_cache"
            ),
            environment=Environment.from_dict(
                _req(d, "environment", where), f"{where}.environment", limits
            ),
            created_at=_str(_req(d, "created_at", where), f"{where}.created_at", limits),
            shapes=tuple(shapes),
        )


@dataclass(frozen=True)
class Migration:
    """One ``rtxpack migrate`` step recorded in the manifest."""

    from_version: str
    to_version: str
    rtxpack_version: str
    time: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.from_version,
            "to": self.to_version,
            "rtxpack": self.rtxpack_version,
            "time": self.time,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str, limits: Limits) -> Migration:
        d = _map(data, where)
        return cls(
            *(
                _str(_req(d, k, where), f"{where}.{k}", limits)
                for k in ("from", "to", "rtxpack", "time")
            )
        )


@dataclass(frozen=True)
class Manifest:
    """Everything a reader needs to know about a bundle, read before any section."""

    rtxpack_version: str  # who wrote the bundle
    created_at: str  # ISO 8601, UTC
    sections: tuple[Section, ...]
    engines: tuple[EngineInfo, ...]
    caches: tuple[CacheInfo, ...] = ()
    files: Mapping[str, int] = field(default_factory=dict)  # user file name -> section index
    metadata: Mapping[str, str] = field(default_factory=dict)
    migrations: tuple[Migration, ...] = ()
    #: Top-level keys this reader does not know (written by a newer minor version); kept as read
    #: so that rewriting the bundle (e.g. ``cache add``) does not drop them.
    extra: Mapping[str, Any] = field(default_factory=dict)

    def engine(self, name: str | None = None) -> EngineInfo:
        from .._exceptions import InvalidArgumentError

        if name is None:
            if len(self.engines) == 1:
                return self.engines[0]
            names = ", ".join(e.name for e in self.engines)
            raise InvalidArgumentError(
                f"this bundle holds several engines ({names}); choose one: engine=NAME in Python, "
                "--engine NAME on the command line"
            )
        for e in self.engines:
            if e.name == name:
                return e
        names = ", ".join(e.name for e in self.engines) or "none"
        raise InvalidArgumentError(f"no engine named {name!r} in this bundle (it has: {names})")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "rtxpack_version": self.rtxpack_version,
                "created_at": self.created_at,
                "sections": [s.to_dict() for s in self.sections],
                "engines": [e.to_dict() for e in self.engines],
                "caches": [c.to_dict() for c in self.caches],
                "files": dict(self.files),
                "metadata": dict(self.metadata),
                "migrations": [m.to_dict() for m in self.migrations],
            }
        )
        return out

    @classmethod
    def from_dict(cls, data: Any, limits: Limits = DEFAULT_LIMITS) -> Manifest:
        d = _map(data, "manifest")
        sections = tuple(
            Section.from_dict(s, f"sections[{i}]", limits)
            for i, s in enumerate(
                _list(_req(d, "sections", "manifest"), "sections", limits.max_sections)
            )
        )
        engines = tuple(
            EngineInfo.from_dict(e, f"engines[{i}]", sections, limits)
            for i, e in enumerate(
                _list(_req(d, "engines", "manifest"), "engines", limits.max_engines)
            )
        )
        caches = tuple(
            CacheInfo.from_dict(c, f"caches[{i}]", sections, limits)
            for i, c in enumerate(_list(d.get("caches", []), "caches", limits.max_caches))
        )
        files_map = _map(d.get("files", {}), "files")
        if len(files_map) > limits.max_files:
            raise _fail("files", f"{len(files_map)} entries", f"at most {limits.max_files}")
        files = {
            _name(k, "files key", limits): _section_ref(v, f"files[{k!r}]", sections, "file")
            for k, v in files_map.items()
        }
        migrations = tuple(
            Migration.from_dict(m, f"migrations[{i}]", limits)
            for i, m in enumerate(
                _list(d.get("migrations", []), "migrations", limits.max_migrations)
            )
        )
        known = {
            "rtxpack_version",
            "created_at",
            "sections",
            "engines",
            "caches",
            "files",
            "metadata",
            "migrations",
        }
        # Unknown keys were checked as plain data when the manifest was decoded
        # (container.unpack_manifest); they are kept as read, not copied.
        extra = {k: v for k, v in d.items() if k not in known}
        manifest = cls(
            rtxpack_version=_str(_req(d, "rtxpack_version", "manifest"), "rtxpack_version", limits),
            created_at=_str(_req(d, "created_at", "manifest"), "created_at", limits),
            sections=sections,
            engines=engines,
            caches=caches,
            files=files,
            metadata=_plain_metadata(d.get("metadata", {}), "metadata", limits),
            migrations=migrations,
            extra=extra,
        )
        manifest.check_references()
        return manifest

    def renumbered(self, index: Mapping[int, int], sections: tuple[Section, ...]) -> Manifest:
        """This manifest over a rewritten section table: ``index`` maps each kept old section to
        its new position; caches whose section was not kept are dropped."""

        def opt(i: int | None) -> int | None:
            return None if i is None else index[i]

        return replace(
            self,
            sections=sections,
            engines=tuple(
                replace(
                    e,
                    section=index[e.section],
                    source=opt(e.source),
                    samples=opt(e.samples),
                    source_data=tuple(index[i] for i in e.source_data if i in index),
                )
                for e in self.engines
            ),
            caches=tuple(
                replace(c, section=index[c.section]) for c in self.caches if c.section in index
            ),
            files={k: index[v] for k, v in self.files.items()},
        )

    def check_references(self) -> None:
        """Names are unique, every section is used once, and caches point at known engines."""
        names = [e.name for e in self.engines]
        if len(set(names)) != len(names):
            raise _fail("engines", names, "unique engine names")
        cache_ids = [c.id for c in self.caches]
        if len(set(cache_ids)) != len(cache_ids):
            raise _fail("caches", cache_ids, "unique cache ids")
        for i, c in enumerate(self.caches):
            if c.engine not in names:
                raise _fail(f"caches[{i}].engine", c.engine, "the name of an engine in the bundle")
        used: list[int] = []
        for e in self.engines:
            used += [e.section] + [s for s in (e.source, e.samples) if s is not None]
            used += list(e.source_data)
        used += [c.section for c in self.caches] + list(self.files.values())
        if len(set(used)) != len(used):
            raise _fail("sections", sorted(used), "each section referenced at most once")
