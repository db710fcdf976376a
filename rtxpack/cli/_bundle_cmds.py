"""``rtxpack build | pack | inspect | verify | extract``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import _bundle, _save, _text
from .._build.engine import parse_compute_capabilities
from .._build.options import BuildOptions, TilingLevel
from .._exceptions import DamagedBundleError, InvalidArgumentError
from .._source import check_location
from .._strategy import (
    AllocationStrategy,
    CudaGraphStrategy,
    DynamicShapesStrategy,
    RuntimeStrategy,
)
from ._progress import progress_for, trt_log_to_stderr


def parse_dims(text: str, what: str) -> tuple[int, ...]:
    """``1x3x224x224`` or ``1,3,224,224`` -> (1, 3, 224, 224)."""
    parts = text.replace(",", "x").split("x") if text else []
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 0 for d in dims):
        raise InvalidArgumentError(f"{what}: {text!r} is not a shape; write dims like 1x3x224x224")
    return dims


def parse_shape_arg(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """``NAME=MIN:OPT:MAX`` (or ``NAME=DIMS`` for a fixed shape) -> (name, (min, opt, max))."""
    name, sep, spec = text.partition("=")
    if not sep or not name:
        raise InvalidArgumentError(
            f"--shape {text!r}: expected NAME=MIN:OPT:MAX, e.g. x=1x3:4x3:8x3"
        )
    parts = spec.split(":")
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise InvalidArgumentError(f"--shape {text!r}: expected NAME=MIN:OPT:MAX or NAME=DIMS")
    return name, tuple(parse_dims(p, f"--shape {name}") for p in parts)


def shapes_from_args(values: list[str] | None) -> dict[str, Any] | None:
    if not values:
        return None
    out: dict[str, Any] = {}
    for v in values:
        name, rng = parse_shape_arg(v)
        out[name] = rng
    return out


def _shape_type(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """argparse ``type=`` for ``--shape``: a bad one is a usage error (exit 2)."""
    try:
        return parse_shape_arg(text)
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _ShapeAction(argparse.Action):
    """``--shape`` adds an input's range to the current profile; giving one input twice in one
    profile is a usage error (``--profile`` starts the next profile)."""

    def __call__(self, parser: Any, ns: Any, value: Any, option_string: Any = None) -> None:
        profiles = ns.profiles if ns.profiles is not None else [{}]
        name, rng = value
        if name in profiles[-1]:
            raise argparse.ArgumentError(
                self,
                f"{name!r} given twice in profile {len(profiles) - 1}; give each input once per "
                "profile, and start another optimization profile with --profile",
            )
        profiles[-1][name] = rng
        ns.profiles = profiles


class _ProfileAction(argparse.Action):
    """``--profile`` starts another optimization profile (the ``--shape`` options after it);
    a leading one starts the first. An empty profile is refused by `build_usage_error`."""

    def __call__(self, parser: Any, ns: Any, value: Any, option_string: Any = None) -> None:
        ns.profiles = [{}] if ns.profiles is None else [*ns.profiles, {}]


def build_usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with ``build``'s ``--profile`` groups (cli.main: a usage error), or None."""
    profiles: list[dict[str, Any]] | None = getattr(args, "profiles", None)
    for i, profile in enumerate(profiles or ()):
        if not profile:
            return (
                f"--profile starts profile {i} but no --shape NAME=MIN:OPT:MAX follows it; "
                "give that profile's shapes after each --profile, or remove the extra --profile"
            )
    return None


def _cc_type(text: str) -> str:
    try:
        (cc,) = parse_compute_capabilities([text]) or ()
    except InvalidArgumentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return cc


