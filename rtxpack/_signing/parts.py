"""The signable parts of a bundle, named the same way in every bundle a subset pull makes.

    engine/<engine name>     the engine section + its manifest record (strategy, targets, I/O...)
    source/<engine name>     the engine's ONNX source section (+ its external data files, if any)
    samples/<engine name>    its stored sample tensors
    file/<file name>         a user file
    runtime_cache/<id>       a runtime cache section + its record (environment, engine, shapes)

A part is named by records, never by section index, so a bundle with fewer sections (a per-device
pull, a cache removed) names its remaining parts as before. The signed record of an engine is its
manifest map without the layout keys ``section``, ``source`` and ``samples``; that of a cache is
its map without ``section``. Nothing here reads section bytes: a section's digest is its manifest
entry, checked against the bytes whenever they are read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .envelope import Statement

__all__ = ["Part", "bundle_parts", "describe_part", "match", "statement_for"]

#: Section indices in an engine record: where its bytes sit, not what runs. ``source_data`` is
#: signed through the ``source/`` part (its files by name and digest), so dropping the source
#: (a device pull without it, ``drop-source``) leaves the engine's record and signature intact.
_ENGINE_LAYOUT_KEYS = ("section", "source", "samples", "source_data")
_CACHE_LAYOUT_KEYS = ("section",)

#: The optional record fields of docs/format.md and their defaults, by part kind and the map they
#: sit in ("" the record itself). A field at its default and the same field absent are the same
#: record: a writer may write either, and every rewrite writes the default explicitly. Signed and
#: present records are compared without them (docs/signing.md "Normalized records"); a new
#: optional field goes here and in that table.
RECORD_DEFAULTS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "engine": {
        "": {"output_tree": None, "build_options": None, "equal_dims": []},
        "strategy": {"weight_streaming_budget": None},
        "build_options": {
            "weight_streaming": False,
            "tiling_optimization_level": "none",
            "l2_limit_for_tiling": None,
            "max_aux_streams": None,
        },
    },
    "runtime_cache": {"": {"shapes": []}, "environment": {"compute_in_graphics": False}},
}


@dataclass(frozen=True)
class Part:
    name: str
    role: str  # the role that signs it: "engines" or "caches"
    digest: str  # BLAKE3-256 hex of the decoded section bytes (the manifest's digest)
    record: Any = None  # the signed record (engines and caches), else None
    #: Other subjects a statement must name with these digests (a cache: its engine)
    binds: Mapping[str, str] = field(default_factory=dict)


def _hex(raw: Mapping[str, Any], index: int) -> str:
    digest: str = raw["sections"][index]["digest"]
    return digest.split(":", 1)[1]


def normalized(name: str, record: Any) -> Any:
    """``record`` of part ``name`` without the optional fields (RECORD_DEFAULTS) that hold their
    default, in the record and in its nested maps listed there, and for an engine without its
    layout keys (section indices); everything else is kept as is."""
    defaults = RECORD_DEFAULTS.get(name.partition("/")[0])
    if defaults is None or not isinstance(record, dict):
        return record
    if name.startswith("engine/"):  # the bundle's record, or a signed one that carries them
        record = {k: v for k, v in record.items() if k not in _ENGINE_LAYOUT_KEYS}

    def strip(value: dict[str, Any], drop: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if not (k in drop and same(v, drop[k]))}

    out = {
        k: strip(v, defaults[k]) if k and k in defaults and isinstance(v, dict) else v
        for k, v in record.items()
    }
    return strip(out, defaults[""])


def bundle_parts(raw: Mapping[str, Any]) -> dict[str, Part]:
    """The parts of a bundle, from its manifest as plain data (already validated by the reader:
    indices point at sections of the right kind, names are unique)."""
    parts: dict[str, Part] = {}
    engine_digest: dict[str, str] = {}
    for e in raw.get("engines", []):
        name = e["name"]
        engine_digest[name] = _hex(raw, e["section"])
        # normalized() leaves out the layout keys (section indices) of an engine record
        parts[f"engine/{name}"] = Part(
            f"engine/{name}", "engines", engine_digest[name], normalized(f"engine/{name}", e)
        )
        if e.get("source") is not None:
            # The source's external data files (format 1.1) are part of it: what the ONNX
            # Runtime fallback and a rebuild run. Their digests are the source's record.
            data = [[raw["sections"][i]["name"], _hex(raw, i)] for i in e.get("source_data", [])]
            source = {"data": data} if data else None
            parts[f"source/{name}"] = Part(
                f"source/{name}", "engines", _hex(raw, e["source"]), source
            )
        if e.get("samples") is not None:
            parts[f"samples/{name}"] = Part(f"samples/{name}", "engines", _hex(raw, e["samples"]))
    for fname, index in raw.get("files", {}).items():
        parts[f"file/{fname}"] = Part(f"file/{fname}", "engines", _hex(raw, index))
    for c in raw.get("caches", []):
        name = f"runtime_cache/{c['id']}"
        record = {k: v for k, v in c.items() if k not in _CACHE_LAYOUT_KEYS}
        binds = {f"engine/{c['engine']}": engine_digest[c["engine"]]}
        parts[name] = Part(name, "caches", _hex(raw, c["section"]), normalized(name, record), binds)
    return parts


def statement_for(parts: Mapping[str, Part], role: str, signed_at: str = "") -> Statement:
    """What a signer of ``role`` signs: every part of that role, with its record, plus (for
    caches) the engines they belong to as bare subjects."""
    subjects: dict[str, str] = {}
    records: dict[str, Any] = {}
    for part in parts.values():
        if part.role != role:
            continue
        subjects[part.name] = part.digest
        if part.record is not None:
            records[part.name] = part.record
        subjects.update(part.binds)
    return Statement(role, subjects, records, signed_at)


def same(a: Any, b: Any) -> bool:
    """Equal as data, with types kept apart (``true`` is not ``1``, ``1`` is not ``1.0``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def match(statement: Statement, part: Part) -> str | None:
    """Why ``statement`` does not vouch for ``part`` as it is in the bundle, or None if it does.
    The caller only asks for parts the statement names (``part.name in statement.subjects``)."""
    if statement.subjects[part.name] != part.digest:
        return "its section bytes differ from what was signed (the section digest changed)"
    if part.record is None:
        if part.name in statement.records:
            return "its manifest record differs from what was signed (a record was signed for it)"
    else:
        signed = normalized(part.name, statement.records.get(part.name))
        if signed is None:
            return "its manifest record was not signed"
        if not same(signed, part.record):
            if isinstance(signed, dict):
                keys = sorted(
                    k
                    for k in set(signed) | set(part.record)
                    if k not in signed
                    or k not in part.record
                    or not same(signed[k], part.record[k])
                )
                return "its manifest record differs from what was signed in: " + ", ".join(keys)
            return "its manifest record differs from what was signed"
    for name, digest in part.binds.items():
        if statement.subjects.get(name) != digest:
            return f"it was signed for another {describe_part(name)} (the engine's digest differs)"
    return None


def describe_part(name: str) -> str:
    """``engine/main`` -> ``engine 'main'`` (for messages)."""
    kind, _, rest = name.partition("/")
    return f"{kind.replace('_', ' ')} {rest!r}"
