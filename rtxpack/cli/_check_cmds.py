"""`rtxpack check` commands (registered by the module that implements them)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    pass