def _count_type(hi: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not 0 <= value <= hi:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number from 0 to {hi}")
        return value

    return parse


def _budget_type(text: str) -> int | str:
    if text.lower() == "auto":
        return "auto"
    return int(_count_type(2**50)(text))


def samples_from_arg(value: str | None) -> Any:
    """``--samples random`` or a ``.npz`` / ``.safetensors`` file of input arrays."""
    if value is None:
        return None
    if value == "random":
        return "random"
    path = Path(value)
    if not path.is_file():
        raise InvalidArgumentError(
            f"--samples {value}: no such file; give 'random' or a .npz / .safetensors file of "
            "input arrays by input name"
        )
    if path.suffix.lower() == ".npz":
        import numpy as np

        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:
            raise InvalidArgumentError(f"--samples {value}: not a readable .npz ({exc})") from None
    if path.suffix.lower() == ".safetensors":
        from .._tensors import decode

        return decode(path.read_bytes(), f"--samples {value}")
    raise InvalidArgumentError(
        f"--samples {value}: expected 'random', a .npz or a .safetensors file"
    )


def add_strategy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dynamic-shapes-strategy",
        choices=[m.value for m in DynamicShapesStrategy],
        help="kernel specialization for dynamic shapes (default lazy)",
    )
    p.add_argument(
        "--cuda-graph-strategy",
        choices=[m.value for m in CudaGraphStrategy],
        help="TensorRT-RTX native CUDA graphs (default disabled)",
    )
    p.add_argument(
        "--allocation-strategy",
        choices=[m.value for m in AllocationStrategy],
        help="execution context memory allocation (default static)",
    )
    p.add_argument(
        "--weight-streaming-budget",
        type=_budget_type,
        metavar="BYTES|auto",
        help="for weight-streaming engines: bytes of weights kept on the GPU, or auto",
    )


def strategy_from_args(args: argparse.Namespace) -> RuntimeStrategy:
    return RuntimeStrategy().with_overrides(
        dynamic_shapes_kernel_specialization_strategy=args.dynamic_shapes_strategy,
        cuda_graph_strategy=args.cuda_graph_strategy,
        execution_context_allocation_strategy=args.allocation_strategy,
        weight_streaming_budget=args.weight_streaming_budget,
    )


def metadata_from_args(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"--meta {v!r}: expected KEY=VALUE")
        out[key] = value
    return out


def print_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    if Path(args.model).suffix.lower() != ".onnx":
        raise InvalidArgumentError(
            f"{args.model}: `rtxpack build` takes an .onnx model; for an engine use `rtxpack pack`"
        )
    options = BuildOptions(
        weight_streaming=args.weight_streaming,
        tiling_optimization_level=args.tiling_optimization_level,
        l2_limit_for_tiling=args.l2_limit_for_tiling,
        max_aux_streams=args.max_aux_streams,
    )
    samples = samples_from_arg(args.samples)
    with progress_for(args.quiet) as progress, trt_log_to_stderr(args.verbose):
        out = _save.save(
            args.model,
            args.output,
            shapes=args.profiles,
            strategy=strategy_from_args(args),
            compute_capabilities=args.cc or None,
            build_options=options,
            platform=args.platform,
            include_source=not args.no_source,
            samples=samples,
            metadata=metadata_from_args(args.meta),
            name=args.name,
            progress=progress,
        )
    print(f"wrote {out} ({size_text(out.stat().st_size)})")
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    out = _save.save(
        args.engine,
        args.output,
        strategy=strategy_from_args(args),
        metadata=metadata_from_args(args.meta),
        name=args.name,
    )
    print(f"wrote {out} ({size_text(out.stat().st_size)})")
    return 0


def terminal_safe(text: str) -> str:
    """Escape every non-printable character of each line (terminal escape sequences that a hostile
    bundle could carry, for instance); the line breaks of ``text`` itself are kept. Untrusted
    values must be escaped one by one before they are joined into lines (``_escaped``), so that a
    newline inside one is escaped too."""
    return "\n".join(_text.terminal_safe(line) for line in text.split("\n"))


