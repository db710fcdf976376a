"""The TensorRT-RTX backend: an engine behind a ``torch.nn.Module``.

Not run on real hardware here: no machine in this project has a GPU TensorRT-RTX supports, so this
module is tested against a double of ``tensorrt_rtx`` whose names are checked against the real
classes (tests/backends/test_tensorrt.py). docs/loading.md says which parts are verified.

The torch-CUDA touch points (current stream, capture probe, allocation, synchronization, device
guard) are the small module-level functions below, so tests can replace them.
"""

from __future__ import annotations

import collections
import contextlib
import sys
import warnings
import weakref
from pathlib import Path
from typing import Any

import torch

from .._exceptions import BackendError, CaptureWarning, RtxpackWarning, RuntimeCacheWarning
from .._format.manifest import ShapeRange, TensorSpec
from .._strategy import CudaGraphStrategy, DynamicShapesStrategy, RuntimeStrategy
from .base import (
    EngineModule,
    Signature,
    bind_inputs,
    check_tensors,
    choose_profile,
    pack_outputs,
    torch_dtype,
)

__all__ = ["TensorRTModule"]


# -- touch points (replaced in tests) ---------------------------------------------------------


def _trt() -> Any:
    import tensorrt_rtx

    return tensorrt_rtx


def _stream_handle(device: torch.device) -> int:
    return int(torch.cuda.current_stream(device).cuda_stream)


