"""What a model's ``forward`` returned (a tensor, a tuple, a dict, nested), as plain data.

A bundle records the structure beside the flat list of engine outputs, so a loaded module returns
what the torch model returned. The encoding is plain data (no pickle, no class names): a leaf is
the index of an engine output; a container is a one-key map::

    0                                   the first output
    {"tuple": [node, ...]}              a tuple (a named tuple is recorded as a tuple)
    {"list": [node, ...]}               a list
    {"dict": [[key, node], ...]}        a dict with string keys, in order
    {"none": null}                      None

``check`` validates a tree read from a bundle (bounded depth and size, every output used exactly
once; a ``ValueError`` says where it is wrong); ``from_spec`` records one from torch's
``TreeSpec`` (refusing a dict with keys that are not strings); ``unflatten`` rebuilds the value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from ._exceptions import InvalidArgumentError
from ._text import string_keys

__all__ = ["check", "from_spec", "leaf_paths", "unflatten"]

MAX_DEPTH = 32
MAX_NODES = 8192


def check(tree: Any, outputs: int) -> Any:
    """``tree`` if it is a valid tree over ``outputs`` engine outputs, each used exactly once."""
    seen: list[int] = []
    count = 0

    def walk(node: Any, where: str, depth: int) -> None:
        nonlocal count
        count += 1
        if depth > MAX_DEPTH or count > MAX_NODES:
            raise ValueError(f"{where}: deeper than {MAX_DEPTH} or more than {MAX_NODES} nodes")
        if isinstance(node, int) and not isinstance(node, bool):
            if not 0 <= node < outputs:
                raise ValueError(f"{where}: output index {node}, expected 0..{outputs - 1}")
            seen.append(node)
            return
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"{where}: expected an output index or a one-key map")
        ((kind, body),) = node.items()
        if kind == "none" and body is None:
            return
        if kind in ("tuple", "list") and isinstance(body, list):
            for i, child in enumerate(body):
                walk(child, f"{where}.{kind}[{i}]", depth + 1)
            return
        if kind == "dict" and isinstance(body, list):
            keys = []
            for i, pair in enumerate(body):
                if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                    raise ValueError(f"{where}.dict[{i}]: expected [string key, node]")
                if len(pair[0]) > 256:
                    raise ValueError(f"{where}.dict[{i}]: key longer than 256 characters")
                keys.append(pair[0])
                walk(pair[1], f"{where}.dict[{pair[0]!r}]", depth + 1)
            if len(set(keys)) != len(keys):
                raise ValueError(f"{where}: repeated dict keys")
            return
        raise ValueError(f"{where}: unknown node {kind!r}")

    walk(tree, "output_tree", 0)
    if sorted(seen) != list(range(outputs)):
        raise ValueError(f"output_tree: must use each of the {outputs} outputs exactly once")
    return tree


def from_spec(spec: Any, none_leaves: Sequence[bool] = ()) -> Any:
    """A tree from a ``torch.utils._pytree.TreeSpec``, leaves numbered in flattening order.

    A dict (or any mapping) whose keys are not all strings is refused with an
    ``InvalidArgumentError`` saying where: plain data cannot say it, and flattening it would
    change what a loaded module returns. ``none_leaves[i]`` says that leaf ``i`` is a constant
    ``None`` (torch.export keeps a returned None as a leaf, while the ONNX graph has no output
    for it): it is recorded as ``{"none": null}`` and numbers no engine output."""
    counter = iter(range(1 << 30))
    leaf = iter(range(1 << 30))

    def walk(s: Any, where: str) -> Any:
        if s.is_leaf():
            i = next(leaf)
            if i < len(none_leaves) and none_leaves[i]:
                return {"none": None}
            return next(counter)
        specs = s.children() if hasattr(s, "children") else s.children_specs
        keys = s.context
        mapping = isinstance(s.type, type) and issubclass(s.type, Mapping)
        if mapping and issubclass(s.type, defaultdict):
            keys = keys[1]  # torch records [default_factory, keys]
        named = isinstance(keys, (list, tuple)) and len(keys) == len(specs)
        if named and mapping:
            string_keys(keys, f"forward's output{where}", "rtxpack records dict outputs by name")
        if named and all(isinstance(k, str) for k in keys):  # dict, OrderedDict, ModelOutput...
            return {"dict": [[k, walk(c, f"{where}[{k!r}]")] for k, c in zip(keys, specs)]}
        if mapping:
            raise InvalidArgumentError(
                f"forward's output{where}: a {s.type.__name__} whose keys rtxpack cannot read; "
                "return a dict with str keys or a tuple"
            )
        kids = [walk(c, f"{where}[{i}]") for i, c in enumerate(specs)]
        if s.type is type(None):
            return {"none": None}
        if s.type is list:
            return {"list": kids}
        return {"tuple": kids}  # a tuple, a named tuple, another container torch flattens

    return walk(spec, "")


def leaf_paths(tree: Any) -> list[str]:
    """A name for each output, from where it sits: dict keys joined with dots, tuple/list
    positions as numbers (``logits``, ``aux.0``); ``output`` for a lone tensor, ``output_0``...
    for the items of a top-level tuple."""
    names: dict[int, str] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, int):
            names[node] = path or "output"
            return
        ((kind, body),) = node.items()
        if kind == "dict":
            for key, child in body:
                walk(child, f"{path}.{key}" if path else key)
        elif kind in ("tuple", "list"):
            for i, child in enumerate(body):
                walk(child, f"{path}.{i}" if path else f"output_{i}")

    walk(tree, "")
    return [names[i] for i in range(len(names))]


def unflatten(tree: Any, outputs: Sequence[Any]) -> Any:
    """The value ``tree`` describes, with engine output ``i`` at leaf ``i``."""
    if isinstance(tree, int):
        return outputs[tree]
    ((kind, body),) = tree.items()
    if kind == "none":
        return None
    if kind == "tuple":
        return tuple(unflatten(c, outputs) for c in body)
    if kind == "list":
        return [unflatten(c, outputs) for c in body]
    return {key: unflatten(c, outputs) for key, c in body}
