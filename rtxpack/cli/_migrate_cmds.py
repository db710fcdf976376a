"""``rtxpack migrate | rebuild | import-torch-tensorrt``: carrying artifacts forward."""

from __future__ import annotations

import argparse
from typing import Any

from .. import _bundle
from .._interop import torch_tensorrt
from .._upgrade import migrate, rebuild
from ._bundle_cmds import print_progress


def cmd_migrate(args: argparse.Namespace) -> int:
    migrate.migrate(args.old, args.output, progress=print_progress)
    print(f"wrote {args.output}")
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    rebuild.rebuild(
        args.bundle,
        args.output,
        engines=args.engine,
        compute_capabilities=args.cc,
        portable=args.portable,
        progress=None if args.quiet else print_progress,
    )
    print(f"wrote {args.output}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = torch_tensorrt.import_torch_tensorrt(
        args.info, args.output, name=args.name, engine=args.engine
    )

    with _bundle.open_bundle(path) as b:
        layout = b.manifest.metadata.get("torch_tensorrt.layout", "?")
        info = b.manifest.engines[0]
    print(
        f"imported Torch-TensorRT {layout} engine {info.name!r} (TensorRT-RTX {info.trt_version})"
        f" into {path}",
    )
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("migrate", help="rewrite a bundle of an older format in the current one")
    p.add_argument("old", help="the bundle to migrate")
    p.add_argument("-o", "--output", required=True, help="the bundle to write (may be OLD)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "rebuild",
        help="rebuild engines from their ONNX source with the installed TensorRT-RTX (CPU-only)",
    )
    p.add_argument("bundle")
    p.add_argument("-o", "--output", required=True, help="the bundle to write")
    p.add_argument(
        "--engine", action="append", metavar="NAME", help="consider only this engine (repeatable)"
    )
    p.add_argument(
        "--cc",
        action="append",
        metavar="X.Y",
        help="required target compute capability (repeatable); engines lacking one are rebuilt "
        "for exactly these",
    )
    p.add_argument(
        "--portable",
        action="store_true",
        help="also rebuild engines built for fixed GPUs for the portable default targets "
        "(all RTX GPUs TensorRT-RTX knows, newer ones through PTX)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser(
        "import-torch-tensorrt",
        help="turn a Torch-TensorRT serialized engine (JSON list, TorchScript or "
        "ExportedProgram file) into a bundle",
    )
    p.add_argument("info", help="a .json list of strings, or a .ts/.pt/.pt2/.ep file")
    p.add_argument("-o", "--output", required=True, help="the bundle to write")
    p.add_argument("--name", help="engine name in the bundle (default: the Torch-TensorRT name)")
    p.add_argument(
        "--engine", metavar="NAME", help="which Torch-TensorRT engine, when the file has several"
    )
    p.set_defaults(func=cmd_import)
