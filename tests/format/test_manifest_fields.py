"""Manifest fields the conformance suite does not reach case by case: ``equal_dims`` groups
(format 1.1), migration records and profile ranges, each refused with the exact message a user
reads (what was found, where, what was expected)."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
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


# ---------------------------------------------------------------------------------------------
# Every field of every record, missing and of a wrong type: the reader's verdict and exact message
# (tests/format/field_messages.json; after a deliberate change of wording, rewrite it with
# ``python tests/format/test_manifest_fields.py`` and review the diff). A field that may be
# missing reads as "valid".


def _edited(raw: bytes, change: Any) -> bytes:
    off = struct.unpack_from("<Q", raw, 16)[0]
    m = msgpack.unpackb(raw[off:])
    change(m)
    return mc.assemble(raw[:off], m)  # type: ignore[no-any-return]


def _full() -> bytes:
    """The base bundle with a cache (with shapes), a migration record and every engine field."""

    def change(m: dict[str, Any]) -> None:
        m["caches"][0]["shapes"] = [{"x": [4, 16]}]
        m["caches"][0]["environment"]["compute_in_graphics"] = False
        m["migrations"] = [{"from": "1.0", "to": "1.1", "rtxpack": "0.2.0", "time": "t"}]
        m["engines"][0].update(source_data=[], output_tree=None, build_options=None, equal_dims=[])

    return _edited(mc.with_env(), change)


FULL = _full()
RECORDS = {
    "": (),
    "sections[0]": ("sections", 0),
    "engines[0]": ("engines", 0),
    "engines[0].inputs[0]": ("engines", 0, "inputs", 0),
    "engines[0].outputs[0]": ("engines", 0, "outputs", 0),
    "engines[0].profiles[0]['x']": ("engines", 0, "profiles", 0, "x"),
    "engines[0].strategy": ("engines", 0, "strategy"),
    "caches[0]": ("caches", 0),
    "caches[0].environment": ("caches", 0, "environment"),
    "caches[0].shapes[0]": ("caches", 0, "shapes", 0),
    "migrations[0]": ("migrations", 0),
    "files": ("files",),
    "metadata": ("metadata",),
}


def _node(m: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        m = m[part]
    return m


def _field_cases() -> dict[str, bytes]:
    m = msgpack.unpackb(FULL[struct.unpack_from("<Q", FULL, 16)[0] :])
    cases = {}
    for record, path in RECORDS.items():
        if path:

            def whole(m: Any, path: tuple[Any, ...] = path) -> None:
                _node(m, path[:-1])[path[-1]] = 1.5

            cases[f"{record} = 1.5"] = _edited(FULL, whole)
        for key in _node(m, path):

            def drop(m: Any, path: tuple[Any, ...] = path, key: str = key) -> None:
                del _node(m, path)[key]

            def wrong(m: Any, path: tuple[Any, ...] = path, key: str = key) -> None:
                _node(m, path)[key] = 1.5

            cases[f"{record}.{key} missing"] = _edited(FULL, drop)
            cases[f"{record}.{key} = 1.5"] = _edited(FULL, wrong)
    return cases


FIELD_CASES = _field_cases()
FIELD_MESSAGES_FILE = Path(__file__).with_name("field_messages.json")


def _verdict(tmp_path: Path, raw: bytes) -> str:
    path = tmp_path / "b.rtxpack"
    path.write_bytes(raw)
    try:
        with rtxpack.open(path) as b:
            b.verify()
    except rtxpack.RtxpackError as exc:
        return f"{type(exc).__name__}: {str(exc).replace(str(path), '<bundle>')}"
    return "valid"


def test_the_full_bundle_is_valid(tmp_path: Path) -> None:
    assert _verdict(tmp_path, FULL) == "valid"


@pytest.mark.parametrize("case", list(FIELD_CASES))
def test_each_field_missing_or_of_a_wrong_type(tmp_path: Path, case: str) -> None:
    expected = json.loads(FIELD_MESSAGES_FILE.read_text())
    assert _verdict(tmp_path, FIELD_CASES[case]) == expected[case]


def test_every_field_case_has_its_verdict() -> None:
    assert set(json.loads(FIELD_MESSAGES_FILE.read_text())) == set(FIELD_CASES)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        verdicts = {case: _verdict(Path(folder), raw) for case, raw in FIELD_CASES.items()}
    FIELD_MESSAGES_FILE.write_text(json.dumps(verdicts, indent=1, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Rules between fields


def _engine(**changes: Any) -> bytes:
    return mc.with_engine(**changes)


RULES = [
    (
        _engine(inputs=[], profiles=[{}]),
        "engines[0].profiles is '1 profiles', expected no profile when no input is recorded",
    ),
    (
        _engine(profiles=[{"x": {"min": [1, 16], "opt": [4], "max": [8, 16]}}]),
        "engines[0].profiles[0]['x'] is {'min': [1, 16], 'opt': [4], 'max': [8, 16]}, expected "
        "min <= opt <= max, all of one rank",
    ),
    (
        _engine(profiles=[{"x": {"min": [4, 16], "opt": [2, 16], "max": [8, 16]}}]),
        "engines[0].profiles[0]['x'] is {'min': [4, 16], 'opt': [2, 16], 'max': [8, 16]}, "
        "expected min <= opt <= max, all of one rank",
    ),
    (
        _engine(profiles=[{"x": {"min": [1, 16], "opt": [9, 16], "max": [8, 16]}}]),
        "engines[0].profiles[0]['x'] is {'min': [1, 16], 'opt': [9, 16], 'max': [8, 16]}, "
        "expected min <= opt <= max, all of one rank",
    ),
    (
        _edited(
            mc.with_section(b"weights", b"weights", "stored", kind="source_data"),
            lambda m: m["engines"][0].update(source=None, source_data=[3]),
        ),
        "engines[0].source_data is [3], expected no data files without a source",
    ),
    (
        _engine(source_data=[2]),
        "engines[0].source_data[0] is 2, expected the index of a section of kind 'source_data'",
    ),
    (
        _edited(mc.with_env(), lambda m: m["caches"].append(dict(m["caches"][0]))),
        "caches is ['c1', 'c1'], expected unique cache ids",
    ),
]


@pytest.mark.parametrize("raw,says", RULES, ids=[s for _, s in RULES])
def test_rules_between_fields(tmp_path: Path, raw: bytes, says: str) -> None:
    assert _refused(tmp_path, raw) == f"invalid bundle manifest: {says}{TAIL}"


@pytest.mark.parametrize(
    "raw",
    [
        _engine(inputs=[], profiles=[]),
        _engine(profiles=[{"x": {"min": [4, 16], "opt": [4, 16], "max": [4, 16]}}]),
        _engine(profiles=[]),  # profiles not recorded (an imported engine)
        _edited(
            mc.with_section(b"weights", b"weights", "stored", kind="source_data"),
            lambda m: m["engines"][0].update(source_data=[3]),
        ),
    ],
    ids=["no inputs", "a single shape", "no profiles", "source data"],
)
def test_profiles_that_open(tmp_path: Path, raw: bytes) -> None:
    with _open(tmp_path, raw) as b:
        b.verify()


def test_maps_of_inputs_are_bounded_by_max_io_tensors(tmp_path: Path) -> None:
    limits = rtxpack.Limits(max_io_tensors=1)
    rng = {"min": [1, 16], "opt": [4, 16], "max": [8, 16]}
    raw = _engine(profiles=[{"x": rng, "z": rng}])
    path = tmp_path / "b.rtxpack"
    path.write_bytes(raw)
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.open(path, limits=limits)
    assert str(info.value) == (
        f"invalid bundle manifest: engines[0].profiles[0] is '2 inputs', expected at most 1{TAIL}"
    )
    raw = _edited(mc.with_env(), lambda m: m["caches"][0].update(shapes=[{"x": [1], "z": [2]}]))
    path.write_bytes(raw)
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.open(path, limits=limits)
    assert str(info.value) == (
        f"invalid bundle manifest: caches[0].shapes[0] is 2, expected at most 1{TAIL}"
    )
    raw = _edited(mc.with_env(), lambda m: m["caches"][0].update(shapes=[{"x": [1]}]))
    path.write_bytes(raw)
    with rtxpack.open(path, limits=limits) as b:
        assert b.manifest.caches[0].shapes == ({"x": (1,)},)


def _empty_section(m: dict[str, Any], kind: str) -> int:
    """Append an empty section of ``kind`` (empty sections overlap nothing); its index."""
    s = dict(m["sections"][3])
    s.update(kind=kind, name=f"{kind}-{len(m['sections'])}")
    m["sections"].append(s)
    return len(m["sections"]) - 1


def _cache(section: int, cache_id: str) -> dict[str, Any]:
    return {
        "id": cache_id,
        "engine": "main",
        "section": section,
        "environment": mc.environment(),
        "created_at": "2026-11-27T00:00:00Z",
    }


def _twice_samples(m: dict[str, Any]) -> None:
    k = _empty_section(m, "samples")
    m["engines"][0]["samples"] = m["engines"][1]["samples"] = k


def _twice_source_data(m: dict[str, Any]) -> None:
    k = _empty_section(m, "source_data")
    m["engines"][0]["source_data"] = [k, k]


def _twice_cache(m: dict[str, Any]) -> None:
    k = _empty_section(m, "runtime_cache")
    m["caches"] = [_cache(k, "a"), _cache(k, "b")]


# engines(2): sections 0 engine main, 1 its source, 2 file notes.txt, 3 engine e1 (empty)
TWICE = {
    "an engine section": (lambda m: m["engines"][1].update(section=0), [0, 0, 1, 2]),
    "a source": (lambda m: m["engines"][1].update(source=1), [0, 1, 1, 2, 3]),
    "a samples section": (_twice_samples, [0, 1, 2, 3, 4, 4]),
    "a source data file": (_twice_source_data, [0, 1, 2, 3, 4, 4]),
    "a cache section": (_twice_cache, [0, 1, 2, 3, 4, 4]),
    "a user file": (lambda m: m["files"].update({"copy.txt": 2}), [0, 1, 2, 2, 3]),
}


@pytest.mark.parametrize("what", list(TWICE))
def test_a_section_referenced_twice_is_refused(tmp_path: Path, what: str) -> None:
    change, used = TWICE[what]
    assert _refused(tmp_path, _edited(mc.engines(2), change)) == (
        f"invalid bundle manifest: sections is {used}, expected each section referenced at most "
        f"once{TAIL}"
    )


# ---------------------------------------------------------------------------------------------
# Manifest.from_dict on a dict (not decoded by the reader, which refuses some of these first)


def _manifest_dict(raw: bytes) -> dict[str, Any]:
    return msgpack.unpackb(raw[struct.unpack_from("<Q", raw, 16)[0] :])  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "change,says",
    [
        (lambda m: m["metadata"].update({5: "a"}), "metadata key is 5"),
        (
            lambda m: m["engines"][0]["profiles"][0].update(
                {5: m["engines"][0]["profiles"][0]["x"]}
            ),
            "engines[0].profiles[0] key is 5",
        ),
        (lambda m: m["caches"][0].update(shapes=[{5: [1]}]), "caches[0].shapes[0] key is 5"),
    ],
    ids=["metadata", "profile", "cache shapes"],
)
def test_from_dict_refuses_keys_that_are_not_strings(change: Any, says: str) -> None:
    m = _manifest_dict(mc.with_env())
    change(m)
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.Manifest.from_dict(m)
    assert str(info.value) == (
        f"invalid bundle manifest: {says}, expected a string of at most 4096 characters (code "
        f"points){TAIL}"
    )


def test_from_dict_applies_the_given_limits_to_a_cache_environment() -> None:
    m = _manifest_dict(mc.with_env(gpu_name="G" * 100))
    assert rtxpack.Manifest.from_dict(m).caches[0].environment.gpu_name == "G" * 100
    with pytest.raises(DamagedBundleError) as info:
        rtxpack.Manifest.from_dict(m, rtxpack.Limits(max_string=80))
    assert str(info.value) == (
        f"invalid bundle manifest: caches[0].environment.gpu_name is '{'G' * 76}..., expected a "
        f"string of at most 80 characters (code points){TAIL}"
    )
