"""Small helpers shared by every layer: quoting untrusted text, version numbers, timestamps."""

from __future__ import annotations

import datetime as _dt
import re

from ._exceptions import InvalidArgumentError

__all__ = ["shorten", "utc_now", "version_tuple"]

_VERSION_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,5}$")


def shorten(value: object, limit: int = 60) -> object:
    """A value fit to quote in a message: long strings are cut (they may come from anyone)."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def version_tuple(text: str) -> tuple[int, ...]:
    """``"1.7.1.116"`` -> (1, 7, 1, 116); raises InvalidArgumentError on anything else."""
    if not isinstance(text, str) or not _VERSION_RE.match(text.strip()):
        raise InvalidArgumentError(
            f"version {shorten(text)!r}: expected numbers separated by dots, e.g. 1.7.1"
        )
    return tuple(int(p) for p in text.strip().split("."))


def utc_now() -> str:
    """The current UTC time as the manifest records it: ``2026-01-31T12:00:00Z``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
