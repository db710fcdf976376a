"""Exporting a torch module to ONNX (the dynamo exporter), the first step of building from torch.

The export never serializes the weights: ``weights.split_model`` turns the exported model into a
small graph plus a stream of its weights, read from the module's own tensors. Input names come
from ``forward``'s parameters (and the keyword inputs' names), output names from the structure
``forward`` returns (dict keys, positions), unless the caller names them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _tree
from .._exceptions import BuildError, InvalidArgumentError
from .._format.manifest import ShapeRange
from .._text import string_keys
from .weights import SplitModel, split_model

__all__ = ["Exported", "TorchInputs", "check_output_tree", "export_torch", "torch_inputs"]


@dataclass(frozen=True)
class TorchInputs:
    """Example inputs of a torch module: positional ``args``, keyword ``kwargs``, the
    ``forward`` parameter each one binds to, and the ONNX input name of each (same order)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    params: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def tensors(self) -> tuple[Any, ...]:
        return self.args + tuple(self.kwargs.values())


def _names(value: Any, what: str, count: int) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InvalidArgumentError(f"{what}: expected a list of names, got {value!r}")
    names = tuple(value)
    if not all(isinstance(n, str) and 1 <= len(n) <= 256 and n.isprintable() for n in names):
        raise InvalidArgumentError(
            f"{what}: names must be printable strings of 1 to 256 characters"
        )
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"{what}: names must be unique, got {list(names)}")
    if count >= 0 and len(names) != count:
        raise InvalidArgumentError(
            f"{what}: {len(names)} names for {count} {what.split('_')[0]}s; give one per "
            f"{what.split('_')[0]}"
        )
    return names


def torch_inputs(
    module: Any,
    inputs: Any,
    kwarg_inputs: Mapping[str, Any] | None,
    input_names: Sequence[str] | None,
) -> TorchInputs:
    """Check the example inputs (cheap: before any export) and name them."""
    import torch

    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    elif inputs is None:
        inputs = ()
    elif not isinstance(inputs, (tuple, list)):
        raise InvalidArgumentError(
            f"inputs: expected a tensor or a tuple of tensors, got {type(inputs).__name__}"
        )
    kwargs = dict(kwarg_inputs or {})
    string_keys(kwargs, "kwarg_inputs", "the names of forward's parameters")
    if not inputs and not kwargs:
        raise InvalidArgumentError(
            "a torch.nn.Module source needs example inputs: save(module, path, inputs=(x, ...))"
            " and/or kwarg_inputs={name: tensor}"
        )
    for where, value in [(f"inputs[{i}]", v) for i, v in enumerate(inputs)] + [
        (f"kwarg_inputs[{k!r}]", v) for k, v in kwargs.items()
    ]:
        if not isinstance(value, torch.Tensor):
            raise InvalidArgumentError(
                f"{where}: expected a torch.Tensor, got {type(value).__name__}; every input of an "
                "engine is a tensor (pass constants as module attributes)"
            )
    signature = inspect.signature(module.forward)
    positional = [
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    takes_var_kw = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    if len(inputs) > len(positional) and not any(
        p.kind == p.VAR_POSITIONAL for p in signature.parameters.values()
    ):
        raise InvalidArgumentError(
            f"inputs: {len(inputs)} positional inputs, forward takes {len(positional)} "
            f"({', '.join(positional)})"
        )
    params = positional[: len(inputs)] + [f"input_{i}" for i in range(len(positional), len(inputs))]
    for key in kwargs:
        if key in params:
            raise InvalidArgumentError(f"kwarg_inputs[{key!r}]: also given by position")
        if key not in signature.parameters and not takes_var_kw:
            raise InvalidArgumentError(
                f"kwarg_inputs[{key!r}]: forward has no parameter {key!r} "
                f"(it takes {', '.join(signature.parameters)})"
            )
    params += list(kwargs)
    names = _names(input_names, "input_names", len(params)) or tuple(params)
    return TorchInputs(tuple(inputs), kwargs, tuple(params), names)


def check_output_tree(module: Any, ex: TorchInputs) -> None:
    """Refuse, before the export, a ``forward`` whose value a bundle cannot record (a dict with
    keys that are not strings): ``forward`` runs once in eval mode on fake tensors (shapes only,
    nothing computed). A module fake tensors cannot run is left to the export, whose output
    structure is checked the same way."""
    import torch
    from torch.utils._pytree import tree_structure

    was_training = module.training
    try:
        from torch._subclasses.fake_tensor import FakeTensorMode

        module.eval()
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) as mode:
            args = [mode.from_tensor(t) for t in ex.args]
            kwargs = {k: mode.from_tensor(t) for k, t in ex.kwargs.items()}
            spec = tree_structure(module(*args, **kwargs))
    except Exception:
        return  # e.g. data-dependent control flow: the export decides
    finally:
        module.train(was_training)
    _tree.from_spec(spec)


