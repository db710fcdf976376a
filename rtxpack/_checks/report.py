"""What a compatibility check returns: findings, per-engine verdicts, and the report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._exceptions import InvalidArgumentError
from .target import Target

__all__ = [
    "LOADABLE",
    "SEVERITIES",
    "STATUSES",
    "CompatibilityReport",
    "EngineVerdict",
    "Finding",
]

SEVERITIES = ("error", "warning", "info")


#: Per-engine verdicts, best first.
STATUSES = ("loads", "loads_cold", "needs_rebuild", "cannot_run")


LOADABLE = ("loads", "loads_cold")


@dataclass(frozen=True)
class Finding:
    """One result of a check: a stable dotted ``code``, a severity and a message for people.

    The message says what was found, what was needed and what to do.
    """

    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    engine: str | None = None  # None: about the whole bundle

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise InvalidArgumentError(
                f"severity {self.severity!r}: expected one of {', '.join(SEVERITIES)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "engine": self.engine,
        }


@dataclass(frozen=True)
class EngineVerdict:
    """What will happen to one engine on the target.

    ``status``: ``loads``; ``loads_cold`` (runs, but no prewarmed runtime cache in the bundle fits
    the target, so the first runs compile kernels); ``needs_rebuild`` (will not load, but the
    bundle carries its model source, so ``rtxpack rebuild`` fixes it); ``cannot_run``.
    ``engine`` is None for a bundle that could not be read at all.
    """

    engine: str | None
    status: str
    reasons: tuple[str, ...] = ()

    @property
    def loads(self) -> bool:
        return self.status in LOADABLE

    def to_dict(self) -> dict[str, Any]:
        return {"engine": self.engine, "status": self.status, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class CompatibilityReport:
    """Everything ``check`` found about one bundle on one target."""

    bundle: str
    target: Target
    findings: tuple[Finding, ...]
    engines: tuple[EngineVerdict, ...]
    format_version: str | None = None  # None when the header could not be read

    @property
    def ok(self) -> bool:
        """No error findings: every checked engine can load (see ``engines`` for caches)."""
        return not self.errors

    @property
    def can_load(self) -> bool:
        """Every engine loads (``loads`` or ``loads_cold``)."""
        return bool(self.engines) and all(v.loads for v in self.engines)

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "warning")

    def verdict(self, engine: str) -> EngineVerdict:
        for v in self.engines:
            if v.engine == engine:
                return v
        names = ", ".join(str(v.engine) for v in self.engines) or "none"
        raise InvalidArgumentError(f"no engine named {engine!r} in this report (it has: {names})")

    def summary(self) -> str:
        """One paragraph for an exception message: the errors, or that all engines load."""
        if self.ok:
            return f"{self.bundle}: every engine can load on the target"
        lines = [f"{self.bundle} cannot run on the target:"]
        lines += [f"- {f.message}" for f in self.errors]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "format_version": self.format_version,
            "target": self.target.to_dict(),
            "ok": self.ok,
            "can_load": self.can_load,
            "engines": [v.to_dict() for v in self.engines],
            "findings": [f.to_dict() for f in self.findings],
        }
