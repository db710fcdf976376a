"""Manifest fields the conformance suite does not reach case by case: ``equal_dims`` groups
(format 1.1), migration records and profile ranges, each refused with the exact message a user
reads (what was found, where, what was expected)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import rtxpack
from rtxpack import DamagedBundleError, ShapeRange

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "make_conformance", ROOT / "scripts/make_conformance.py"
)
assert _spec is not None and _spec.loader is not None
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)

TAIL = "; the bundle is damaged or was not written by rtxpack — rebuild or re-download it"


def _open(tmp_path: Path, raw: bytes) -> rtxpack.Bundle:
    path = tmp_path / "b.rtxpack"
    path.write_bytes(raw)
    return rtxpack.open(path)


def _refused(tmp_path: Path, raw: bytes) -> str:
    with pytest.raises(DamagedBundleError) as info:
        _open(tmp_path, raw).close()
    return str(info.value)


def _two_inputs(equal_dims: Any) -> bytes:
    """The base engine with inputs x [-1, 16] and m [-1, 4] and ``equal_dims``."""
    return mc.with_engine(
        inputs=[
            {"name": "x", "dtype": "float32", "shape": [-1, 16]},
            {"name": "m", "dtype": "float32", "shape": [-1, 4]},
        ],
        profiles=[
            {
                "x": {"min": [1, 16], "opt": [4, 16], "max": [8, 16]},
                "m": {"min": [1, 4], "opt": [4, 4], "max": [8, 4]},
            }
        ],
        equal_dims=equal_dims,
    )


@pytest.mark.parametrize(
    "groups",
    [[], [[["x", 0], ["m", 0]]], [[["x", 1], ["m", 1], ["x", 0]]], [[["x", 0], ["m", 0]]] * 2],
)
def test_equal_dims_groups_that_open(tmp_path: Path, groups: list[Any]) -> None:
    with _open(tmp_path, _two_inputs(groups)) as b:
        assert b.manifest.engines[0].equal_dims == tuple(
            tuple((n, d) for n, d in g) for g in groups
        )


G = "engines[0].equal_dims[0]"
REFUSED_GROUPS = [
    ([[["x", 0], ["m", 2]]], f"{G}[1][1] is 2, expected an integer in [0, 1]"),
    ([[["x", -1], ["m", 0]]], f"{G}[0][1] is -1, expected an integer in [0, 1]"),
    ([[["x", 0], ["z", 0]]], f"{G}[1] is ['z', 0], expected [the name of an input, a dimension]"),
    ([[["x", 0], "m0"]], f"{G}[1] is 'm0', expected [the name of an input, a dimension]"),
    (
        [[["x", 0], ["m", 0, 1]]],
        f"{G}[1] is ['m', 0, 1], expected [the name of an input, a dimension]",
    ),
    ([[["x", 0]]], f"{G} is [['x', 0]], expected two or more distinct [input, dim] pairs"),
    (
        [[["x", 0], ["x", 0]]],
        f"{G} is [['x', 0], ['x', 0]], expected two or more distinct [input, dim] pairs",
    ),
    ([["x", 0]], f"{G}[0] is 'x', expected [the name of an input, a dimension]"),
    (["x"], f"{G} is 'str', expected a list of at most 16384 items"),
]


@pytest.mark.parametrize("groups,says", REFUSED_GROUPS, ids=[s for _, s in REFUSED_GROUPS])
def test_equal_dims_groups_that_are_refused(tmp_path: Path, groups: Any, says: str) -> None:
    assert _refused(tmp_path, _two_inputs(groups)) == f"invalid bundle manifest: {says}{TAIL}"


def _migration(**changes: Any) -> bytes:
    record = {"from": "1.0", "to": "1.1", "rtxpack": "0.2.0", "time": "2026-11-27T09:00:00Z"}
    record.update(changes)
    return mc.edit(lambda m: m.update(migrations=[record]))


def test_a_migration_record_reads_back(tmp_path: Path) -> None:
    with _open(tmp_path, _migration()) as b:
        (m,) = b.manifest.migrations
        assert (m.from_version, m.to_version, m.rtxpack_version, m.time) == (
            "1.0",
            "1.1",
            "0.2.0",
            "2026-11-27T09:00:00Z",
        )


@pytest.mark.parametrize(
    "raw,says",
    [
        (
            mc.edit(lambda m: m.update(migrations=[5])),
            "migrations[0] is 'int', expected a map",
        ),
        (
            mc.edit(lambda m: m.update(migrations=[{"from": "1.0"}])),
            "migrations[0].to is 'missing', expected a value",
        ),
        (
            _migration(time=5),
            "migrations[0].time is 5, expected a string of at most 4096 characters (code points)",
        ),
    ],
    ids=["not a map", "missing", "not a string"],
)
def test_a_bad_migration_record_is_refused(tmp_path: Path, raw: bytes, says: str) -> None:
    assert _refused(tmp_path, raw) == f"invalid bundle manifest: {says}{TAIL}"


def test_a_profile_range_contains_its_bounds_and_nothing_of_another_rank() -> None:
    r = ShapeRange(min=(1, 16), opt=(4, 16), max=(8, 16))
    assert r.contains((1, 16)) and r.contains((8, 16)) and r.contains((4, 16))
    assert not r.contains((0, 16)) and not r.contains((9, 16)) and not r.contains((4, 15))
    assert not r.contains((4,)) and not r.contains((4, 16, 1)) and not r.contains(())
