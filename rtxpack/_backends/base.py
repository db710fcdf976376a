"""The I/O contract of a loaded engine, shared by the TensorRT-RTX and ONNX Runtime backends.

A ``Signature`` is the engine's inputs, outputs and optimization profiles. The helpers here turn
call arguments into tensors in input order, check each one (device, dtype, rank, every dimension
against the profiles) with an error that names the input and says what is allowed, pick the
profile that fits, and shape the outputs the way the caller asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from .. import _tree
from .._exceptions import TensorMismatchError
from .._format.manifest import EngineInfo, ShapeRange, TensorSpec

__all__ = [
    "Signature",
    "bind_inputs",
    "check_tensors",
    "choose_profile",
    "pack_outputs",
    "torch_dtype",
]

_TORCH_DTYPES = {
    "float32": "float32",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int8": "int8",
    "int32": "int32",
    "int64": "int64",
    "bool": "bool",
    "uint8": "uint8",
    "float8_e4m3fn": "float8_e4m3fn",
    "float4_e2m1fn_x2": "float4_e2m1fn_x2",
    "float8_e8m0fnu": "float8_e8m0fnu",
}


def torch_dtype(name: str) -> torch.dtype | None:
    """The torch dtype for an rtxpack dtype name, or None if torch has none (e.g. int4)."""
    attr = _TORCH_DTYPES.get(name)
    return getattr(torch, attr, None) if attr else None


@dataclass(frozen=True)
class Signature:
    """Inputs (in the engine's order), outputs, and the optimization profiles of the inputs.

    With no profiles, fixed dimensions must match exactly and dynamic ones (-1) take any size.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    profiles: tuple[Mapping[str, ShapeRange], ...] = ()
    #: groups of (input, dim) the model requires to be equal (``EngineInfo.equal_dims``)
    equal_dims: tuple[tuple[tuple[str, int], ...], ...] = ()

    @classmethod
    def from_engine_info(cls, info: EngineInfo) -> Signature:
        return cls(info.inputs, info.outputs, info.profiles, info.equal_dims)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


def _show(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def bind_inputs(sig: Signature, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Any]:
    """Positional tensors in input order and/or keyword tensors by name -> a list in input order."""
    names = sig.input_names
    if len(args) > len(names):
        raise TensorMismatchError(
            f"got {len(args)} positional inputs, the engine takes {len(names)}: {', '.join(names)}"
        )
    bound: dict[str, Any] = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise TensorMismatchError(
                f"unknown input {key!r}; the engine's inputs are: {', '.join(names)}"
            )
        if key in bound:
            raise TensorMismatchError(f"input {key!r} given both by position and by name")
        bound[key] = value
    missing = [n for n in names if n not in bound]
    if missing:
        raise TensorMismatchError(
            f"missing input(s) {', '.join(map(repr, missing))}; the engine takes "
            f"{', '.join(names)} (positionally in that order, or by name)"
        )
    return [bound[n] for n in names]


def check_tensors(sig: Signature, tensors: Sequence[Any], device: torch.device) -> None:
    """Each tensor is a torch.Tensor on ``device`` with the input's dtype, rank and fixed dims."""
    for spec, t in zip(sig.inputs, tensors):
        if not isinstance(t, torch.Tensor):
            raise TensorMismatchError(
                f"input {spec.name!r}: got {type(t).__name__}, expected a torch.Tensor "
                f"({spec.dtype}{_show(spec.shape)})"
            )
        if t.layout != torch.strided:
            raise TensorMismatchError(
                f"input {spec.name!r} is a {str(t.layout).removeprefix('torch.')} tensor; "
                "engines take dense tensors: pass t.to_dense()"
            )
        if t.device.type != device.type or (
            device.index is not None and t.device.index not in (None, device.index)
        ):
            raise TensorMismatchError(
                f"input {spec.name!r} is on {t.device}, this module runs on {device}; "
                f"move it with .to({str(device)!r})"
            )
        want = torch_dtype(spec.dtype)
        if want is None:
            raise TensorMismatchError(
                f"input {spec.name!r} has dtype {spec.dtype} in the engine, which torch cannot "
                "hand to it; this engine cannot be called from torch"
            )
        if t.dtype != want:
            raise TensorMismatchError(
                f"input {spec.name!r} has dtype {str(t.dtype).removeprefix('torch.')}, "
                f"the engine expects {spec.dtype}; convert it with .to(torch.{spec.dtype})"
            )
        if t.dim() != len(spec.shape):
            raise TensorMismatchError(
                f"input {spec.name!r} has rank {t.dim()} (shape {_show(t.shape)}), the engine "
                f"expects rank {len(spec.shape)} ({_show(spec.shape)}, -1 = any size in the "
                "profile's range)"
            )
        for d, (want_d, got_d) in enumerate(zip(spec.shape, t.shape)):
            if want_d != -1 and want_d != got_d:
                raise TensorMismatchError(
                    f"input {spec.name!r}: dim {d} is {got_d}, the engine needs exactly {want_d} "
                    f"(shape {_show(spec.shape)})"
                )


def check_equal_dims(sig: Signature, shapes: Sequence[tuple[int, ...]]) -> None:
    """Dimensions the model requires to be equal (one symbolic dimension, e.g. the batch of two
    inputs) are equal, else a ``TensorMismatchError`` naming both (before the backend fails)."""
    by_name = dict(zip(sig.input_names, shapes))
    for group in sig.equal_dims:
        sizes = [(n, d, by_name[n][d]) for n, d in group if n in by_name and d < len(by_name[n])]
        if len({size for _, _, size in sizes}) > 1:
            (n0, d0, s0), (n1, d1, s1) = next(
                (sizes[0], x) for x in sizes[1:] if x[2] != sizes[0][2]
            )
            raise TensorMismatchError(
                f"input {n1!r}: dim {d1} is {s1}, but the model requires it to equal dim {d0} of "
                f"input {n0!r}, which is {s0}; pass inputs of matching sizes"
            )


def choose_profile(sig: Signature, shapes: Sequence[tuple[int, ...]]) -> int:
    """Index of the first optimization profile every input shape fits; else a precise error.

    Dimensions the model requires to be equal are checked first (``check_equal_dims``)."""
    check_equal_dims(sig, shapes)
    if not sig.profiles:
        return 0
    by_name = dict(zip(sig.input_names, shapes))
    for i, prof in enumerate(sig.profiles):
        if all(rng.contains(by_name[n]) for n, rng in prof.items() if n in by_name):
            return i
    # Nothing fits: explain, for every profile, the first input and dim that falls outside.
    reasons = []
    for i, prof in enumerate(sig.profiles):
        for name in sig.input_names:
            rng = prof.get(name)
            if rng is None or rng.contains(by_name[name]):
                continue
            shape = by_name[name]
            for d, (lo, got, hi) in enumerate(zip(rng.min, shape, rng.max)):
                if not lo <= got <= hi:
                    reasons.append(
                        f"input {name!r}: dim {d} is {got}, profile {i} allows {lo}..{hi}"
                    )
                    break
            break
    hint = (
        "call with shapes inside a profile, or rebuild the bundle with wider shapes "
        "(save(..., shapes=...) / rtxpack build --shape)"
    )
    raise TensorMismatchError("; ".join(reasons) + f" — {hint}")


def pack_outputs(
    names: Sequence[str], tensors: Sequence[Any], as_dict: bool, tree: Any = None
) -> Any:
    """A dict by name when asked; else what the model's ``forward`` returned when the bundle
    records it (``tree``: dict keys, tuples, nesting); else one tensor for one output, a tuple
    for several."""
    if as_dict:
        return dict(zip(names, tensors))
    if tree is not None:
        return _tree.unflatten(tree, tensors)
    if len(tensors) == 1:
        return tensors[0]
    return tuple(tensors)


_M = TypeVar("_M", bound="EngineModule")


class EngineModule(torch.nn.Module):
    """What both backends share: the signature's names and ``with``-statement use."""

    backend = ""
    signature: Signature

    @property
    def input_names(self) -> tuple[str, ...]:
        return self.signature.input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self.signature.output_names

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _M) -> _M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