@dataclass
class Exported:
    """An exported module: the split model (graph + weight stream), the ONNX input and output
    names, and the output tree (plain data, None when plain data cannot say it)."""

    split: SplitModel
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_tree: Any


def _dynamic_shapes(
    ex: TorchInputs, profiles: list[dict[str, ShapeRange]]
) -> dict[str, Any] | None:
    """``torch.export`` dynamic shapes (keyed by forward parameter) from the profiles (keyed by
    input name): a dimension whose min and max differ in any profile is dynamic."""
    import torch

    out: dict[str, Any] = {}
    for param, name, example in zip(ex.params, ex.names, ex.tensors):
        dims: dict[int, tuple[int, int]] = {}
        for prof in profiles:
            rng = prof.get(name)
            if rng is None:
                continue
            if len(rng.min) != example.dim():
                raise InvalidArgumentError(
                    f"shapes[{name!r}] has rank {len(rng.min)}, the example input has rank "
                    f"{example.dim()} (shape {list(example.shape)})"
                )
            for d, (lo, hi) in enumerate(zip(rng.min, rng.max)):
                if lo != hi:
                    old = dims.get(d, (lo, hi))
                    dims[d] = (min(lo, old[0]), max(hi, old[1]))
        out[param] = {
            d: torch.export.Dim(f"{name}_dim{d}", min=lo, max=hi) for d, (lo, hi) in dims.items()
        } or None
    if not any(out.values()):
        return None
    if ex.kwargs:
        return out
    return {p: out[p] for p in ex.params}


def _rename_outputs(model: Any, names: Sequence[str], inputs: Sequence[str]) -> bool:
    """Give the graph's outputs these names; False (nothing changed) if that cannot be done
    safely (a name taken by another value, or an output that is also an input or weight)."""
    graph = model.graph
    outputs = list(graph.outputs)
    taken = {v.name for v in graph.inputs} | set(graph.initializers)
    for node in graph:
        taken.update(v.name for v in node.outputs if v not in outputs)
    if len(outputs) != len(names) or any(n in taken for n in names) or set(names) & set(inputs):
        return False
    if any(v.producer() is None for v in outputs):
        return False
    for value, name in zip(outputs, names):
        value.name = name
    return True


def _unshadow_inputs(model: Any) -> None:
    """Rename outputs that carry an input's name but are another value: the exporter returns an
    input as ``Identity(x) -> x`` once the input is named ``x``, a cycle TensorRT-RTX refuses."""
    graph = model.graph
    inputs = {v.name for v in graph.inputs}
    taken = inputs | set(graph.initializers)
    for node in graph:
        taken.update(v.name for v in node.outputs)
    for value in graph.outputs:
        if value.name in inputs and value not in graph.inputs:
            name, n = f"{value.name}_output", 1
            while name in taken:
                name, n = f"{value.name}_output_{n}", n + 1
            taken.add(name)
            value.name = name


def _nones(exported: Any) -> list[bool]:
    """For each user output of an ``ExportedProgram``: is it a constant None (no ONNX output)?"""
    from torch.export.graph_signature import ConstantArgument, OutputKind

    return [
        isinstance(s.arg, ConstantArgument) and s.arg.value is None
        for s in exported.graph_signature.output_specs
        if s.kind == OutputKind.USER_OUTPUT
    ]


def export_torch(
    module: Any,
    ex: TorchInputs,
    profiles: list[dict[str, ShapeRange]],
    output_names: Sequence[str] | None = None,
) -> Exported:
    """Export ``module`` with the dynamo exporter (in eval mode; its training mode is restored)."""
    import torch

    dynamic = _dynamic_shapes(ex, profiles)
    was_training = module.training
    module.eval()
    try:
        program = torch.onnx.export(
            module,
            ex.args,
            None,
            kwargs=ex.kwargs or None,
            dynamo=True,
            input_names=list(ex.names),
            dynamic_shapes=dynamic,
            verbose=False,
        )
    except Exception as exc:
        raise BuildError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from None
    finally:
        module.train(was_training)
    if program is None:
        raise BuildError("torch.onnx.export returned no program")
    model = program.model
    count = len(model.graph.outputs)
    exported = program.exported_program
    tree = (
        None if exported is None else _tree.from_spec(exported.call_spec.out_spec, _nones(exported))
    )
    if tree is not None:
        try:
            _tree.check(tree, count)
        except ValueError:
            tree = None  # e.g. a non-tensor leaf that is not an ONNX output
    names = _names(output_names, "output_names", count)
    wanted = names or (tuple(_tree.leaf_paths(tree)) if tree is not None else None)
    if wanted and not _rename_outputs(model, wanted, ex.names) and names:
        raise InvalidArgumentError(
            f"output_names: cannot give the exported outputs the names {list(names)} (one is "
            "already the name of an input or an intermediate value); choose others"
        )
    _unshadow_inputs(model)
    return Exported(
        split=split_model(model),
        input_names=tuple(str(v.name) for v in model.graph.inputs),
        output_names=tuple(str(v.name) for v in model.graph.outputs),
        output_tree=tree,
    )
