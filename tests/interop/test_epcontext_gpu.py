"""EPContext models through ONNX Runtime's TensorRT-RTX execution provider, on a real RTX GPU.

Skipped where neither the built-in provider (``onnxruntime.get_available_providers()``) nor the
plugin package ``onnxruntime-ep-nv-tensorrt-rtx`` offers a device. No machine of this project
has one, so these tests have NOT run here (docs/verification.md). On an RTX machine:
``python -m pytest -q -m gpu tests/interop/test_epcontext_gpu.py``.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

import rtxpack
from rtxpack._interop.epcontext import EP_NAME, export_epcontext


def _plugin_devices() -> tuple[list[Any], str]:
    import onnxruntime as ort

    try:
        import onnxruntime_ep_nv_tensorrt_rtx as plugin  # type: ignore[import-not-found]
    except ImportError:
        return [], "the plugin package onnxruntime-ep-nv-tensorrt-rtx is not installed"
    try:
        ort.register_execution_provider_library(plugin.get_ep_name(), plugin.get_library_path())
    except Exception as exc:  # the library cannot load (no driver, wrong platform...)
        return [], f"the plugin library did not load ({type(exc).__name__}: {exc})"
    names = {plugin.get_ep_name(), EP_NAME}
    devices = [d for d in ort.get_ep_devices() if d.ep_name in names]
    return devices, "" if devices else "the plugin found no RTX device on this machine"


def _skip_reason() -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    available = ort.get_available_providers()
    if EP_NAME in available:
        return None
    devices, why = _plugin_devices()
    if devices:
        return None
    return (
        f"needs ONNX Runtime's {EP_NAME} and an RTX GPU: this onnxruntime offers only "
        f"{', '.join(available)}, and {why}"
    )


REASON = _skip_reason()
PROFILE = {  # the provider's own spelling of conftest.MLP_SHAPES
    "nv_profile_min_shapes": "x:1x16",
    "nv_profile_opt_shapes": "x:4x16",
    "nv_profile_max_shapes": "x:8x16",
}
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


def _session(model: Path, options: dict[str, str]) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if EP_NAME in ort.get_available_providers():
        return ort.InferenceSession(str(model), so, providers=[(EP_NAME, options)])
    devices, _ = _plugin_devices()
    so.add_provider_for_devices(devices, options)
    return ort.InferenceSession(str(model), sess_options=so)


@pytest.mark.parametrize("embed", [True, False])
def test_exported_model_runs_the_samples(tmp_path: Path, onnx_bundle: Path, embed: bool) -> None:
    out = export_epcontext(onnx_bundle, tmp_path / "model_ctx.onnx", embed=embed)
    with rtxpack.open(onnx_bundle) as b:
        samples = b.read_samples()
    assert samples is not None
    session = _session(out.model, dict(out.provider_options))
    (y,) = session.run(["y"], {"x": samples["inputs"]["x"]})
    np.testing.assert_allclose(y, samples["outputs"]["y"], rtol=1e-2, atol=1e-2)


def test_runtime_cache_file_is_named_after_partition_name(
    tmp_path: Path, onnx_bundle: Path
) -> None:
    """The naming rtxpack exports caches under: the provider writes <dir>/<partition_name>."""
    out = export_epcontext(onnx_bundle, tmp_path / "model_ctx.onnx")
    cache_dir = tmp_path / "rtcache"
    session = _session(out.model, {"nv_runtime_cache_path": str(cache_dir)})
    with rtxpack.open(onnx_bundle) as b:
        x = b.read_samples()["inputs"]["x"]  # type: ignore[index]
    session.run(None, {"x": x})
    del session
    gc.collect()  # the provider saves the cache when the execution context is destroyed
    part = onnx.load(str(out.model)).graph.node[0].attribute
    (name,) = [a.s.decode() for a in part if a.name == "partition_name"]
    assert name.startswith("rtxpack_main_")
    assert (cache_dir / name).is_file()
    assert (cache_dir / name).stat().st_size > 0


@pytest.mark.parametrize("embed", [True, False])
def test_a_model_compiled_by_the_provider_imports(
    tmp_path: Path, onnx_mlp: Path, embed: bool
) -> None:
    """Import what the provider itself writes (ONNX Runtime's compile API, ORT >= 1.22)."""
    import onnxruntime as ort

    from rtxpack import import_epcontext

    so = ort.SessionOptions()
    if EP_NAME in ort.get_available_providers():
        so.add_provider(EP_NAME, PROFILE)
    else:
        so.add_provider_for_devices(_plugin_devices()[0], PROFILE)
    compiled = tmp_path / "mlp_ctx.onnx"
    compiler = ort.ModelCompiler(so, str(onnx_mlp), embed_compiled_data_into_model=embed)
    compiler.compile_to_file(str(compiled))
    with rtxpack.open(import_epcontext(compiled, tmp_path / "b.rtxpack")) as b:
        (engine,) = b.manifest.engines
        assert [t.name for t in engine.inputs] == ["x"]
        assert [t.name for t in engine.outputs] == ["y"]
        assert bytes(b.read_engine())[:4] == b"vtrt"
