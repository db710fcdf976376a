"""I/O validation and profile choice shared by both backends (rtxpack._io)."""

from __future__ import annotations

import pytest
import torch

from rtxpack import ShapeRange, TensorMismatchError, TensorSpec
from rtxpack._backends.base import (
    Signature,
    bind_inputs,
    check_tensors,
    choose_profile,
    pack_outputs,
)

SIG = Signature(
    inputs=(TensorSpec("x", "float32", (-1, 3, -1)), TensorSpec("mask", "bool", (-1,))),
    outputs=(TensorSpec("y", "float32", (-1, 4)), TensorSpec("n", "int64", (1,))),
    profiles=(
        {
            "x": ShapeRange((1, 3, 8), (4, 3, 16), (8, 3, 32)),
            "mask": ShapeRange((1,), (4,), (8,)),
        },
        {
            "x": ShapeRange((9, 3, 8), (16, 3, 16), (64, 3, 64)),
            "mask": ShapeRange((9,), (16,), (64,)),
        },
    ),
)
CPU = torch.device("cpu")


def inputs(batch: int, length: int = 16) -> list[torch.Tensor]:
    return [torch.zeros(batch, 3, length), torch.ones(batch, dtype=torch.bool)]


def test_positional_keyword_and_mixed_binding_follow_input_order() -> None:
    x, m = inputs(2)
    assert bind_inputs(SIG, [x, m], {}) == [x, m]
    assert bind_inputs(SIG, [], {"mask": m, "x": x}) == [x, m]
    assert bind_inputs(SIG, [x], {"mask": m}) == [x, m]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1, 2, 3), {}, "got 3 positional inputs, the engine takes 2: x, mask"),
        ((), {"x": 1}, "missing input(s) 'mask'"),
        ((), {"x": 1, "mask": 2, "z": 3}, "unknown input 'z'; the engine's inputs are: x, mask"),
        ((1,), {"x": 1, "mask": 2}, "input 'x' given both by position and by name"),
    ],
)
def test_binding_errors_name_the_problem(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(TensorMismatchError) as err:
        bind_inputs(SIG, args, kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        ([[1.0], torch.ones(2, dtype=torch.bool)], "input 'x': got list, expected a torch.Tensor"),
        (
            [torch.zeros(2, 3, 16, dtype=torch.float16), torch.ones(2, dtype=torch.bool)],
            "input 'x' has dtype float16, the engine expects float32",
        ),
        (
            [torch.zeros(2, 3), torch.ones(2, dtype=torch.bool)],
            "input 'x' has rank 2 (shape [2, 3]), the engine expects rank 3",
        ),
        (
            [torch.zeros(2, 4, 16), torch.ones(2, dtype=torch.bool)],
            "input 'x': dim 1 is 4, the engine needs exactly 3",
        ),
        ([torch.zeros(2, 3, 16), torch.ones(2)], "input 'mask' has dtype float32"),
        (
            [torch.zeros(2, 3, 16).to_sparse(), torch.ones(2, dtype=torch.bool)],
            "input 'x' is a sparse_coo tensor; engines take dense tensors",
        ),
    ],
)
def test_tensor_checks_say_what_was_given_and_expected(tensors: list, message: str) -> None:
    with pytest.raises(TensorMismatchError) as err:
        check_tensors(SIG, tensors, CPU)
    assert message in str(err.value)


def test_device_is_checked() -> None:
    with pytest.raises(TensorMismatchError, match=r"input 'x' is on cpu, this module runs on cuda"):
        check_tensors(SIG, inputs(2), torch.device("cuda"))
    check_tensors(SIG, inputs(2), CPU)  # the right device passes


def test_first_fitting_profile_is_chosen() -> None:
    shapes = lambda b, n=16: [(b, 3, n), (b,)]  # noqa: E731
    assert choose_profile(SIG, shapes(1)) == 0
    assert choose_profile(SIG, shapes(8, 32)) == 0
    assert choose_profile(SIG, shapes(9)) == 1
    with pytest.raises(TensorMismatchError, match=r"dim 0 is 8, profile 1 allows 9\.\.64"):
        choose_profile(SIG, shapes(8, 64))  # dim 2 fits only profile 1, batch 8 only profile 0


def test_no_profile_fits_explains_every_profile() -> None:
    with pytest.raises(TensorMismatchError) as err:
        choose_profile(SIG, [(100, 3, 16), (100,)])
    text = str(err.value)
    assert "input 'x': dim 0 is 100, profile 0 allows 1..8" in text
    assert "input 'x': dim 0 is 100, profile 1 allows 9..64" in text
    assert "rebuild the bundle with wider shapes" in text


def test_mixed_inputs_must_fit_the_same_profile() -> None:
    with pytest.raises(TensorMismatchError, match=r"input 'mask': dim 0 is 20, profile 0"):
        choose_profile(SIG, [(4, 3, 16), (20,)])


def test_without_profiles_any_dynamic_size_fits() -> None:
    sig = Signature(SIG.inputs, SIG.outputs)
    assert choose_profile(sig, [(1000, 3, 5), (7,)]) == 0


def test_output_packing() -> None:
    a, b = torch.zeros(1), torch.ones(1)
    assert pack_outputs(["y"], [a], False) is a
    assert pack_outputs(["y", "n"], [a, b], False) == (a, b)
    assert pack_outputs(["y", "n"], [a, b], True) == {"y": a, "n": b}


def test_a_dtype_torch_cannot_feed_is_said_plainly() -> None:
    sig = Signature((TensorSpec("w", "int4", (2,)),), (TensorSpec("y", "float32", (2,)),), ())
    with pytest.raises(TensorMismatchError, match="torch cannot hand to it"):
        check_tensors(sig, [torch.zeros(2, dtype=torch.int8)], CPU)
