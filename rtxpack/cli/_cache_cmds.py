"""``rtxpack prewarm`` and ``rtxpack cache add | list | remove``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import _bundle, _constants
from .._caches import edit, fit, local
from .._exceptions import InvalidArgumentError
from .._format.manifest import OS_NAMES, Environment
from . import _registry_cmds
from ._bundle_cmds import parse_dims, size_text, terminal_safe
from ._check_cmds import target_part


def register(sub: Any) -> None:
    p = sub.add_parser(
        "prewarm",
        help="JIT-compile on this GPU and store the runtime cache in the bundle (needs a GPU)",
        description=(
            "Load each engine with the eager strategy, run every optimization profile's "
            "min/opt/max shapes and the given shapes, and write OUT: the bundle plus the runtime "
            "cache for this machine's environment (caches for other environments are kept). "
            "Needs a GPU that TensorRT-RTX supports."
        ),
    )
    p.add_argument("bundle", type=Path, help="the bundle to prewarm")
    p.add_argument("-o", "--output", type=Path, required=True, help="the bundle to write")
    p.add_argument(
        "--shape",
        action="append",
        metavar="NAME=DIMS",
        help="also run this input shape, e.g. x=4x16 (repeat for each input of one shape set)",
    )
    p.add_argument("--engine", help="prewarm only this engine (default: all)")
    p.set_defaults(func=_prewarm)

    cache = sub.add_parser(
        "cache",
        help="list, add or remove the runtime caches stored in a bundle",
        description="Runtime caches stored in a bundle (see docs/caches.md).",
    )
    csub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)

    a = csub.add_parser(
        "add",
        help="attach a runtime cache made elsewhere (no GPU needed)",
        description=(
            "Attach a runtime cache made on another machine, for example the runtime-cache file "
            "written by NVIDIA's tensorrt_rtx command line or an rtxpack local cache file. The "
            "flags describe the machine that made it; a cache only loads on a machine that "
            "matches (same TensorRT-RTX version, GPU, OS, driver major, driver same or newer). "
            "A cache of the same engine and environment already in the bundle is replaced."
        ),
    )
    a.add_argument("bundle", type=Path)
    a.add_argument("--cache", type=Path, required=True, metavar="FILE", help="the cache file")
    a.add_argument("--engine", help="the engine it belongs to (needed if there are several)")
    a.add_argument(
        "--trt-version",
        required=True,
        type=target_part("trt_version"),
        metavar="V",
        help="e.g. 1.7.1.116",
    )
    a.add_argument("--gpu", required=True, metavar="NAME", help="e.g. 'NVIDIA GeForce RTX 4090'")
    a.add_argument(
        "--cc",
        required=True,
        type=target_part("compute_capability"),
        metavar="X.Y",
        help="compute capability, e.g. 8.9",
    )
    a.add_argument(
        "--driver",
        required=True,
        type=target_part("driver_version"),
        metavar="V",
        help="CUDA driver, e.g. 580.65",
    )
    a.add_argument(
        "--os", required=True, choices=OS_NAMES, metavar="|".join(OS_NAMES), help="linux or windows"
    )
    a.add_argument(
        "--cig",
        action="store_true",
        help="the cache was made in a CUDA context with Compute-in-Graphics enabled",
    )
    a.add_argument(
        "--shape",
        action="append",
        metavar="NAME=DIMS",
        help="record a shape the cache was warmed with (informational)",
    )
    a.add_argument("-o", "--output", type=Path, help="write here instead of in place")
    a.set_defaults(func=_add)

    ls = csub.add_parser("list", help="show the runtime caches in a bundle")
    ls.add_argument("bundle", type=Path)
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=_list)

    rm = csub.add_parser("remove", help="drop one runtime cache from a bundle")
    rm.add_argument("bundle", type=Path)
    rm.add_argument("id", help="the cache id (see `rtxpack cache list`)")
    rm.add_argument("-o", "--output", type=Path, help="write here instead of in place")
    rm.set_defaults(func=_remove)

    _registry_cmds.register_cache_push(csub)


def _shape_set(values: list[str] | None) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for text in values or ():
        name, sep, dims = text.partition("=")
        if not sep or not name:
            raise InvalidArgumentError(f"--shape {text!r}: expected NAME=DIMS, e.g. x=4x16")
        out[name] = parse_dims(dims, f"--shape {name}")
    return out


def read_cache_arg(path: Path) -> bytes:
    """The cache bytes of ``--cache FILE``: a raw TensorRT-RTX cache or an rtxpack cache file."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InvalidArgumentError(f"--cache {path}: no such file") from None
    except OSError as exc:
        raise InvalidArgumentError(f"--cache {path}: cannot read it ({exc.strerror})") from None
    if not path.is_file():
        raise InvalidArgumentError(f"--cache {path}: not a file")
    if size == 0:
        raise InvalidArgumentError(
            f"--cache {path}: the file is empty; a run that JIT-compiled nothing writes no cache"
        )
    if size > _constants.MAX_CACHE_BYTES:
        raise InvalidArgumentError(
            f"--cache {path}: {size} bytes, above the limit of {_constants.MAX_CACHE_BYTES} "
            "bytes (4 GiB); this is not a runtime cache"
        )
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blob = local.read_cache_file(path, allow_raw=True)
    if blob is None:
        why = str(caught[-1].message) if caught else "it could not be read"
        raise InvalidArgumentError(f"--cache {path}: {why}")
    return blob


