"""Builder options: validated, recorded as plain data, applied to a real IBuilderConfig."""

from __future__ import annotations

import pytest

from rtxpack import InvalidArgumentError
from rtxpack._build.options import BuildOptions, TilingLevel, build_platform


def test_options_round_trip_and_reach_the_builder_config() -> None:
    import tensorrt_rtx as trt

    opts = BuildOptions(
        weight_streaming=True, tiling_optimization_level="moderate", l2_limit_for_tiling=1 << 20,
        max_aux_streams=0,
    )
    assert opts.tiling_optimization_level is TilingLevel.MODERATE
    assert BuildOptions.from_dict({**opts.to_dict(), "from_a_newer_minor": 1}) == opts
    config = trt.Builder(trt.Logger()).create_builder_config()
    opts.apply(trt, config)
    assert config.get_flag(trt.BuilderFlag.WEIGHT_STREAMING)
    assert config.tiling_optimization_level == trt.TilingOptimizationLevel.MODERATE
    assert config.l2_limit_for_tiling == 1 << 20
    assert config.max_aux_streams == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"weight_streaming": 1},
        {"tiling_optimization_level": "max"},
        {"max_aux_streams": -1},
        {"max_aux_streams": True},
        {"l2_limit_for_tiling": 2**41},
    ],
)
def test_bad_options_are_argument_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgumentError):
        BuildOptions(**kwargs)  # type: ignore[arg-type]


def test_platforms_a_linux_build_can_target() -> None:
    here = "linux_x86_64"
    assert build_platform(None, here) == (here, None)
    assert build_platform("linux", here) == (here, None)
    assert build_platform("windows", here) == ("windows_x86_64", "WINDOWS_AMD64")
    assert build_platform("Windows_AMD64", here) == ("windows_x86_64", "WINDOWS_AMD64")
    with pytest.raises(InvalidArgumentError, match="can target"):
        build_platform("linux_aarch64", here)
