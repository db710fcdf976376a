"""The ``rtxpack`` command line. Each module here registers one group of subcommands."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .._exceptions import RtxpackError, RtxpackWarning
from .._version import __version__
from . import (
    _bundle_cmds,
    _cache_cmds,
    _check_cmds,
    _epcontext_cmds,
    _migrate_cmds,
    _registry_cmds,
    _sign_cmds,
)
from ._bundle_cmds import terminal_safe

__all__ = ["main"]

_GROUPS = (
    _bundle_cmds,
    _check_cmds,
    _cache_cmds,
    _migrate_cmds,
    _epcontext_cmds,
    _registry_cmds,
    _sign_cmds,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtxpack",
        description="Ship NVIDIA TensorRT-RTX engines as one safe, versioned bundle file.",
    )
    parser.add_argument("--version", action="version", version=f"rtxpack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in _GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 failure, 2 usage, 130 interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    usage = _sign_cmds.trust_usage_error(args) or _bundle_cmds.build_usage_error(args)
    if usage is not None:  # flags argparse cannot relate: a usage error, one line, exit 2
        print(f"rtxpack {args.command}: error: {usage}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            status: int = args.func(args)
        return status
    except RtxpackError as exc:
        print(f"rtxpack: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rtxpack: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except OSError as exc:  # e.g. an input file that cannot be read: one line, not a traceback
        print(f"rtxpack: error: {terminal_safe(str(exc))}", file=sys.stderr)
        return 1


def _show_warning(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    """rtxpack's warnings (a dropped signature, a fallback...) as one line on stderr."""
    if issubclass(category, RtxpackWarning):
        # Many warnings start with "rtxpack: " for Python users; the CLI's prefix says it already.
        text = str(message).removeprefix("rtxpack: ")
        print(f"rtxpack: warning: {terminal_safe(text)}", file=sys.stderr)
    else:
        _default_showwarning(message, category, *args, **kwargs)


_default_showwarning = warnings.showwarning


def run() -> None:
    sys.exit(main())