def _escaped(value: Any) -> Any:
    """``value`` with every string (keys too) escaped for a terminal, newlines included."""
    if isinstance(value, str):
        return _text.terminal_safe(value)
    if isinstance(value, dict):
        return {_escaped(k): _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


size_text = _text.size_text


def _dims(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _or_default(value: Any) -> str:
    return "default" if value is None else str(value)


def _source_cost(e: dict[str, Any], sections: list[Any], file_size: int) -> str:
    """``ONNX graph 5 KiB + 2 data files 3.0 GiB = 3.0 GiB (50% of the bundle)``."""
    graph = sections[e["source"]]["size"]
    data = [sections[i]["size"] for i in e.get("source_data", [])]
    stored = sections[e["source"]]["length"] + sum(
        sections[i]["length"] for i in e.get("source_data", [])
    )
    text = f"ONNX graph {size_text(graph)}"
    if data:
        files = "1 data file" if len(data) == 1 else f"{len(data)} data files"
        text += f" + {files} {size_text(sum(data))}"
    share = 100 * stored / max(file_size, 1)
    return (
        f"{text}; {size_text(stored)} stored, {share:.0f}% of the bundle "
        "(rtxpack drop-source removes it; fallback, verify --run and rebuild need it)"
    )


def _tree_text(node: Any, names: list[str]) -> str:
    """An output tree as Python-like text: ``{'logits': logits, 'aux': (aux.0, aux.1)}``."""
    if isinstance(node, int):
        return names[node] if node < len(names) else "?"
    ((kind, body),) = node.items()
    if kind == "none":
        return "None"
    if kind == "dict":
        return "{" + ", ".join(f"{k!r}: {_tree_text(v, names)}" for k, v in body) + "}"
    inner = ", ".join(_tree_text(v, names) for v in body)
    return f"[{inner}]" if kind == "list" else f"({inner}{',' if len(body) == 1 else ''})"


def render_summary(data: dict[str, Any], path: str) -> str:
    """The human-readable form of ``rtxpack.inspect``."""
    sections = data["sections"]
    lines = [
        f"bundle    {path}  ({size_text(data['file_size'])}, format {data['format_version']}, "
        f"written by rtxpack {data['rtxpack_version']} at {data['created_at']})"
    ]
    for e in data["engines"]:
        s = sections[e["section"]]
        lines.append(
            f"engine    {e['name']}  {size_text(s['size'])} {s['codec']}  "
            f"TensorRT-RTX {e['trt_version']}  {e['platform']}"
        )
        ccs = ", ".join(e["compute_capabilities"]) or "unknown"
        lines.append(
            f"  targets   CC {ccs}" + (" (+ newer GPUs via PTX)" if e["hardware_portable"] else "")
        )
        st = e["strategy"]
        budget = st.get("weight_streaming_budget")
        lines.append(
            f"  strategy  dynamic shapes: {st['dynamic_shapes_kernel_specialization_strategy']}"
            f" | CUDA graphs: {st['cuda_graph_strategy']}"
            f" | allocation: {st['execution_context_allocation_strategy']}"
            + ("" if budget is None else f" | weight streaming budget: {budget}")
        )
        opts = e.get("build_options")
        if opts is not None:
            lines.append(
                f"  built     weight streaming: {'yes' if opts['weight_streaming'] else 'no'}"
                f" | tiling: {opts['tiling_optimization_level']}"
                + (
                    ""
                    if opts.get("l2_limit_for_tiling") is None
                    else f" (L2 limit {size_text(opts['l2_limit_for_tiling'])})"
                )
                + f" | aux streams: {_or_default(opts.get('max_aux_streams'))}"
            )
        if not e["inputs"] and not e["outputs"]:
            lines.append("  I/O       not recorded (packed engine; read from the engine on a GPU)")
        for t in e["inputs"]:
            ranges = "; ".join(
                f"profile {i}: {_dims(p[t['name']]['min'])} .. {_dims(p[t['name']]['opt'])} .. "
                f"{_dims(p[t['name']]['max'])}"
                for i, p in enumerate(e["profiles"])
                if t["name"] in p
            )
            lines.append(
                f"  input     {t['name']}  {t['dtype']}  [{', '.join(map(str, t['shape']))}]"
                + (f"  {ranges}" if ranges else "")
            )
        for group in e.get("equal_dims", []):
            lines.append("  equal     " + " = ".join(f"{n} dim {d}" for n, d in group))
        for t in e["outputs"]:
            lines.append(
                f"  output    {t['name']}  {t['dtype']}  [{', '.join(map(str, t['shape']))}]"
            )
        if e.get("output_tree") is not None:
            lines.append(
                f"  returns   {_tree_text(e['output_tree'], [t['name'] for t in e['outputs']])}"
            )
        if e.get("source") is not None:
            lines.append("  source    " + _source_cost(e, sections, data["file_size"]))
        elif e.get("source_digest"):
            lines.append(f"  source    not included ({e['source_digest'][:19]}...)")
        if e.get("samples") is not None:
            lines.append(f"  samples   {size_text(sections[e['samples']]['size'])} (safetensors)")
    caches = data.get("caches", [])
    if not caches:
        lines.append("caches    none")
    for c in caches:
        env = c["environment"]
        lines.append(
            f"cache     {c['id']}  engine {c['engine']}  {env['gpu_name']} (CC "
            f"{env['compute_capability']})  TensorRT-RTX {env['trt_version']}  driver "
            f"{env['driver_version']}  {env['os']}  {size_text(sections[c['section']]['size'])}"
        )
    for name, idx in data.get("files", {}).items():
        lines.append(f"file      {name}  {size_text(sections[idx]['size'])}")
    for k, v in data.get("metadata", {}).items():
        lines.append(f"metadata  {k} = {v}")
    for s in data.get("signers", []):
        if s["status"] == "damaged":
            lines.append(f"signature {s['section']}  damaged: {s['detail']}")
            continue
        covers = f"{len(s['covers'])} part(s)"
        if s["mismatched"]:
            covers += f", {len(s['mismatched'])} changed since: {', '.join(s['mismatched'])}"
        lines.append(
            f"signature {s['role']}  key {s['key_id'][:16]}  {s['signed_at']}  signs {covers}"
            "  (not verified here: rtxpack verify --trust KEY.pub)"
        )
    for m in data.get("migrations", []):
        lines.append(f"migrated  {m['from']} -> {m['to']} by rtxpack {m['rtxpack']} at {m['time']}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    data = _bundle.inspect_bundle(args.bundle)
    if args.json:
        print(json.dumps(data, indent=2, allow_nan=False))  # strict JSON (the reader has no NaN)
    else:
        print(terminal_safe(render_summary(_escaped(data), _text.terminal_safe(args.bundle))))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from ._sign_cmds import trust_from_args

    with _bundle.open_bundle(args.bundle, trust=trust_from_args(args)) as b:
        b.verify()
        total = sum(s.size for s in b.manifest.sections)
        print(
            f"OK  {args.bundle}: {len(b.manifest.sections)} sections, {size_text(total)}, "
            "digests match"
        )
        if b.trust is not None:
            for s in b.trust.signers:
                print(terminal_safe(f"    signature: {s.describe()}"))
            dropped = f"; ignored caches: {', '.join(b.trust.dropped)}" if b.trust.dropped else ""
            print(f"    trust policy: every required part is signed by a trusted key{dropped}")
        elif any(s.kind == "signature" for s in b.manifest.sections):
            print("    signed, not verified: give --trust KEY.pub (or set RTXPACK_TRUST_POLICY)")
    if args.run:
        from .._samples import run_samples

        run = run_samples(args.bundle, engine=args.engine, device=args.device)
        for line in run.lines():
            print(line)
        return 0 if run.ok else 1
    return 0


def _file_path(text: str) -> str:
    if text == "-":  # a file appears only once its digest matched: standard output cannot wait
        raise argparse.ArgumentTypeError(
            "'-' (standard output) is not supported: extract writes a file only once its bytes "
            "matched their digest; give a file path"
        )
    return text


def cmd_extract(args: argparse.Namespace) -> int:
    with _bundle.open_bundle(args.bundle) as b:
        if args.file is not None:
            if args.file not in b.manifest.files:
                b.read_file(args.file)  # raises, naming the files it has
            index = b.manifest.files[args.file]
        elif args.source:
            info = b.manifest.engine(args.engine)
            if info.source is None:
                raise InvalidArgumentError(f"{args.bundle} does not include the model source")
            index = info.source
            # the external data files go beside the graph, under the names the graph gives them
            folder = Path(args.output).parent
            for i in info.source_data:
                name = b.manifest.sections[i].name
                try:
                    check_location(name)
                except ValueError:
                    raise DamagedBundleError(
                        f"source data section {name!r} is not a plain relative file name; the "
                        "bundle is damaged or hostile",
                        path=args.bundle,
                    ) from None
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                b.extract(i, folder / name)
                print(f"wrote {folder / name}")
        else:
            index = b.manifest.engine(args.engine).section
        b.extract(index, args.output)  # streamed: bounded memory whatever the section's size
    print(f"wrote {args.output}")
    return 0


def cmd_drop_source(args: argparse.Namespace) -> int:
    from .._source import drop_source

    removed = drop_source(args.bundle, output=args.output, engines=args.engine or None)
    target = args.output or args.bundle
    print(f"wrote {target} without the ONNX source ({size_text(removed)} less)")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("build", help="build an ONNX model into a bundle (CPU-only)")
    p.add_argument("model", help="the .onnx model")
    p.add_argument("-o", "--output", required=True, help="the bundle to write")
    p.add_argument(
        "--shape",
        dest="profiles",
        action=_ShapeAction,
        type=_shape_type,
        metavar="NAME=MIN:OPT:MAX",
        help="shapes of a dynamic input in the current profile, e.g. "
        "x=1x3x224x224:8x3x224x224:32x3x224x224 (once per input and profile)",
    )
    p.add_argument(
        "--profile",
        dest="profiles",
        action=_ProfileAction,
        nargs=0,
        help="start another optimization profile: the --shape options after it belong to it",
    )
    p.add_argument(
        "--cc",
        action="append",
        type=_cc_type,
        metavar="X.Y",
        help="target compute capability (repeatable; default: all RTX GPUs + PTX)",
    )
    p.add_argument(
        "--platform",
        choices=["linux", "windows"],
        help="the platform the engine is for (default: this one; Windows engines build on Linux)",
    )
    p.add_argument(
        "--samples",
        metavar="random|FILE",
        help="store sample inputs (random ones in the first profile's opt shapes, or a .npz / "
        ".safetensors file of arrays by input name) and ONNX Runtime's outputs for them, for "
        "`rtxpack verify --run`",
    )
    p.add_argument("--weight-streaming", action="store_true", help="build for weight streaming")
    p.add_argument(
        "--tiling-optimization-level",
        choices=[m.value for m in TilingLevel],
        default="none",
        help="L2 tiling search effort (default none)",
    )
    p.add_argument(
        "--l2-limit-for-tiling", type=_count_type(2**40), metavar="BYTES", help="L2 budget"
    )
    p.add_argument("--max-aux-streams", type=_count_type(64), metavar="N", help="auxiliary streams")
    p.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="TensorRT-RTX's log on stderr (-v: info, -vv: verbose)",
    )
    p.add_argument("--name", default="main", help="engine name (default main)")
    p.add_argument("--no-source", action="store_true", help="do not store the ONNX model")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="user metadata")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_strategy_args(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "drop-source",
        help="remove the ONNX source (and its weights) from a bundle; the engines stay",
    )
    p.add_argument("bundle")
    p.add_argument("-o", "--output", help="write here instead of rewriting the bundle in place")
    p.add_argument("--engine", action="append", help="only this engine's source (repeatable)")
    p.set_defaults(func=cmd_drop_source)

    p = sub.add_parser("pack", help="pack a serialized TensorRT-RTX engine into a bundle")
    p.add_argument("engine", help="the engine file")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--name", default="main", help="engine name (default main)")
    p.add_argument("--meta", action="append", metavar="KEY=VALUE", help="user metadata")
    add_strategy_args(p)
    p.set_defaults(func=cmd_pack)

    p = sub.add_parser("inspect", help="show what a bundle holds (its manifest and who signed it)")
    p.add_argument("bundle")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("verify", help="check every digest; --run also runs the stored samples")
    p.add_argument("bundle")
    p.add_argument(
        "--run",
        action="store_true",
        help="run the sample inputs and compare with the stored outputs",
    )
    p.add_argument("--engine", help="engine name (with --run)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto (with --run)")
    from ._sign_cmds import add_trust_args

    add_trust_args(p)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("extract", help="write an engine (or the source, or a file) out of a bundle")
    p.add_argument("bundle")
    p.add_argument(
        "-o", "--output", required=True, type=_file_path, help="the file to write (not '-')"
    )
    p.add_argument("--engine", help="engine name (needed when the bundle has several)")
    p.add_argument("--source", action="store_true", help="extract the ONNX source instead")
    p.add_argument("--file", help="extract the user file of this name instead")
    p.set_defaults(func=cmd_extract)