def _add(args: argparse.Namespace) -> int:
    env = edit.check_environment(
        Environment(
            trt_version=args.trt_version,
            gpu_name=args.gpu,
            compute_capability=args.cc,
            driver_version=args.driver,
            os=args.os,
            compute_in_graphics=args.cig,
        )
    )
    blob = read_cache_arg(args.cache)
    shapes = _shape_set(args.shape)
    info = edit.add_cache(
        args.bundle,
        blob,
        env,
        engine=args.engine,
        shapes=[shapes] if shapes else (),
        output=args.output,
    )
    target = args.output or args.bundle
    print(
        f"added cache {info.id} for engine {info.engine!r} "
        f"({fit.describe_environment(env)}, {len(blob)} bytes) to {target}"
    )
    return 0


def _rows(bundle_path: Path) -> list[dict[str, Any]]:
    with _bundle.open_bundle(bundle_path) as b:
        return [
            {
                "id": c.id,
                "engine": c.engine,
                "environment": c.environment.to_dict(),
                "size": b.manifest.sections[c.section].size,
                "stored_size": b.manifest.sections[c.section].length,
                "created_at": c.created_at,
                "shapes": [{k: list(v) for k, v in s.items()} for s in c.shapes],
            }
            for c in b.manifest.caches
        ]


def _list(args: argparse.Namespace) -> int:
    rows = _rows(args.bundle)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
        print()
        return 0
    if not rows:
        print(f"{args.bundle}: no runtime caches")
        return 0
    table = [("ID", "ENGINE", "TRT-RTX", "GPU", "CC", "DRIVER", "OS", "SIZE", "CREATED", "SHAPES")]
    for r in rows:
        e = r["environment"]
        shapes = " ".join(
            ",".join(f"{k}={'x'.join(map(str, v))}" for k, v in s.items()) for s in r["shapes"]
        )
        table.append(
            (
                r["id"],
                r["engine"],
                e["trt_version"],
                e["gpu_name"],
                e["compute_capability"],
                e["driver_version"],
                e["os"],
                size_text(r["size"]),
                r["created_at"],
                shapes or "-",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(terminal_safe("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()))
    return 0


def _remove(args: argparse.Namespace) -> int:
    info = edit.remove_cache(args.bundle, args.id, output=args.output)
    print(
        f"removed cache {info.id} of engine {info.engine!r} "
        f"({fit.describe_environment(info.environment)}) from {args.output or args.bundle}"
    )
    return 0


def _prewarm(args: argparse.Namespace) -> int:
    from .._caches.prewarm import prewarm

    shapes = _shape_set(args.shape)
    added = prewarm(
        args.bundle,
        args.output,
        shapes=[shapes] if shapes else None,
        engine=args.engine,
        progress=lambda m: print(m, file=sys.stderr),
    )
    for info in added:
        print(
            f"stored cache {info.id} for engine {info.engine!r} "
            f"({fit.describe_environment(info.environment)}) in {args.output}"
        )
    return 0
