"""The output tree: what forward returned, recorded as plain data and rebuilt on load."""

from __future__ import annotations

import pytest

from rtxpack import InvalidArgumentError, _tree


def test_check_accepts_a_nested_tree_and_unflatten_rebuilds_it() -> None:
    tree = {"dict": [["logits", 0], ["aux", {"tuple": [1, {"list": [2, {"none": None}]}]}]]}
    assert _tree.check(tree, 3) is tree
    assert _tree.unflatten(tree, ["a", "b", "c"]) == {"logits": "a", "aux": ("b", ["c", None])}
    assert _tree.leaf_paths(tree) == ["logits", "aux.0", "aux.1.0"]


@pytest.mark.parametrize(
    "tree, outputs",
    [
        (1, 1),  # index out of range
        (-1, 1),
        (True, 1),  # a bool is not an index
        ({"tuple": [0, 0]}, 2),  # output used twice, one never
        ({"tuple": [0]}, 2),  # an output never used
        ({"dict": [["a", 0], ["a", 1]]}, 2),  # repeated key
        ({"dict": [[1, 0]]}, 1),  # non-string key
        ({"dict": [["k" * 300, 0]]}, 1),
        ({"set": [0]}, 1),  # unknown container
        ({"tuple": [0], "list": []}, 1),  # two keys
        ({"none": 0}, 0),
        ("0", 1),
    ],
)
def test_check_refuses_hostile_trees(tree: object, outputs: int) -> None:
    with pytest.raises(ValueError):
        _tree.check(tree, outputs)


def test_check_bounds_depth() -> None:
    tree: object = 0
    for _ in range(40):
        tree = {"tuple": [tree]}
    with pytest.raises(ValueError, match="deeper"):
        _tree.check(tree, 1)


def test_from_spec_reads_torch_pytree_specs() -> None:
    torch = pytest.importorskip("torch")
    from collections import namedtuple

    from torch.utils._pytree import tree_flatten

    Pair = namedtuple("Pair", "a b")
    t = torch.zeros(1)
    value = {"logits": t, "aux": (t, [t, {"deep": t}]), "pair": Pair(t, t)}
    leaves, spec = tree_flatten(value)
    tree = _tree.from_spec(spec)
    _tree.check(tree, len(leaves))
    rebuilt = _tree.unflatten(tree, list(range(len(leaves))))
    assert rebuilt == {"logits": 0, "aux": (1, [2, {"deep": 3}]), "pair": (4, 5)}
    assert _tree.leaf_paths(tree) == [
        "logits",
        "aux.0",
        "aux.1.0",
        "aux.1.1.deep",
        "pair.0",
        "pair.1",
    ]
    _, spec = tree_flatten(t)
    assert _tree.from_spec(spec) == 0 and _tree.leaf_paths(0) == ["output"]
    _, spec = tree_flatten((t, t))
    assert _tree.leaf_paths(_tree.from_spec(spec)) == ["output_0", "output_1"]
    _, spec = tree_flatten({1: t})  # int keys: plain data cannot say it, so they are refused
    with pytest.raises(InvalidArgumentError, match=r"output: a key of type int \(1\)"):
        _tree.from_spec(spec)
    _, spec = tree_flatten([{"a": t, "b": {True: t}}])
    with pytest.raises(InvalidArgumentError, match=r"output\[0\]\['b'\]: a key of type bool"):
        _tree.from_spec(spec)


def test_from_spec_records_constant_none_leaves_without_an_output() -> None:
    torch = pytest.importorskip("torch")
    from torch.utils._pytree import tree_flatten

    t = torch.zeros(1)
    # torch.export keeps a returned None as a leaf; the ONNX graph has no output for it
    _, spec = tree_flatten((t, t))
    tree = _tree.from_spec(spec, [False, True])
    assert tree == {"tuple": [0, {"none": None}]}
    assert _tree.check(tree, 1) is tree
    assert _tree.unflatten(tree, ["a"]) == ("a", None)
