"""The TensorRT-RTX backend against the ``tensorrt_rtx`` double in tests/doubles (no machine here
can run engines). ``test_double_matches_real_api`` and
``test_double_methods_take_the_arguments_the_real_methods_take`` keep the double honest.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import tensorrt_rtx as real
import torch
from doubles.tensorrt_rtx import (
    FAKES,
    FakeCache,
    FakeConfig,
    FakeContext,
    FakeEngine,
    FakeRuntime,
    W,
    World,
    install,
)

import rtxpack
from rtxpack._backends import tensorrt
from rtxpack._backends.base import Signature
from rtxpack._caches import local
from rtxpack._checks import check, machine
from rtxpack._exceptions import RuntimeFailure, TensorMismatchError
from rtxpack._loader import load
from rtxpack._strategy import RuntimeStrategy


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()
    fake_trt = install(w)
    monkeypatch.setattr(tensorrt, "_trt", lambda: fake_trt)
    monkeypatch.setattr(tensorrt, "_stream_handle", lambda device: 1234)
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: False)
    persisted: list[tuple[Path, bytes]] = []
    monkeypatch.setattr(tensorrt, "_persist", lambda p, b: persisted.append((p, b)) or True)
    w.persisted = persisted  # type: ignore[attr-defined]
    return w


def make(**kw: Any) -> tensorrt.TensorRTModule:
    kw.setdefault("device", "cpu")
    return tensorrt.TensorRTModule(b"vtrt-engine-bytes", **kw)


def reference(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x @ torch.from_numpy(W))


def count(world: World, kind: str) -> int:
    return sum(1 for e in world.events if isinstance(e, tuple) and e[0] == kind)


# ---------------------------------------------------------------------------------------------


def test_double_matches_real_api(world: World) -> None:
    """Every public name a fake defines (class or instance) exists on the real class."""
    instances = {
        FakeRuntime: FakeRuntime(None),
        FakeEngine: FakeEngine(world),
        FakeConfig: FakeConfig(world),
        FakeCache: FakeCache(world),
        FakeContext: FakeContext(world, FakeConfig(world)),
    }
    for fake, real_cls in FAKES.items():
        names = {n for n in dir(instances[fake]) if not n.startswith("_")}
        assert names, fake
        missing = sorted(n for n in names if not hasattr(real_cls, n))
        assert not missing, f"{fake.__name__} has {missing}, which {real_cls.__name__} lacks"
    # And the enum members the strategy mapping uses exist under the same names.
    for member in rtxpack.DynamicShapesStrategy:
        assert hasattr(real.DynamicShapesKernelSpecializationStrategy, member.name)
    for member in rtxpack.CudaGraphStrategy:
        assert hasattr(real.CudaGraphStrategy, member.name)
    for member in rtxpack.AllocationStrategy:
        assert hasattr(real.ExecutionContextAllocationStrategy, member.name)


def test_signature_read_from_engine_when_bundle_has_none(world: World) -> None:
    m = make()
    assert m.input_names == ("x",) and m.output_names == ("y",)
    assert [p["x"].max for p in m.signature.profiles] == [(8, 16), (32, 16)]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            RuntimeStrategy(),
            ("LAZY", "DISABLED", "STATIC"),
        ),
        (
            RuntimeStrategy("eager", "whole_graph_capture", "on_profile_change"),
            ("EAGER", "WHOLE_GRAPH_CAPTURE", "ON_PROFILE_CHANGE"),
        ),
        (
            RuntimeStrategy("none", "disabled", "user_managed"),
            ("NONE", "DISABLED", "USER_MANAGED"),
        ),
    ],
)
def test_strategy_is_restored_on_the_runtime_config(
    world: World, strategy: RuntimeStrategy, expected: tuple[str, str, str]
) -> None:
    m = make(strategy=strategy)
    cfg = world.config
    got = (
        cfg.dynamic_shapes_kernel_specialization_strategy.name,
        cfg.cuda_graph_strategy.name,
        cfg.get_execution_context_allocation_strategy().name,
    )
    assert got == expected
    m.close()


def test_cache_blob_is_deserialized_and_attached(world: World) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = make(cache_blob=b"warm", cache_origin="prewarmed cache 3fa2")
    assert ("cache.deserialize", b"warm") in world.events
    assert isinstance(world.config.get_runtime_cache(), FakeCache)
    assert m.cache_origin == "prewarmed cache 3fa2"


def test_rejected_cache_warns_and_starts_cold(world: World) -> None:
    world.accept_cache = False
    with pytest.warns(
        UserWarning,
        match=r"rejected the runtime cache \(prewarmed cache 3fa2\) although its recorded "
        "environment fits",
    ):
        m = make(cache_blob=b"foreign", cache_origin="prewarmed cache 3fa2")
    x = torch.randn(3, 16)
    torch.testing.assert_close(m(x), reference(x))


def test_a_cache_the_runtime_refuses_to_attach_is_dropped_with_a_warning(world: World) -> None:
    world.refuse_cache_attach = True
    with pytest.warns(UserWarning, match="refused to attach the runtime cache"):
        m = make(cache_blob=b"compiled-kernels", persist_path=Path("/nonexistent/c.bin"))
    assert world.config.get_runtime_cache() is None
    m.close()
    assert world.persisted == []  # type: ignore[attr-defined]  # nothing to write back


def test_no_cache_when_caching_is_off(world: World) -> None:
    m = make(use_cache=False, persist_path=Path("/nonexistent/c.bin"))
    assert world.config.get_runtime_cache() is None
    m.close()
    assert world.persisted == []  # type: ignore[attr-defined]


def test_call_binds_by_address_and_computes(world: World) -> None:
    m = make()
    x = torch.randn(5, 16)
    torch.testing.assert_close(m(x), reference(x))
    torch.testing.assert_close(m(x=x), reference(x))
    assert m(x, return_dict=True).keys() == {"y"}
    assert ("execute", 1234) in world.events


def test_repeated_shapes_do_not_rebind_or_reallocate(world: World) -> None:
    m = make()
    x = torch.randn(4, 16)
    ptr = m(x).data_ptr()  # the result is dropped: its storage may be reused
    assert m(x).data_ptr() == ptr
    assert count(world, "set_input_shape") == 1
    assert count(world, "set_tensor_address") == 2  # x and y, once
    m(torch.randn(4, 16))  # same shape, new input storage: only the input address changes
    assert count(world, "set_input_shape") == 1
    assert count(world, "set_tensor_address") == 3
    m(torch.randn(6, 16))  # a new shape: shapes set again, outputs allocated again
    assert count(world, "set_input_shape") == 2


def test_a_result_the_caller_keeps_is_never_overwritten(world: World) -> None:
    m = make()
    x1, x2 = torch.randn(4, 16), torch.randn(4, 16)
    kept = m(x1)
    kept_copy = kept.clone()
    also_kept = [m(x2)]  # same shapes; `kept` is still held, so fresh outputs
    torch.testing.assert_close(kept, kept_copy)
    torch.testing.assert_close(also_kept[0], reference(x2))
    assert kept.data_ptr() != also_kept[0].data_ptr()
    assert count(world, "set_input_shape") == 1  # shapes were not set again


def test_profile_is_chosen_and_switched_only_when_needed(world: World) -> None:
    m = make()
    m(torch.randn(2, 16))
    assert count(world, "set_profile") == 0  # a context starts in profile 0
    x = torch.randn(20, 16)
    torch.testing.assert_close(m(x), reference(x))
    assert ("set_profile", 1, 1234) in world.events
    m(torch.randn(30, 16))
    assert count(world, "set_profile") == 1
    m(torch.randn(3, 16))
    assert ("set_profile", 0, 1234) in world.events


def test_inputs_are_validated_precisely(world: World) -> None:
    m = make()
    with pytest.raises(TensorMismatchError, match=r"input 'x': dim 0 is 40, profile 0 allows 1..8"):
        m(torch.randn(40, 16))
    with pytest.raises(TensorMismatchError, match=r"profile 1 allows 9\.\.32"):
        m(torch.randn(40, 16))
    with pytest.raises(TensorMismatchError, match="dtype float64, the engine expects float32"):
        m(torch.randn(3, 16, dtype=torch.float64))
    with pytest.raises(TensorMismatchError, match="rank 1"):
        m(torch.randn(16))
    with pytest.raises(TensorMismatchError, match="dim 1 is 15, the engine needs exactly 16"):
        m(torch.randn(3, 15))
    with pytest.raises(TensorMismatchError, match="missing input"):
        m()
    with pytest.raises(TensorMismatchError, match="unknown input 'z'"):
        m(z=torch.randn(3, 16))
    with pytest.raises(TensorMismatchError, match="positional inputs"):
        m(torch.randn(3, 16), torch.randn(3, 16))


def test_wrong_device_is_refused(world: World) -> None:
    m = make(device="cuda")  # the double never touches CUDA
    with pytest.raises(TensorMismatchError, match=r"input 'x' is on cpu, this module runs on cuda"):
        m(torch.randn(3, 16))


def test_user_managed_allocation_provides_device_memory(world: World) -> None:
    m = make(strategy=RuntimeStrategy(execution_context_allocation_strategy="user_managed"))
    m(torch.randn(3, 16))
    assert ("set_device_memory", 4096) in world.events


def test_outer_capture_switches_native_graphs_off_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make(
        strategy=RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"),
        persist_path=Path("/tmp/c.bin"),
    )
    assert world.config.cuda_graph_strategy == real.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    x = torch.randn(3, 16)
    m(x)
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: True)
    torch.testing.assert_close(m(x), reference(x))
    torch.testing.assert_close(m(x), reference(x))
    assert len(world.configs) == 2 and len(world.contexts) == 2
    assert world.config.cuda_graph_strategy == real.CudaGraphStrategy.DISABLED
    assert m.strategy.cuda_graph_strategy == rtxpack.CudaGraphStrategy.DISABLED
    # The cache was written before the switch and carried into the new config.
    assert world.persisted == [(Path("/tmp/c.bin"), b"compiled-kernels")]  # type: ignore[attr-defined]
    assert ("cache.deserialize", b"compiled-kernels") in world.events
    assert count(world, "set_input_shape") == 2  # the new context got its shapes once
    assert ("is_stream_capturable", 1234) in world.events
    # Nothing may be freed inside a capture: the old objects live until close(), then go in
    # order (context, cache, config), before the new ones.
    rel = [e for e in world.events if isinstance(e, str) and e.startswith("release")]
    assert rel == []
    m.close()
    rel = [e for e in world.events if isinstance(e, str) and e.startswith("release")]
    assert rel[:6] == ["release context", "release cache", "release config"] * 2


def test_a_failed_switch_inside_a_capture_leaves_the_module_as_it_was(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make(strategy=RuntimeStrategy("eager", "whole_graph_capture"))
    x = torch.randn(3, 16)
    m(x)
    world.fail_context = True
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: True)
    with pytest.raises(RuntimeFailure, match=r"disable_native_cuda_graphs\(\) once before"):
        m(x)
    assert m.strategy.cuda_graph_strategy == rtxpack.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: False)
    torch.testing.assert_close(m(x), reference(x))  # the old context still works
    m.close()


def test_capture_checks_the_stream_and_warns_about_lazy_dynamic_engines(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make()  # lazy strategy (the default), dynamic input
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: True)
    with pytest.warns(UserWarning, match="'lazy' kernel specialization"):
        m(torch.randn(3, 16))
    world.capturable = False
    with pytest.raises(RuntimeFailure, match="cannot be captured"):
        m(torch.randn(3, 16))
    m.close()


def test_native_graphs_on_the_default_stream_warn_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tensorrt, "_stream_handle", lambda device: 0)
    m = make(strategy=RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"))
    with pytest.warns(UserWarning, match="need a non-default stream"):
        m(torch.randn(3, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m(torch.randn(3, 16))
    m.close()


def test_a_failed_shape_change_does_not_leave_stale_bookkeeping(world: World) -> None:
    m = make()
    m(torch.randn(3, 16))
    world.fail_set_shape = True
    with pytest.raises(RuntimeFailure, match="refused shape"):
        m(torch.randn(20, 16))
    world.fail_set_shape = False
    torch.testing.assert_close(m(x := torch.randn(3, 16)), reference(x))
    assert ("set_profile", 0, 1234) in world.events  # back to the profile the shapes need
    m.close()


def test_errors_quoted_are_only_this_calls(world: World) -> None:
    m = make()
    m._state.logger.errors.append("an old, unrelated error")
    world.fail_execute = True
    with pytest.raises(RuntimeFailure) as err:
        m(torch.randn(3, 16))
    assert "an old, unrelated error" not in str(err.value)
    m.close()


def test_native_graphs_can_be_switched_off_before_capture(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make(strategy=RuntimeStrategy(cuda_graph_strategy="whole_graph_capture"))
    m.disable_native_cuda_graphs()
    m.disable_native_cuda_graphs()  # once is enough
    assert len(world.contexts) == 2
    assert world.config.cuda_graph_strategy == real.CudaGraphStrategy.DISABLED
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: True)
    x = torch.randn(3, 16)
    torch.testing.assert_close(m(x), reference(x))
    assert len(world.contexts) == 2  # no further switch inside the capture


def test_no_switch_when_native_graphs_are_off(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make()
    monkeypatch.setattr(tensorrt, "_is_capturing", lambda: True)
    m(torch.randn(3, 16))
    assert len(world.contexts) == 1


def test_close_persists_cache_and_releases_in_order(world: World) -> None:
    with make(persist_path=Path("/tmp/x.cache")) as m:
        m(torch.randn(3, 16))
    assert world.persisted == [(Path("/tmp/x.cache"), b"compiled-kernels")]  # type: ignore[attr-defined]
    released = [e for e in world.events if isinstance(e, str) and e.startswith("release")]
    assert released == [
        "release context",
        "release cache",
        "release config",
        "release engine",
        "release runtime",
    ]
    m.close()  # idempotent
    assert len(world.persisted) == 1  # type: ignore[attr-defined]
    with pytest.raises(RuntimeFailure, match="was closed"):
        m(torch.randn(3, 16))


@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_garbage_collection_persists_and_never_raises(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make(persist_path=Path("/tmp/gc.cache"))
    m(torch.randn(3, 16))

    def boom(p: Path, b: bytes) -> bool:
        raise OSError("disk full")

    monkeypatch.setattr(tensorrt, "_persist", boom)
    with pytest.warns(UserWarning, match="could not write the runtime cache"):
        del m
        import gc

        gc.collect()
    assert "release runtime" in world.events


def test_deserialize_failure_quotes_the_logger(world: World) -> None:
    world.fail_deserialize = True
    with pytest.raises(RuntimeFailure, match=r"could not deserialize.*another GPU"):
        make()


def test_context_failure_is_a_runtime_failure(world: World) -> None:
    world.fail_context = True
    with pytest.raises(RuntimeFailure, match="could not create an execution context"):
        make()


def test_a_context_failure_quotes_its_own_error_not_an_earlier_cache_rejection(
    world: World,
) -> None:
    world.accept_cache, world.fail_context = False, True
    with pytest.raises(RuntimeFailure) as info, pytest.warns(UserWarning) as warned:
        make(cache_blob=b"foreign", cache_origin="prewarmed cache 3fa2")
    assert "out of device memory" in str(info.value)
    assert "CiG" not in str(info.value)  # the cache rejection is the warning's, with its reason
    assert any("runtime cache: CiG state differs" in str(w.message) for w in warned)


def test_manifest_signature_must_match_engine(world: World) -> None:
    from rtxpack._format.manifest import TensorSpec

    sig = Signature(
        (TensorSpec("image", "float32", (-1, 16)),), (TensorSpec("y", "float32", (-1, 8)),)
    )
    with pytest.raises(RuntimeFailure, match="inconsistent"):
        make(signature=sig)


# -- through rtxpack.load, with the real compatibility check bypassed --------------------------


@pytest.fixture
def supported_machine(monkeypatch: pytest.MonkeyPatch) -> None:

    ok = SimpleNamespace(ok=True, findings=())
    monkeypatch.setattr(check, "check", lambda *a, **k: ok)
    monkeypatch.setattr(
        machine,
        "local_target",
        lambda: rtxpack.Target(
            trt_version=real.__version__,
            compute_capability="8.9",
            driver_version="580.65",
            os="linux",
            gpu_name="NVIDIA GeForce RTX 4090",
        ),
    )


def test_load_restores_overrides_and_round_trips_the_cache_file(
    world: World,
    supported_machine: None,
    onnx_bundle: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    monkeypatch.setattr(tensorrt, "_persist", local.persist_runtime_cache)
    bundle = tmp_path / "b.rtxpack"
    shutil.copy(onnx_bundle, bundle)
    cache_file = tmp_path / "runtime.cache"
    m = load(
        bundle, strategy={"cuda_graph_strategy": "whole_graph_capture"}, runtime_cache=cache_file
    )
    assert m.backend == "tensorrt_rtx"
    cfg = world.config
    assert cfg.cuda_graph_strategy == real.CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
    assert cfg.dynamic_shapes_kernel_specialization_strategy.name == "LAZY"  # from the bundle
    assert not any(e[0] == "cache.deserialize" for e in world.events if isinstance(e, tuple))
    m.close()
    assert cache_file.is_file()
    # The next load starts from what the first one wrote, and says so.
    with caplog.at_level(logging.INFO, logger="rtxpack"):
        m2 = load(bundle, runtime_cache=cache_file)
    assert ("cache.deserialize", b"compiled-kernels") in world.events
    assert str(cache_file) in m2.cache_origin
    assert any(m2.cache_origin in r.getMessage() for r in caplog.records)
    m2.close()


def test_fallback_also_covers_a_runtime_that_fails_after_a_valid_check(
    world: World, supported_machine: None, onnx_bundle: Path
) -> None:
    from rtxpack._loader import FallbackWarning

    world.fail_deserialize = True
    with pytest.raises(RuntimeFailure, match="could not deserialize"):
        load(onnx_bundle)
    with pytest.warns(FallbackWarning, match="could not load it here .*could not deserialize"):
        m = load(onnx_bundle, fallback="onnxruntime")
    assert m.backend == "onnxruntime"
    m.close()


def test_load_with_rtx_strategy_object_replaces_the_bundles(
    world: World, supported_machine: None, onnx_bundle: Path
) -> None:
    m = load(onnx_bundle, strategy=RuntimeStrategy("eager"), runtime_cache=None)
    assert world.config.dynamic_shapes_kernel_specialization_strategy.name == "EAGER"
    assert world.config.get_runtime_cache() is None
    m.close()


def _gpu_trt_rtx_supports() -> bool:
    from rtxpack._facts import SUPPORTED_CCS

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}" in SUPPORTED_CCS


def test_the_real_runtime_accepts_the_zero_copy_view_the_module_passes(onnx_bundle: Path) -> None:
    """Not a double: the real binding takes the read-only memoryview of the mapped bundle (without
    a GPU it then returns None, which the module turns into RuntimeFailure)."""
    import tensorrt_rtx

    with rtxpack.open(onnx_bundle) as b:
        view = b.read_engine()
        assert isinstance(view, memoryview) and view.readonly
        runtime = tensorrt_rtx.Runtime(tensorrt_rtx.Logger(tensorrt_rtx.Logger.INTERNAL_ERROR))
        engine = runtime.deserialize_cuda_engine(view)  # a TypeError here would be a real bug
        if torch.cuda.is_available() and _gpu_trt_rtx_supports():
            assert engine is not None and engine.num_io_tensors == 2  # x and y
        else:
            assert engine is None
        del engine, runtime
        view.release()


def _real_arities(real_cls: type, name: str) -> list[tuple[int, int]]:
    """(required, total) positional parameters, self excluded, of each overload in the docstring."""
    import re

    doc = getattr(real_cls, name).__doc__ or ""
    out = []
    for match in re.finditer(rf"\b{name}\(self[^)]*\)", doc):
        params, depth, cur = [], 0, ""
        for ch in match.group(0)[len(name) + 1 : -1]:
            depth += ch in "[<"
            depth -= ch in "]>"
            if ch == "," and depth == 0:
                params.append(cur)
                cur = ""
            else:
                cur += ch
        params = [p.strip() for p in [*params, cur][1:] if p.strip()]
        out.append((sum("=" not in p for p in params), len(params)))
    return out


def test_double_methods_take_the_arguments_the_real_methods_take(world: World) -> None:
    """Names alone could drift in arity: each fake method must fit one real overload."""
    import inspect as pyinspect

    for fake, real_cls in FAKES.items():
        for name, member in vars(fake).items():
            if name.startswith("_") or not callable(member) or not hasattr(real_cls, name):
                continue
            arities = _real_arities(real_cls, name)
            if not arities:  # a property or a plain attribute on the real class
                continue
            params = list(pyinspect.signature(member).parameters.values())[1:]
            if any(p.kind is p.VAR_POSITIONAL for p in params):
                continue
            n = len([p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)])
            assert any(lo <= n <= hi for lo, hi in arities), (
                f"{fake.__name__}.{name} takes {n} arguments; "
                f"{real_cls.__name__}.{name} takes {arities}"
            )


# -- weight streaming and output structure (issue 9) ------------------------------------------


def test_weight_streaming_budget_is_set_before_the_context(world: World) -> None:
    world.streamable_bytes = 1000
    make(strategy=rtxpack.RuntimeStrategy(weight_streaming_budget=300))
    assert ("weight_streaming_budget", 300, 0) in world.events  # before any context
    world.events.clear()
    world.contexts.clear()
    make(strategy=rtxpack.RuntimeStrategy(weight_streaming_budget="auto"))
    assert ("weight_streaming_budget", 500, 0) in world.events  # TensorRT-RTX's automatic one


def test_weight_streaming_budget_on_a_plain_engine_warns(world: World) -> None:
    with pytest.warns(rtxpack.RtxpackWarning, match="not built with weight streaming"):
        make(strategy=rtxpack.RuntimeStrategy(weight_streaming_budget=300))
    assert count(world, "weight_streaming_budget") == 0


def test_recorded_output_tree_is_returned(world: World) -> None:
    m = make(output_tree={"dict": [["logits", 0]]})
    x = torch.randn(2, 16)
    out = m(x)
    assert isinstance(out, dict) and list(out) == ["logits"]
    torch.testing.assert_close(out["logits"], reference(x))
    assert isinstance(m(x, return_dict=True), dict)
