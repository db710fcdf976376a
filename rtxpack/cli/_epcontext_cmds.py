"""``rtxpack export-epcontext | import-epcontext``: ONNX Runtime's TensorRT-RTX EPContext models."""

from __future__ import annotations

import argparse
from typing import Any

from .. import _bundle
from .._interop import epcontext
from ._bundle_cmds import add_strategy_args, strategy_from_args, terminal_safe


def cmd_export(args: argparse.Namespace) -> int:
    out = epcontext.export_epcontext(
        args.bundle,
        args.output,
        engine=args.engine,
        embed=not args.external,
        include_source=not args.no_source,
        runtime_cache_dir=args.runtime_cache_dir,
        cache_id=args.cache,
    )
    print(f"wrote {out.model}")
    for what, path in (
        ("engine", out.engine_file),
        ("source", out.source),
        ("runtime cache", out.runtime_cache),
    ):
        if path is not None:
            print(f"wrote {what} {path}")
    options = {"provider": epcontext.EP_NAME, **out.provider_options}
    print("provider options: " + ", ".join(f"{k}={v}" for k, v in options.items()))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    flags = (args.dynamic_shapes_strategy, args.cuda_graph_strategy, args.allocation_strategy)
    # Without flags, the runtime settings rtxpack recorded in the model (if any) are kept.
    strategy = strategy_from_args(args) if any(flags) else None
    path = epcontext.import_epcontext(
        args.model, args.output, source=args.source, strategy=strategy
    )
    with _bundle.open_bundle(path) as b:
        names = ", ".join(f"{e.name!r} (TensorRT-RTX {e.trt_version})" for e in b.manifest.engines)
    print(terminal_safe(f"imported {names} into {path}"))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export-epcontext",
        help="write an engine of a bundle as an EPContext model for ONNX Runtime's "
        "TensorRT-RTX execution provider",
    )
    p.add_argument("bundle")
    p.add_argument("-o", "--output", required=True, help="the model to write (model_ctx.onnx)")
    p.add_argument("--engine", metavar="NAME", help="which engine, when the bundle has several")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--embed", action="store_true", help="engine bytes inside the model (default)"
    )
    mode.add_argument(
        "--external",
        action="store_true",
        help="engine in a file beside the model (OUTPUT stem + .engine); needed above 2 GiB",
    )
    p.add_argument(
        "--no-source", action="store_true", help="do not write the bundle's ONNX source beside it"
    )
    p.add_argument(
        "--runtime-cache-dir",
        metavar="DIR",
        help="also write the engine's runtime cache where the provider reads it when its "
        "nv_runtime_cache_path option is DIR",
    )
    p.add_argument("--cache", metavar="ID", help="which runtime cache, when there are several")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "import-epcontext",
        help="turn an EPContext model of the TensorRT-RTX execution provider into a bundle",
    )
    p.add_argument("model", help="the EPContext model (.onnx); external engines beside it")
    p.add_argument("-o", "--output", required=True, help="the bundle to write")
    p.add_argument("--source", metavar="ONNX", help="the ONNX model the engine was compiled from")
    add_strategy_args(p)
    p.set_defaults(func=cmd_import)
