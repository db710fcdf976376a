"""``migrate``: rewriting a bundle of an older format version in the current one.

The steps themselves live in ``_format.migrations`` (the reader applies them too); this module
rewrites the file, applying the steps that change section payloads, and records the migration.
Format 1.0 is the first format rtxpack wrote, so today there is no step and ``migrate`` only
rewrites the file and records the migration (CONTRIBUTING.md: adding a format step).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from .._format import container
from .._format.manifest import Migration
from .._format.migrations import steps_from
from .._text import utc_now
from .._version import __version__

__all__ = ["Progress", "migrate"]

Progress = Callable[[str], None]


def migrate(
    old: str | os.PathLike[str],
    new: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> Path:
    """Rewrite the bundle ``old`` in the current format as ``new``; returns ``new``.

    Every section is copied byte for byte (digest checked) unless a migration step must change
    it; unknown top-level manifest fields of a newer minor version are kept. The rewrite is
    recorded in ``manifest.migrations``; a bundle already at the current version is copied and
    records nothing. ``new`` may be ``old`` (replaced atomically).
    """
    with container.rewriting(old, new) as (src, writer):
        from_v = src.version  # a newer major was refused by parse_header, naming both
        manifest = src.manifest
        replacements: dict[int, bytes] = {}
        section_steps = [s for s in steps_from(from_v) if s.sections is not None]
        for i, s in enumerate(manifest.sections if section_steps else ()):
            data: bytes | None = None
            for step in section_steps:
                assert step.sections is not None
                changed = step.sections(s.kind, bytes(src.decode(s)) if data is None else data)
                data = data if changed is None else changed
            if data is not None:
                replacements[i] = data
        index = writer.copy_all(src, replacements=replacements)
        record = Migration(
            from_version=container.format_version_str(from_v),
            to_version=container.format_version_str(container.FORMAT_VERSION),
            rtxpack_version=__version__,
            time=utc_now(),
        )
        out = manifest.renumbered(index, tuple(writer.sections))
        current = from_v == container.FORMAT_VERSION  # nothing to migrate: record nothing
        migrations = manifest.migrations if current else (*manifest.migrations, record)
        writer.finish(replace(out, migrations=migrations))
    if progress and current:
        progress(f"{old} is already at the current format {record.to_version}: nothing to migrate")
    elif progress:
        progress(
            f"migrated {old} from format {record.from_version} to {record.to_version}: "
            f"{len(manifest.sections)} sections copied"
            + (f", {len(manifest.extra)} unknown fields kept" if manifest.extra else "")
        )
    return Path(new)
