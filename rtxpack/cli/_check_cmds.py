"""``rtxpack check``: will these bundles run on a machine? One row per bundle and engine."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .._checks.check import run_check
from .._checks.machine import gpu_usable, local_target, missing_locally
from .._checks.report import CompatibilityReport
from .._checks.target import Target
from .._exceptions import InvalidArgumentError
from .._facts import DRIVER_FLOOR, same_release
from ._bundle_cmds import terminal_safe

__all__ = [
    "add_target_flags",
    "target_part",
    "describe_target",
    "render_table",
    "register",
    "target_from_args",
]

_REASON_WIDTH = 72

_EPILOG = """\
The target is this machine unless flags describe another one. Flags not given default to
what is detected here (installed TensorRT-RTX, first GPU, NVIDIA driver, OS), so
  rtxpack check *.rtxpack --trt-version 1.8.0.20
answers "which bundles still load after I upgrade TensorRT-RTX here?", and
  rtxpack check *.rtxpack --cc 8.9 --gpu "RTX 4090" --driver 581.42 --os windows
asks about a fleet device. Parts of a described target that are neither given nor detected
are not checked (reported as info). Without flags, a machine with no GPU or no TensorRT-RTX
is reported as such (cannot_run).

Statuses: loads; loads_cold (runs, but no prewarmed runtime cache in the bundle fits);
needs_rebuild (`rtxpack rebuild` fixes it: the bundle carries its source); cannot_run.
Exit status: 0 when every engine of every bundle loads (loads or loads_cold), 1 otherwise.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="will these bundles run here, or on another machine? (CI-friendly)",
        description="Check whether each engine of each bundle can load on a target machine.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("bundles", nargs="+", metavar="BUNDLE", help="bundle files to check")
    add_target_flags(p)
    p.add_argument("--json", action="store_true", help="print a JSON list of reports")
    from ._sign_cmds import add_trust_args

    add_trust_args(p)
    p.set_defaults(func=_cmd_check)


def target_part(field: str) -> Any:
    """argparse ``type=`` for a flag that describes one part of a machine (``--cc``,
    ``--driver``, ``--trt-version``): checked as ``Target`` checks it, so a malformed value is a
    usage error (exit 2) before any work."""

    def parse(text: str) -> str:
        part: dict[str, Any] = {field: text}
        try:
            Target(**part)
        except InvalidArgumentError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


def add_target_flags(p: argparse.ArgumentParser) -> None:
    """The flags that describe a target machine (``check``, ``pull``)."""
    p.add_argument(
        "--trt-version",
        type=target_part("trt_version"),
        metavar="V",
        help="TensorRT-RTX version on the target (default: here)",
    )
    p.add_argument(
        "--cc",
        type=target_part("compute_capability"),
        metavar="X.Y",
        help="GPU compute capability of the target (default: here)",
    )
    p.add_argument("--gpu", metavar="NAME", help="GPU name of the target (for runtime caches)")
    p.add_argument(
        "--driver",
        type=target_part("driver_version"),
        metavar="V",
        help="NVIDIA driver version, e.g. 580.65.06 (default: here)",
    )
    p.add_argument("--os", choices=["linux", "windows"], help="target OS (default: here)")
    p.add_argument(
        "--cuda",
        type=int,
        choices=sorted(DRIVER_FLOOR),
        help="CUDA major version of the target's TensorRT-RTX build (default: this machine's, "
        "when the target runs the TensorRT-RTX release installed here; else unknown)",
    )
    p.add_argument(
        "--cig",
        action="store_true",
        help="the target runs engines in a CUDA context with Compute-in-Graphics enabled "
        "(runtime caches must have been made in one)",
    )


def target_from_args(args: argparse.Namespace, here: Target) -> tuple[Target, frozenset[str], bool]:
    """(target, parts known to be missing, ask this machine's runtime?) from the flags."""
    given = [args.trt_version, args.cc, args.gpu, args.driver, args.os, args.cuda]
    if all(v is None for v in given) and not args.cig:
        return here, missing_locally(here), gpu_usable(here)
    gpu_given = args.cc is not None or args.gpu is not None
    os_given = args.os is not None
    trt_version = args.trt_version or here.trt_version
    cuda = args.cuda
    if cuda is None and trt_version is not None and here.trt_version is not None:
        cuda = here.cuda_major if same_release(trt_version, here.trt_version) else None
    target = Target(
        trt_version=trt_version,
        compute_capability=args.cc if gpu_given else here.compute_capability,
        driver_version=args.driver or here.driver_version,
        os=args.os if os_given else here.os,
        gpu_name=args.gpu if gpu_given else here.gpu_name,
        platform=here.platform if not os_given or args.os == here.os else None,
        cuda_major=cuda,
        compute_in_graphics=args.cig,
    )
    return target, frozenset(), False


def _cmd_check(args: argparse.Namespace) -> int:
    target, missing, ask = target_from_args(args, local_target())
    from ._sign_cmds import trust_from_args

    trust = trust_from_args(args)
    reports = [
        run_check(b, target, missing=missing, ask_runtime=ask, trust=trust) for b in args.bundles
    ]
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=2))
    else:
        print(terminal_safe(render_table(reports)))
    return 0 if all(r.can_load for r in reports) else 1


def describe_target(target: Target) -> str:
    """One line: ``TensorRT-RTX 1.7.1.116 | RTX 4090 (CC 8.9) | driver 581.42 | windows``."""
    gpu = target.gpu_name or ""
    cc = f"CC {target.compute_capability}" if target.compute_capability else "CC unknown"
    parts = [
        f"TensorRT-RTX {target.trt_version or 'unknown'}",
        f"{gpu} ({cc})" if gpu else ("GPU unknown" if not target.compute_capability else cc),
        f"driver {target.driver_version or 'unknown'}",
        target.platform or target.os or "OS unknown",
    ]
    return " | ".join(parts)


def _short(text: str, width: int = _REASON_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def render_table(reports: Sequence[CompatibilityReport]) -> str:
    """The people-facing ``rtxpack check`` output: a table (BUNDLE, ENGINE, STATUS, REASON),
    then every finding of every bundle, then a one-line summary."""
    rows = [("BUNDLE", "ENGINE", "STATUS", "REASON")]
    for r in reports:
        for v in r.engines:
            reason = "-"
            if v.reasons:  # the ENGINE column already names the engine
                reason = _short(v.reasons[0].removeprefix(f"engine {v.engine!r}: "))
            rows.append((r.bundle, v.engine or "-", v.status, reason))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines: list[str] = []
    targets = {r.target for r in reports}
    if len(targets) == 1:
        lines += [f"Target: {describe_target(next(iter(targets)))}", ""]
    lines += [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3] for row in rows
    ]
    for r in reports:
        version = f" (format {r.format_version})" if r.format_version else ""
        lines += ["", f"{r.bundle}{version}"]
        if len(targets) > 1:
            lines.append(f"  target: {describe_target(r.target)}")
        if not r.findings:
            lines.append("  no findings")
        for f in r.findings:
            where = f" [{f.engine}]" if f.engine else ""
            message = f.message.removeprefix(f"engine {f.engine!r}: ")
            lines.append(f"  {f.severity:<7}  {f.code}{where}: {message}")
    verdicts = [v.status for r in reports for v in r.engines]
    counts = ", ".join(f"{verdicts.count(s)} {s}" for s in _STATUS_ORDER if s in verdicts)
    lines += ["", f"{len(reports)} bundle(s), {len(verdicts)} engine(s): {counts}"]
    return "\n".join(lines)


_STATUS_ORDER = ("loads", "loads_cold", "needs_rebuild", "cannot_run")
