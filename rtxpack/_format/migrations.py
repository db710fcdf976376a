"""Format migrations: the steps that carry the raw manifest of an older format version forward.

A step turns the raw manifest (the msgpack map, before typed parsing) of one version into that of
the next. The reader applies them (so ``rtxpack.open`` reads every version listed in ``STEPS``)
and ``rtxpack migrate`` rewrites a file with them. CONTRIBUTING.md says how to add one, with its
golden bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["STEPS", "Step", "steps_from", "upgrade_manifest"]


@dataclass(frozen=True)
class Step:
    """Turns the raw manifest of one older format version into that of ``target``.

    ``sections`` may rewrite section payloads if a format change ever needs it (``rtxpack
    migrate`` applies it); it gets the section's kind and decoded bytes and returns new bytes, or
    None to keep the section as it is (the default, and the only case so far).
    """

    target: tuple[int, int]
    manifest: Callable[[dict[str, Any]], dict[str, Any]]
    sections: Callable[[str, bytes], bytes | None] | None = None


def _from_1_0(raw: dict[str, Any]) -> dict[str, Any]:
    """1.0 -> 1.1. Format 1.1 only adds what a 1.0 manifest can do without: the ``signature``
    section kind (docs/signing.md), and issue 9's optional fields, each defaulting to what 1.0
    meant (no ``source_data``, a flat output list, unknown ``build_options``, no ``equal_dims``,
    TensorRT-RTX's default ``weight_streaming_budget``). So nothing changes."""
    return raw


#: Every older format rtxpack wrote, mapped to the step that carries it one version forward.
#: The reader applies the steps, so ``rtxpack.open`` reads every version in this table; each entry
#: comes with a golden bundle under tests/golden/ (docs/migration.md).
STEPS: dict[tuple[int, int], Step] = {
    (1, 0): Step(target=(1, 1), manifest=_from_1_0),
}


def steps_from(version: tuple[int, int]) -> list[Step]:
    """The steps that carry ``version`` to the current format, in order (none for the current
    version or one with no step; a cycle in the table is followed once)."""
    steps: list[Step] = []
    seen = set()
    while version in STEPS and version not in seen:
        seen.add(version)
        steps.append(STEPS[version])
        version = STEPS[version].target
    return steps


def upgrade_manifest(raw: dict[str, Any], version: tuple[int, int]) -> dict[str, Any]:
    """Apply the registered steps from ``version`` on; a version with no step is returned as is."""
    for step in steps_from(version):
        raw = step.manifest(raw)
    return raw
