"""``rtxpack push``, ``rtxpack pull``, ``rtxpack cache push`` and ``rtxpack store``: bundles
through OCI registries (docs/distribution.md)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from .._checks.machine import local_target
from .._exceptions import InvalidArgumentError
from ._bundle_cmds import terminal_safe
from ._check_cmds import add_target_flags, target_from_args

__all__ = ["register", "register_cache_push"]

_REF_HELP = "oci://HOST[:PORT]/REPOSITORY[:TAG] (a tag; default latest)"
_AUTH_EPILOG = """\
Credentials, when the registry asks: RTXPACK_REGISTRY_USERNAME and RTXPACK_REGISTRY_PASSWORD,
else the auth file named by RTXPACK_REGISTRY_AUTH_FILE, else the Docker and Podman auth files
(what 'docker login' / 'podman login' write). A CA bundle: --ca-file or RTXPACK_REGISTRY_CA_FILE.
Plain HTTP only to loopback hosts (localhost, 127.0.0.1, ::1) or with --insecure.
"""


def _transport_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca-file", metavar="PEM", help="trust these CA certificates too")
    p.add_argument(
        "--insecure", action="store_true", help="allow plain HTTP to a registry that is not local"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "push",
        help="push a bundle to an OCI registry (one blob per section)",
        description=(
            "Push BUNDLE to an OCI registry as an artifact: one blob per section, the bundle "
            "manifest as its config. Blobs the repository already has are not uploaded again."
        ),
        epilog=_AUTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path, help="the bundle to push")
    p.add_argument("ref", metavar="REF", help=_REF_HELP)
    p.add_argument(
        "--mount-from",
        metavar="REPO",
        help="another repository of the same registry to link existing blobs from",
    )
    p.add_argument(
        "--annotation",
        action="append",
        metavar="KEY=VALUE",
        help="add an annotation to the OCI manifest (repeatable)",
    )
    _transport_flags(p)
    p.set_defaults(func=_push)

    q = sub.add_parser(
        "pull",
        help="pull a bundle for this machine (or a described one) from an OCI registry",
        description=(
            "Pull the bundle at REF into a local bundle: only the engines the target can run "
            "and, for each, the prewarmed runtime cache that fits it. The target is this "
            "machine unless flags describe another one (as for `rtxpack check`)."
        ),
        epilog=_AUTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    q.add_argument("ref", metavar="REF", help="oci://HOST[:PORT]/REPOSITORY[:TAG|@sha256:...]")
    q.add_argument("-o", "--output", type=Path, required=True, help="the bundle to write")
    add_target_flags(q)
    which = q.add_mutually_exclusive_group()
    which.add_argument(
        "--engine", action="append", metavar="NAME", help="pull this engine (repeatable)"
    )
    which.add_argument("--all-engines", action="store_true", help="pull every engine")
    q.add_argument("--source", action="store_true", help="also pull the ONNX source")
    q.add_argument("--samples", action="store_true", help="also pull the sample tensors")
    q.add_argument("--no-caches", action="store_true", help="pull no prewarmed runtime cache")
    _transport_flags(q)
    q.set_defaults(func=_pull)

    s = sub.add_parser(
        "store",
        help="the local content store of pulled blobs: size, prune",
        description="The content store keeps pulled blobs by digest (docs/distribution.md).",
    )
    ssub = s.add_subparsers(dest="store_command", metavar="ACTION", required=True)
    info = ssub.add_parser("info", help="where the store is and what it holds")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_store_info)
    prune = ssub.add_parser("prune", help="remove blobs (and pulled bundles) not used lately")
    prune.add_argument(
        "--older-than",
        type=_days_type,
        default=0.0,
        metavar="DAYS",
        help="only those not used for DAYS days (default: all)",
    )
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(func=_store_prune)


def register_cache_push(csub: Any) -> None:
    """``rtxpack cache push``, in the ``cache`` group."""
    p = csub.add_parser(
        "push",
        help="publish only the new runtime caches of a bundle to a tag that has its engine",
        description=(
            "Add the runtime caches of BUNDLE that the bundle at REF lacks (same engine, new "
            "cache) to REF: only those caches and the manifests are uploaded, and devices that "
            "hold the engine download only the cache."
        ),
        epilog=_AUTH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundle", type=Path, help="a bundle with new caches (e.g. from prewarm)")
    p.add_argument("ref", metavar="REF", help=_REF_HELP)
    _transport_flags(p)
    p.set_defaults(func=_cache_push)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _annotations(values: list[str] | None) -> dict[str, str]:
    out = {}
    for text in values or ():
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"--annotation {text!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _push(args: argparse.Namespace) -> int:
    from .._registry.push import push

    result = push(
        args.bundle,
        args.ref,
        mount_from=args.mount_from,
        annotations=_annotations(args.annotation),
        insecure=args.insecure,
        ca_file=args.ca_file,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"pushed {terminal_safe(result.reference)}: {result.uploaded} blobs uploaded "
            f"({_mb(result.uploaded_bytes)}), {result.skipped} already there, "
            f"{result.mounted} mounted"
        )
    return 0


def _pull(args: argparse.Namespace) -> int:
    from .._registry.pull import pull

    flags = (args.trt_version, args.cc, args.gpu, args.driver, args.os, args.cuda)
    if any(v is not None for v in flags):
        target, _, _ = target_from_args(args, local_target())
    else:
        target = None
    engines: list[str] | str | None = "all" if args.all_engines else args.engine
    result = pull(
        args.ref,
        args.output,
        target=target,
        engines=engines,
        source=args.source,
        samples=args.samples,
        caches=not args.no_caches,
        insecure=args.insecure,
        ca_file=args.ca_file,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        caches = ", ".join(result.caches) or "none fits the target"
        print(
            f"pulled {terminal_safe(result.reference)} -> {terminal_safe(str(result.path))}: "
            f"engines {terminal_safe(', '.join(result.engines))}; caches: {caches}; "
            f"{result.downloaded} blobs downloaded ({_mb(result.downloaded_bytes)}), "
            f"{result.reused} from the content store"
        )
    return 0


def _cache_push(args: argparse.Namespace) -> int:
    from .._registry.push import push_caches

    result = push_caches(args.bundle, args.ref, insecure=args.insecure, ca_file=args.ca_file)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif not result.caches_added:
        print(f"{terminal_safe(result.reference)} already has every cache of {args.bundle}")
    else:
        print(
            f"added caches {', '.join(result.caches_added)} to {terminal_safe(result.reference)}: "
            f"{result.uploaded} blobs uploaded ({_mb(result.uploaded_bytes)})"
        )
    return 0


def _store_info(args: argparse.Namespace) -> int:
    from .._registry.store import ContentStore

    report = ContentStore().report()
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(
            f"{terminal_safe(str(report.root))}: {report.blobs} blobs ({_mb(report.blob_bytes)}), "
            f"{report.bundles} pulled bundles ({_mb(report.bundle_bytes)}), "
            f"{report.partial_files} interrupted downloads ({_mb(report.partial_bytes)})"
        )
    return 0


def _days_type(text: str) -> float:
    """argparse ``type=`` for ``--older-than``: a finite number of days, 0 or more (NaN compared
    false with every age and pruned everything)."""
    try:
        days = float(text)
    except ValueError:
        days = -1.0
    if not (math.isfinite(days) and days >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of days, 0 or more")
    return days


def _store_prune(args: argparse.Namespace) -> int:
    from .._registry.store import ContentStore

    result = ContentStore().prune(older_than_s=args.older_than * 86400)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"removed {result.removed} files ({_mb(result.removed_bytes)}); "
            f"{result.skipped_in_use} in use were kept"
        )
    return 0
