"""One set of limits: docs/format.md's Limits table, the JSON Schema and ``rtxpack.Limits`` agree,
and the reader applies each limit given to it (``limits=``) at exactly the bound: the value at the
limit opens, one past it is refused with a message naming the field."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

import rtxpack
from rtxpack import DamagedBundleError, Limits

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "make_conformance", ROOT / "scripts/make_conformance.py"
)
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

SCHEMA = json.loads((ROOT / "schemas/manifest.schema.json").read_text())
DEFAULTS = Limits()


def _prose_table() -> dict[str, int]:
    text = (ROOT / "docs/format.md").read_text()
    table = text[text.index("| what | at most | `Limits` field |") :].split("\n\n")[0]
    rows = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        field = cells[2].strip("`")
        assert field not in rows, f"{field} twice in the Limits table"
        rows[field] = int(re.match(r"[0-9]+", cells[1]).group())  # type: ignore[union-attr]
    return rows


def test_the_prose_table_lists_every_limit_with_its_default() -> None:
    assert _prose_table() == {f.name: getattr(DEFAULTS, f.name) for f in dataclasses.fields(Limits)}


def _at(pointer: str) -> Any:
    node: Any = SCHEMA
    for part in pointer.split("/"):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


#: schema location -> the Limits field whose default it must equal (minus ``offset``)
SCHEMA_LIMITS: list[tuple[str, str, int]] = [
    ("properties/sections/maxItems", "max_sections", 0),
    ("properties/engines/maxItems", "max_engines", 0),
    ("properties/caches/maxItems", "max_caches", 0),
    ("properties/files/maxProperties", "max_files", 0),
    ("properties/metadata/maxProperties", "max_metadata_entries", 0),
    ("properties/migrations/maxItems", "max_migrations", 0),
    ("$defs/engine/properties/inputs/maxItems", "max_io_tensors", 0),
    ("$defs/engine/properties/outputs/maxItems", "max_io_tensors", 0),
    ("$defs/engine/properties/profiles/items/maxProperties", "max_io_tensors", 0),
    ("$defs/cache/properties/shapes/items/maxProperties", "max_io_tensors", 0),
    ("$defs/engine/properties/profiles/maxItems", "max_profiles", 0),
    ("$defs/engine/properties/compute_capabilities/maxItems", "max_compute_capabilities", 0),
    ("$defs/cache/properties/shapes/maxItems", "max_cache_shapes", 0),
    ("$defs/dims/maxItems", "max_rank", 0),
    ("$defs/tensor/properties/shape/maxItems", "max_rank", 0),
    ("$defs/dims/items/maximum", "max_dim", 0),
    ("$defs/tensor/properties/shape/items/maximum", "max_dim", 0),
    ("$defs/shortString/maxLength", "max_string", 0),
    ("$defs/name/maxLength", "max_name", 0),
    ("$defs/section/properties/size/maximum", "max_decoded_section", 0),
    ("$defs/index/maximum", "max_sections", 1),
    # format 1.1 (issue 9)
    ("$defs/engine/properties/source_data/maxItems", "max_sections", 0),
    ("$defs/engine/properties/equal_dims/maxItems", "max_io_tensors", 0),
    ("$defs/engine/properties/equal_dims/items/items/prefixItems/1/maximum", "max_rank", 1),
    ("$defs/outputTree/oneOf/3/properties/dict/items/prefixItems/0/maxLength", "max_name", 0),
]


@pytest.mark.parametrize("pointer,field,minus", SCHEMA_LIMITS, ids=[p for p, _, _ in SCHEMA_LIMITS])
def test_the_schema_states_the_same_limits(pointer: str, field: str, minus: int) -> None:
    assert _at(pointer) == getattr(DEFAULTS, field) - minus


def test_every_numeric_bound_of_the_schema_is_a_limit() -> None:
    """No bound exists only in the schema: each maxItems/maxProperties/maxLength/maximum is listed
    above (or is a fixed fact of the format, such as a u63 offset)."""
    listed = {p for p, _, _ in SCHEMA_LIMITS}
    found = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                sub = f"{path}/{k}" if path else k
                if k in ("maxItems", "maxProperties", "maxLength", "maximum"):
                    found.append(sub)
                walk(v, sub)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")

    walk(SCHEMA, "")
    facts = {
        "$defs/u63/maximum",  # offsets and lengths are below 2**63 (msgpack int64)
        # ranges of TensorRT-RTX settings (RuntimeStrategy / BuildOptions check them), not limits
        "$defs/strategy/properties/weight_streaming_budget/oneOf/2/maximum",
        "$defs/buildOptions/properties/l2_limit_for_tiling/oneOf/1/maximum",
        "$defs/buildOptions/properties/max_aux_streams/oneOf/1/maximum",
    }
    assert set(found) - facts == listed


# ---------------------------------------------------------------------------------------------
# Each limit at the bound and one past it, through ``limits=`` (small bundles, small limits)


def _base() -> bytes:
    return mc.Base().bytes()


def _manifest_length(raw: bytes) -> int:
    return int(struct.unpack_from("<Q", raw, 24)[0])


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _manifest(raw: bytes) -> dict[str, Any]:
    off = struct.unpack_from("<Q", raw, 16)[0]
    return msgpack.unpackb(raw[off:])  # type: ignore[no-any-return]


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _largest(kind: type, value: Any) -> int:
    if isinstance(value, dict):
        own = len(value) if kind is dict else 0
        return max([own, *(_largest(kind, v) for v in value.values())])
    if isinstance(value, list):
        own = len(value) if kind is list else 0
        return max([own, *(_largest(kind, v) for v in value)])
    return 0


def _values(value: Any) -> int:
    """Map keys and items of arrays and maps, at all levels (the root itself not counted)."""
    if isinstance(value, dict):
        return 2 * len(value) + sum(_values(v) for v in value.values())
    if isinstance(value, list):
        return len(value) + sum(_values(v) for v in value)
    return 0


def _cache_shapes(n: int) -> bytes:
    raw = mc.with_env()
    m = _manifest(raw)
    m["caches"][0]["shapes"] = [{"x": [2, 16]}] * n
    return mc.assemble(raw[: struct.unpack_from("<Q", raw, 16)[0]], m)


def _migrations(n: int) -> bytes:
    record = {"from": "1.0", "to": "1.0", "rtxpack": "0", "time": "t"}
    return mc.edit(lambda m: m.update(migrations=[record] * n))


def _ratio(raw: bytes) -> int:
    s = _manifest(raw)["sections"][1]
    return math.ceil(s["size"] / s["length"])


# (field, bundle, the value the bundle reaches, a fragment of the refusal)
Case = tuple[str, Callable[[], bytes], Callable[[bytes], int], str]
CASES: list[Case] = [
    ("max_manifest_bytes", _base, _manifest_length, "manifest of"),
    ("max_sections", _base, lambda r: 3, "sections"),
    ("max_engines", lambda: mc.engines(2), lambda r: 2, "engines"),
    ("max_caches", lambda: mc.caches(2), lambda r: 2, "caches"),
    ("max_files", lambda: mc.files(2), lambda r: 3, "files"),
    ("max_metadata_entries", _base, lambda r: 1, "metadata"),
    ("max_migrations", lambda: _migrations(2), lambda r: 2, "migrations"),
    ("max_io_tensors", _base, lambda r: 1, "inputs"),
    ("max_profiles", _base, lambda r: 1, "profiles"),
    ("max_compute_capabilities", _base, lambda r: 1, "compute_capabilities"),
    ("max_cache_shapes", lambda: _cache_shapes(3), lambda r: 3, "shapes"),
    ("max_rank", _base, lambda r: 2, "shape"),
    ("max_dim", _base, lambda r: 16, "shape"),
    ("max_string", _base, lambda r: max(map(len, _strings(_manifest(r)))), "code points"),
    ("max_name", _base, lambda r: len("notes.txt"), "name"),
    ("max_depth", _base, lambda r: _depth(_manifest(r)) - 1, "levels"),
    ("max_array", _base, lambda r: _largest(list, _manifest(r)), "items per array"),
    ("max_map", _base, lambda r: _largest(dict, _manifest(r)), "entries per map"),
    ("max_values", _base, lambda r: _values(_manifest(r)), "values"),
    ("max_decoded_section", _base, lambda r: len(mc.ENGINE), "size"),
    ("max_zstd_ratio", _base, _ratio, "more than zstd can produce"),
]


def test_every_limit_has_a_bound_case() -> None:
    assert {c[0] for c in CASES} == {f.name for f in dataclasses.fields(Limits)}


@pytest.mark.parametrize("field,build,reached,says", CASES, ids=[c[0] for c in CASES])
def test_a_limit_given_to_open_applies_at_exactly_the_bound(
    tmp_path: Path,
    field: str,
    build: Callable[[], bytes],
    reached: Callable[[bytes], int],
    says: str,
) -> None:
    raw = build()
    path = tmp_path / "b.rtxpack"
    path.write_bytes(raw)
    value = reached(raw)
    with rtxpack.open(path, limits=dataclasses.replace(DEFAULTS, **{field: value})) as b:
        b.verify()
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.open(path, limits=dataclasses.replace(DEFAULTS, **{field: value - 1}))
    assert says in str(info.value).replace(str(path), "<bundle>")


# ---------------------------------------------------------------------------------------------
# How a message shows what it found


@pytest.mark.parametrize("nines", [76, 77])
def test_a_found_value_is_shown_whole_up_to_80_characters_then_cut(
    tmp_path: Path, nines: int
) -> None:
    path = tmp_path / "b.rtxpack"
    path.write_bytes(mc.with_env(compute_capability="8." + "9" * nines))
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.open(path)
    shown = "'8." + "9" * 76 + "'" if nines == 76 else "'8." + "9" * 74 + "..."
    assert str(info.value) == (
        f"invalid bundle manifest: caches[0].environment.compute_capability is {shown}, "
        r"expected a string matching ^[0-9]{1,2}\.[0-9]{1,2}$; the bundle is damaged or was not "
        "written by rtxpack — rebuild or re-download it"
    )


@pytest.mark.parametrize("depth", [2, 41, 42])
def test_a_bad_value_is_named_by_its_path_down_to_41_levels(tmp_path: Path, depth: int) -> None:
    """(Deeper than a reader with the default limits allows: the path search in messages stops
    at 41 levels, whatever ``max_depth`` a caller sets.)"""
    value: Any = math.nan
    for _ in range(depth - 1):
        value = [value]
    path = tmp_path / "b.rtxpack"
    path.write_bytes(mc.edit(lambda m: m.update(future=value)))
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.open(path, limits=Limits(max_depth=64))
    where = "future" + "[0]" * (depth - 1) if depth <= 41 else "manifest"
    assert str(info.value) == (
        f"{path}: invalid bundle manifest: {where} is nan, expected a finite number (no NaN or "
        "infinity); the bundle is damaged or hostile"
    )
