"""Small helpers shared by every layer: quoting untrusted text, version numbers, timestamps."""

from __future__ import annotations

import bisect
import datetime as _dt
import re
from collections.abc import Iterable

from ._exceptions import InvalidArgumentError

__all__ = [
    "NOT_PRINTABLE",
    "is_printable",
    "shorten",
    "shown",
    "size_text",
    "string_keys",
    "terminal_safe",
    "utc_now",
    "version_tuple",
]

_VERSION_RE = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,9}){0,5}$")


def shorten(value: object, limit: int = 60) -> object:
    """A value fit to quote in a message: long strings are cut (they may come from anyone)."""
    if isinstance(value, str) and len(value) > limit:
        return value[: limit - 3] + "..."
    return value


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: any value from outside, quoted in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def string_keys(keys: Iterable[object], what: str, expected: str) -> None:
    """Refuse a map given by the caller with a key that is not a ``str`` (``what`` names the map,
    ``expected`` says what its keys are): nothing is flattened or converted silently."""
    for key in keys:
        if not isinstance(key, str):
            raise InvalidArgumentError(
                f"{what}: a key of type {type(key).__name__} ({shown(key)}); expected str keys "
                f"({expected}): give the keys as strings"
            )


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


#: Code points that names may not contain and that terminal output escapes: Unicode 14.0's
#: general categories Cc, Cf, Cs, Co, Zs (but U+0020 SPACE), Zl and Zp, frozen here as ranges so
#: that the rule is the same on every Python version (docs/format.md, "Names").
NOT_PRINTABLE: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x00A0), (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C),
    (0x06DD, 0x06DD), (0x070F, 0x070F), (0x0890, 0x0891), (0x08E2, 0x08E2), (0x1680, 0x1680),
    (0x180E, 0x180E), (0x2000, 0x200F), (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F),
    (0x3000, 0x3000), (0xD800, 0xF8FF), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0x110BD, 0x110BD),
    (0x110CD, 0x110CD), (0x13430, 0x13438), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001), (0xE0020, 0xE007F), (0xF0000, 0xFFFFD), (0x100000, 0x10FFFD),
)  # fmt: skip
_STARTS = [lo for lo, _ in NOT_PRINTABLE]


def printable_char(c: str) -> bool:
    cp = ord(c)
    i = bisect.bisect_right(_STARTS, cp) - 1
    return i < 0 or cp > NOT_PRINTABLE[i][1]


def is_printable(text: str) -> bool:
    """No code point of ``text`` is in NOT_PRINTABLE (the same answer on every Python)."""
    return (text.isascii() and text.isprintable()) or all(printable_char(c) for c in text)


def terminal_safe(text: str) -> str:
    """``text`` with every non-printable code point (newlines too) escaped as ``\\n``, ``\\x1b``,
    ``\\u202e``...: untrusted text can neither forge lines nor drive the terminal."""
    if is_printable(text):
        return text
    return "".join(c if printable_char(c) else _escape(c) for c in text)


def _escape(c: str) -> str:
    cp = ord(c)
    if c in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c]
    return f"\\x{cp:02x}" if cp < 0x100 else f"\\u{cp:04x}" if cp < 0x10000 else f"\\U{cp:08x}"


def size_text(n: int) -> str:
    """A byte count for people: ``512 B``, ``1.5 KiB``, ... ``3.0 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"