def _is_capturing() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def _empty(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize(device)


def _device_guard(device: torch.device) -> Any:
    if device.type == "cuda" and device.index is not None:
        return torch.cuda.device(device.index)
    return contextlib.nullcontext()


def _persist(path: Path, blob: bytes) -> bool:
    from .._caches.local import persist_runtime_cache

    return bool(persist_runtime_cache(path, blob))


# ---------------------------------------------------------------------------------------------


def _make_logger(trt: Any) -> Any:
    """A TensorRT-RTX logger that keeps the last errors, so failures can quote them."""

    class Logger(trt.ILogger):  # type: ignore[misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: collections.deque[str] = collections.deque(maxlen=20)

        def log(self, severity: Any, msg: str) -> None:
            if severity <= trt.ILogger.Severity.ERROR:
                self.errors.append(str(msg))

    return Logger()


def _clear_errors(logger: Any) -> None:
    """Forget earlier errors, so a failure quotes only what went wrong in this call."""
    errors = getattr(logger, "errors", None)
    if errors is not None:
        errors.clear()


#: TensorRT requires tensor addresses aligned to 256 bytes (IExecutionContext::setTensorAddress).
_ALIGNMENT = 256


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` if TensorRT-RTX can read it in place, else a contiguous, aligned copy (a slice such
    as ``x[1:]`` is contiguous but starts mid-allocation)."""
    if t.is_contiguous() and (t.device.type != "cuda" or t.data_ptr() % _ALIGNMENT == 0):
        return t
    return t.clone(memory_format=torch.contiguous_format)


def _errors_of(logger: Any) -> str:
    errors = list(getattr(logger, "errors", ()))
    return "; ".join(errors[-5:]) if errors else "TensorRT-RTX logged no reason"


def signature_from_engine(trt: Any, engine: Any) -> Signature:
    """Read the I/O signature and profiles from a deserialized engine (packed engines)."""
    from .._build.engine import trt_dtype_name

    inputs: list[TensorSpec] = []
    outputs: list[TensorSpec] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        spec = TensorSpec(
            name,
            trt_dtype_name(engine.get_tensor_dtype(name)),
            tuple(engine.get_tensor_shape(name)),
        )
        mode = engine.get_tensor_mode(name)
        (inputs if mode == trt.TensorIOMode.INPUT else outputs).append(spec)
    profiles = []
    for p in range(engine.num_optimization_profiles):
        prof = {}
        for t in inputs:
            if -1 in t.shape:
                lo, opt, hi = (tuple(d) for d in engine.get_tensor_profile_shape(t.name, p))
                prof[t.name] = ShapeRange(lo, opt, hi)
            else:
                prof[t.name] = ShapeRange(t.shape, t.shape, t.shape)
        profiles.append(prof)
    return Signature(tuple(inputs), tuple(outputs), tuple(profiles))


class _State:
    """Every TensorRT-RTX object of one module, released in order by ``release``.

    It is separate from the module so that a ``weakref.finalize`` can hold it without keeping the
    module alive; ``release`` never raises (it runs from finalizers and at interpreter exit).
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.logger: Any = None
        self.runtime: Any = None
        self.engine: Any = None
        self.config: Any = None
        self.cache: Any = None
        self.context: Any = None
        self.persist_path: Path | None = None
        self.device_memory: torch.Tensor | None = None
        # (context, cache, config) replaced inside a CUDA graph capture, where freeing device
        # memory is not allowed: kept until close().
        self.retired: list[tuple[Any, Any, Any]] = []
        self.closed = False

    def serialize_cache(self) -> bytes | None:
        if self.cache is None:
            return None
        try:
            return bytes(self.cache.serialize())
        except Exception as exc:  # never fatal: the cache is an optimization
            warnings.warn(
                f"rtxpack: could not serialize the runtime cache ({exc})",
                RuntimeCacheWarning,
                stacklevel=3,
            )
            return None

    def persist_cache(self, blob: bytes | None = None) -> None:
        """Write the runtime cache back, if this module has a place for it. Never raises."""
        if self.persist_path is None or self.cache is None:
            return
        if blob is None:
            blob = self.serialize_cache()
        if not blob:
            return
        try:
            _persist(self.persist_path, blob)
        except Exception as exc:
            warnings.warn(
                f"rtxpack: could not write the runtime cache to {self.persist_path} ({exc})",
                RuntimeCacheWarning,
                stacklevel=3,
            )

    def release(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            _synchronize(self.device)
        except Exception:
            pass
        try:
            self.persist_cache()
        except Exception:
            pass
        # Release order matters: context -> cache -> config -> engine -> runtime.
        try:
            while self.retired:
                context, cache, config = self.retired.pop()
                del context  # in order: context, then cache, then config
                del cache
                del config
        except Exception:
            pass
        for attr in ("context", "device_memory", "cache", "config", "engine", "runtime"):
            try:
                setattr(self, attr, None)
            except Exception:
                pass


class TensorRTModule(EngineModule):
    """A TensorRT-RTX engine as a torch module. Build it with ``rtxpack.load``.

    Call with tensors on ``device``: positionally in ``input_names`` order or by name. Returns a
    tensor, a tuple for several outputs, or a dict with ``return_dict=True`` (per call) or
    ``module.return_dict = True``. With ``reuse_outputs`` (the default), a call with the same input
    shapes as the last one writes into the same output tensors (no allocation, no re-binding;
    what TensorRT-RTX's native CUDA graphs need) unless the caller still holds the tensors the last
    call returned: then fresh ones are allocated, so a kept result is never overwritten. (A view
    of an output, kept without the output itself, is not seen: clone it.)
    """

    backend = "tensorrt_rtx"

    def __init__(
        self,
        engine_data: Any,
        *,
        name: str = "main",
        signature: Signature | None = None,
        strategy: RuntimeStrategy | None = None,
        cache_blob: bytes | None = None,
        cache_origin: str = "none",
        persist_path: Path | None = None,
        use_cache: bool = True,
        device: torch.device | str = "cuda",
        output_tree: Any = None,
    ) -> None:
        super().__init__()
        self.engine_name = name
        self.output_tree = output_tree
        self.device = torch.device(device)
        self.strategy = strategy or RuntimeStrategy()
        self.return_dict = False
        self.reuse_outputs = True
        self.cache_origin = cache_origin
        self._trt = _trt()
        state = _State(self.device)
        self._state = state
        self._finalizer = weakref.finalize(self, state.release)
        self._native_graphs_off = False
        self._warned_default_stream = False
        self._warned_lazy_capture = False
        self._reset_bindings()

        trt = self._trt
        with _device_guard(self.device):
            state.logger = _make_logger(trt)
            state.runtime = trt.Runtime(state.logger)
            state.engine = state.runtime.deserialize_cuda_engine(engine_data)
            if state.engine is None:
                self.close()
                raise BackendError(
                    f"TensorRT-RTX could not deserialize engine {name!r}: "
                    f"{_errors_of(state.logger)}"
                )
            engine_sig = signature_from_engine(trt, state.engine)
            if signature is not None and signature.inputs:
                if set(signature.input_names) != set(engine_sig.input_names) or set(
                    signature.output_names
                ) != set(engine_sig.output_names):
                    self.close()
                    raise BackendError(
                        f"engine {name!r}: the bundle records inputs {signature.input_names} and "
                        f"outputs {signature.output_names}, the engine has "
                        f"{engine_sig.input_names} and {engine_sig.output_names}; the bundle is "
                        "inconsistent — rebuild it"
                    )
                # The engine's input order is what positional calls follow.
                order = {n: i for i, n in enumerate(engine_sig.input_names)}
                signature = Signature(
                    tuple(sorted(signature.inputs, key=lambda t: order[t.name])),
                    signature.outputs,
                    signature.profiles or engine_sig.profiles,
                    signature.equal_dims,
                )
            self.signature = signature if signature is not None and signature.inputs else engine_sig
            state.persist_path = persist_path
            try:
                if self.strategy.weight_streaming_budget is not None:
                    set_weight_streaming_budget(
                        state.engine, self.strategy.weight_streaming_budget, name
                    )
                state.config, state.cache, state.context = self._new_context(
                    self.strategy, cache_blob if use_cache else None, use_cache
                )
            except BaseException:
                self.close()
                raise

    # -- construction ------------------------------------------------------------------------

    def _new_context(
        self, strategy: RuntimeStrategy, cache_blob: bytes | None, use_cache: bool
    ) -> tuple[Any, Any, Any]:
        """A runtime config with ``strategy`` and a cache, and a context made through it."""
        trt, state = self._trt, self._state
        _clear_errors(state.logger)
        config = state.engine.create_runtime_config()
        if config is None:
            raise BackendError(
                f"TensorRT-RTX could not create a runtime config: {_errors_of(state.logger)}"
            )
        apply_strategy(trt, config, strategy)
        cache = None
        if use_cache:
            cache = config.create_runtime_cache()
            if cache is None:
                warnings.warn(
                    "rtxpack: TensorRT-RTX could not create a runtime cache "
                    f"({_errors_of(state.logger)}); running without one",
                    RuntimeCacheWarning,
                    stacklevel=4,
                )
            else:
                if cache_blob and not cache.deserialize(cache_blob):
                    warnings.warn(
                        f"rtxpack: TensorRT-RTX rejected the runtime cache "
                        f"({self.cache_origin}) although its recorded environment fits this "
                        f"machine ({_errors_of(state.logger)}); starting cold (kernels are "
                        "JIT-compiled again)",
                        RuntimeCacheWarning,
                        stacklevel=4,
                    )
                if config.set_runtime_cache(cache) is False:
                    warnings.warn(
                        "rtxpack: TensorRT-RTX refused to attach the runtime cache "
                        f"({_errors_of(state.logger)}); running without one",
                        RuntimeCacheWarning,
                        stacklevel=4,
                    )
                    cache = None
        _clear_errors(state.logger)  # a context failure quotes only its own errors
        context = state.engine.create_execution_context(config)
        if context is None:
            raise BackendError(
                f"TensorRT-RTX could not create an execution context for engine "
                f"{self.engine_name!r}: {_errors_of(state.logger)}"
            )
        return config, cache, context

    def _reset_bindings(self) -> None:
        self._last_shapes: tuple[tuple[int, ...], ...] | None = None
        self._last_ptrs: tuple[int, ...] | None = None
        self._profile: int | None = None
        self._outputs: list[torch.Tensor] | None = None

    def _switch_off_native_graphs(self) -> None:
        """Recreate config + context with TensorRT-RTX's native CUDA graphs off.

        The new context is made before the old one is let go, so a failure leaves the module as
        it was. Inside an outer capture nothing may be freed or synchronized: the old objects are
        then kept until ``close()``.
        """
        state = self._state
        capturing = _is_capturing()
        if not capturing:
            _synchronize(self.device)  # work queued on the old context must finish first
        blob = state.serialize_cache()
        state.persist_cache(blob)  # a strategy switch is one of the moments the cache is written
        strategy = self.strategy.with_overrides(cuda_graph_strategy=CudaGraphStrategy.DISABLED)
        try:
            new = self._new_context(strategy, blob, state.cache is not None)
        except BackendError as exc:
            if not capturing:
                raise
            raise BackendError(
                "could not switch TensorRT-RTX's own CUDA graphs off inside your "
                f"torch.cuda.graph capture ({exc}); call model.disable_native_cuda_graphs() once "
                "before capturing, or load with strategy={'cuda_graph_strategy': 'disabled'}"
            ) from None
        if capturing:
            state.retired.append((state.context, state.cache, state.config))
        state.context = None  # outside a capture, released here in order: context first,
        state.cache = None
        state.config = None
        state.config, state.cache, state.context = new
        self.strategy = strategy
        self.cache_origin = "carried over from the previous runtime config"
        self._native_graphs_off = True
        self._reset_bindings()

    def disable_native_cuda_graphs(self) -> None:
        """Turn TensorRT-RTX's own CUDA graph capture off (recreates config + context once).

        Done automatically on the first call inside an outer ``torch.cuda.graph`` capture; call
        it before capturing to keep context creation (which may allocate) out of the capture.
        """
        if self._state.closed:
            raise BackendError(f"engine {self.engine_name!r} was closed; load the bundle again")
        if self.strategy.cuda_graph_strategy == CudaGraphStrategy.DISABLED:
            return
        with _device_guard(self.device):
            self._switch_off_native_graphs()

    # -- calls -------------------------------------------------------------------------------

    def forward(self, *args: Any, return_dict: bool | None = None, **kwargs: Any) -> Any:
        state = self._state
        if state.closed:
            raise BackendError(f"engine {self.engine_name!r} was closed; load the bundle again")
        sig = self.signature
        tensors = bind_inputs(sig, args, kwargs)
        check_tensors(sig, tensors, self.device)
        tensors = [_aligned(t) for t in tensors]
        _clear_errors(state.logger)
        with _device_guard(self.device):
            stream = _stream_handle(self.device)
            capturing = _is_capturing()
            native = self.strategy.cuda_graph_strategy == CudaGraphStrategy.WHOLE_GRAPH_CAPTURE
            if capturing and native and not self._native_graphs_off:
                self._switch_off_native_graphs()
            elif native and stream == 0 and not self._warned_default_stream:
                self._warned_default_stream = True
                warnings.warn(
                    "rtxpack: TensorRT-RTX's native CUDA graphs need a non-default stream; on "
                    "torch's default stream they stay off (run under `with torch.cuda.stream("
                    "torch.cuda.Stream()):` to use them)",
                    CaptureWarning,
                    stacklevel=2,
                )
            ctx = state.context
            if capturing:
                self._check_capturable(ctx, stream)
            shapes = tuple(tuple(t.shape) for t in tensors)
            if shapes != self._last_shapes:
                self._set_shapes(ctx, shapes, stream)
            elif not self.reuse_outputs or self._outputs_held():
                self._outputs = self._allocate_outputs(ctx)
            ptrs = tuple(t.data_ptr() for t in tensors) + tuple(
                o.data_ptr() for o in self._outputs or ()
            )
            if ptrs != self._last_ptrs:
                last = self._last_ptrs or (None,) * len(ptrs)
                names = sig.input_names + sig.output_names
                for name, ptr, old in zip(names, ptrs, last):
                    if ptr != old and not ctx.set_tensor_address(name, ptr):
                        raise BackendError(
                            f"TensorRT-RTX refused the address of tensor {name!r}: "
                            f"{_errors_of(state.logger)}"
                        )
                self._last_ptrs = ptrs
            if not ctx.execute_async_v3(stream):
                raise BackendError(
                    f"TensorRT-RTX failed to run engine {self.engine_name!r}: "
                    f"{_errors_of(state.logger)}"
                )
        outputs = list(self._outputs or ())
        as_dict = self.return_dict if return_dict is None else return_dict
        return pack_outputs(sig.output_names, outputs, as_dict, self.output_tree)

    def _check_capturable(self, ctx: Any, stream: int) -> None:
        if not ctx.is_stream_capturable(stream):
            raise BackendError(
                f"engine {self.engine_name!r} cannot be captured into a CUDA graph on this stream "
                f"(TensorRT-RTX says so: {_errors_of(self._state.logger)}); run it outside the "
                "capture"
            )
        lazy = DynamicShapesStrategy.LAZY
        strategy = self.strategy.dynamic_shapes_kernel_specialization_strategy
        dynamic = any(-1 in t.shape for t in self.signature.inputs)
        if strategy == lazy and dynamic and not self._warned_lazy_capture:
            self._warned_lazy_capture = True
            warnings.warn(
                "rtxpack: capturing an engine with dynamic inputs and the 'lazy' kernel "
                "specialization strategy: kernels compiled in the background may replace "
                "the captured ones; load with dynamic_shapes_kernel_specialization_strategy="
                "'eager' or 'none' for graphs you capture",
                CaptureWarning,
                stacklevel=3,
            )

    def _set_shapes(self, ctx: Any, shapes: tuple[tuple[int, ...], ...], stream: int) -> None:
        sig, state = self.signature, self._state
        self._last_shapes = None  # until every step below has succeeded
        profile = choose_profile(sig, shapes)
        if profile != self._profile:
            # A new context starts in profile 0; switch only when another one is needed.
            switch = self._profile is not None or profile != 0
            if switch and not ctx.set_optimization_profile_async(profile, stream):
                raise BackendError(
                    f"TensorRT-RTX refused optimization profile {profile}: "
                    f"{_errors_of(state.logger)}"
                )
            self._profile = profile
        for name, shape in zip(sig.input_names, shapes):
            if not ctx.set_input_shape(name, shape):
                raise BackendError(
                    f"TensorRT-RTX refused shape {list(shape)} for input {name!r}: "
                    f"{_errors_of(state.logger)}"
                )
        from .._strategy import AllocationStrategy

        if self.strategy.execution_context_allocation_strategy == AllocationStrategy.USER_MANAGED:
            size = int(ctx.update_device_memory_size_for_shapes())
            mem = state.device_memory
            if mem is None or mem.numel() < size:
                mem = _empty((max(size, 1),), torch.uint8, self.device)
                state.device_memory = mem
            ctx.set_device_memory(mem.data_ptr(), mem.numel())
        self._outputs = self._allocate_outputs(ctx)
        self._last_shapes = shapes

    def _outputs_held(self) -> bool:
        """Does the caller still hold a tensor we returned last time? Then don't overwrite it.

        ``self._outputs`` holds one reference and ``getrefcount``'s argument another; any more
        belong to the caller (a result kept in a variable, a list, a tuple).
        """
        outs = self._outputs or []
        return any(sys.getrefcount(outs[i]) > 2 for i in range(len(outs)))

    def _allocate_outputs(self, ctx: Any) -> list[torch.Tensor]:
        outputs = []
        for spec in self.signature.outputs:
            shape = tuple(ctx.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"output {spec.name!r} has a data-dependent shape {list(shape)}; rtxpack does "
                    "not support engines whose output shapes depend on input values yet"
                )
            dtype = torch_dtype(spec.dtype)
            if dtype is None:
                raise BackendError(
                    f"output {spec.name!r} has dtype {spec.dtype}, which torch cannot hold"
                )
            outputs.append(_empty(shape, dtype, self.device))
        return outputs

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Persist the runtime cache and release context, cache, config, engine and runtime."""
        self._outputs = None
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._state.closed

    def extra_repr(self) -> str:
        return (
            f"engine={self.engine_name!r}, device={self.device}, inputs={self.input_names}, "
            f"outputs={self.output_names}, cache={self.cache_origin!r}"
        )


def apply_strategy(trt: Any, config: Any, strategy: RuntimeStrategy) -> None:
    """Set the bundle's strategies on an ``IRuntimeConfig`` (the enums map by member name)."""
    config.dynamic_shapes_kernel_specialization_strategy = getattr(
        trt.DynamicShapesKernelSpecializationStrategy,
        strategy.dynamic_shapes_kernel_specialization_strategy.name,
    )
    config.cuda_graph_strategy = getattr(trt.CudaGraphStrategy, strategy.cuda_graph_strategy.name)
    config.set_execution_context_allocation_strategy(
        getattr(
            trt.ExecutionContextAllocationStrategy,
            strategy.execution_context_allocation_strategy.name,
        )
    )


def set_weight_streaming_budget(engine: Any, budget: int | str, name: str) -> None:
    """Apply the strategy's weight-streaming budget to a deserialized engine, before any context
    is made: ``"auto"`` is TensorRT-RTX's automatic budget, a number is bytes of weights kept on
    the GPU. An engine built without weight streaming keeps all its weights (with a warning)."""
    if int(engine.streamable_weights_size) <= 0:
        warnings.warn(
            f"rtxpack: engine {name!r} was not built with weight streaming "
            "(BuildOptions(weight_streaming=True)); its weight_streaming_budget is ignored",
            RtxpackWarning,
            stacklevel=4,
        )
        return
    value = int(engine.get_weight_streaming_automatic_budget()) if budget == "auto" else int(budget)
    engine.weight_streaming_budget_v2 = value
