"""A double of ``tensorrt_rtx``'s runtime API: no machine here can run an engine.

It implements only what rtxpack calls. tests/backends/test_tensorrt.py checks every public name and
every method's arity of every fake class against the real ``tensorrt_rtx`` class, so the double
cannot drift from the library. It runs on CPU tensors: ``execute_async_v3`` reads the inputs and
writes the outputs through the raw addresses it was given, so binding mistakes show up as wrong
numbers. ``install(world)`` returns the module to hand to rtxpack in place of ``tensorrt_rtx``.
"""

from __future__ import annotations

import ctypes
import weakref
from types import SimpleNamespace
from typing import Any

import numpy as np
import tensorrt_rtx as real

__all__ = [
    "FAKES",
    "PROFILES",
    "W",
    "FakeCache",
    "FakeConfig",
    "FakeContext",
    "FakeEngine",
    "FakeRuntime",
    "ValidityRuntime",
    "World",
    "install",
]

W = np.random.default_rng(5).standard_normal((16, 8)).astype(np.float32)


PROFILES = [((1, 16), (4, 16), (8, 16)), ((9, 16), (16, 16), (32, 16))]


class World:
    """What the fake library saw, and how it should behave."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.fail_deserialize = False
        self.fail_context = False
        self.accept_cache = True
        self.logger: Any = None  # the logger the runtime was made with (errors go there)
        self.refuse_cache_attach = False
        self.capturable = True
        self.fail_set_shape = False
        self.fail_execute = False
        self.cache_blob = b"compiled-kernels"
        self.streamable_bytes = 0  # > 0: the engine was built with weight streaming
        # Weak references: the double must not keep alive what rtxpack releases.
        self.configs: list[weakref.ref[FakeConfig]] = []
        self.contexts: list[weakref.ref[FakeContext]] = []

    @property
    def config(self) -> FakeConfig:
        """The newest runtime config (alive)."""
        cfg = self.configs[-1]()
        assert cfg is not None
        return cfg


class FakeCache:
    def __init__(self, world: World) -> None:
        self._world = world

    def deserialize(self, blob: Any) -> bool:
        self._world.events.append(("cache.deserialize", bytes(blob)))
        if not self._world.accept_cache and self._world.logger is not None:
            self._world.logger.log(real.ILogger.Severity.ERROR, "runtime cache: CiG state differs")
        return self._world.accept_cache

    def serialize(self) -> bytes:
        self._world.events.append("cache.serialize")
        return self._world.cache_blob

    def reset(self) -> None:
        pass

    def __del__(self) -> None:
        self._world.events.append("release cache")


class FakeConfig:
    def __init__(self, world: World) -> None:
        self._world = world
        self.dynamic_shapes_kernel_specialization_strategy = (
            real.DynamicShapesKernelSpecializationStrategy.LAZY
        )
        self.cuda_graph_strategy = real.CudaGraphStrategy.DISABLED
        self._alloc = real.ExecutionContextAllocationStrategy.STATIC
        self._cache: weakref.ref[FakeCache] | None = None  # rtxpack keeps the cache alive
        world.configs.append(weakref.ref(self))

    def set_execution_context_allocation_strategy(self, strategy: Any) -> None:
        self._alloc = strategy

    def get_execution_context_allocation_strategy(self) -> Any:
        return self._alloc

    def create_runtime_cache(self) -> FakeCache:
        return FakeCache(self._world)

    def set_runtime_cache(self, cache: FakeCache) -> bool:
        if self._world.refuse_cache_attach:
            return False
        self._cache = weakref.ref(cache)
        return True

    def get_runtime_cache(self) -> FakeCache | None:
        return None if self._cache is None else self._cache()

    def __del__(self) -> None:
        self._world.events.append("release config")


def _array_at(ptr: int, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(shape)


class FakeContext:
    def __init__(self, world: World, config: FakeConfig) -> None:
        self._world = world
        self._config = config  # as the real context, it relies on the config staying alive
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self.active_optimization_profile = 0
        world.contexts.append(weakref.ref(self))

    def set_optimization_profile_async(self, index: int, stream: int) -> bool:
        self._world.events.append(("set_profile", index, stream))
        self.active_optimization_profile = index
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self._world.events.append(("set_input_shape", name, tuple(shape)))
        if self._world.fail_set_shape:
            return False
        lo, _, hi = PROFILES[self.active_optimization_profile]
        if not all(a <= d <= b for a, d, b in zip(lo, shape, hi)):
            return False
        self._shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name == "y":
            return (self._shapes["x"][0], 8)
        return self._shapes[name]

    def is_stream_capturable(self, stream: int) -> bool:
        self._world.events.append(("is_stream_capturable", stream))
        return self._world.capturable

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._world.events.append(("set_tensor_address", name))
        self._addresses[name] = ptr
        return True

    def update_device_memory_size_for_shapes(self) -> int:
        return 4096

    def set_device_memory(self, ptr: int, size: int) -> None:
        self._world.events.append(("set_device_memory", size))

    def execute_async_v3(self, stream: int) -> bool:
        self._world.events.append(("execute", stream))
        if self._world.fail_execute:
            return False
        x = _array_at(self._addresses["x"], self._shapes["x"])
        y = _array_at(self._addresses["y"], (self._shapes["x"][0], 8))
        y[...] = np.maximum(x @ W, 0)
        return True

    def __del__(self) -> None:
        self._world.events.append("release context")


class FakeEngine:
    num_io_tensors = 2
    num_optimization_profiles = 2

    def __init__(self, world: World) -> None:
        self._world = world

    def get_tensor_name(self, index: int) -> str:
        return ["x", "y"][index]

    @property
    def streamable_weights_size(self) -> int:
        return self._world.streamable_bytes

    def get_weight_streaming_automatic_budget(self) -> int:
        return self._world.streamable_bytes // 2

    @property
    def weight_streaming_budget_v2(self) -> int:
        return self._world.streamable_bytes

    @weight_streaming_budget_v2.setter
    def weight_streaming_budget_v2(self, value: int) -> None:
        # with the number of contexts made so far: the budget must be set before any
        self._world.events.append(("weight_streaming_budget", value, len(self._world.contexts)))

    def get_tensor_mode(self, name: str) -> Any:
        return real.TensorIOMode.INPUT if name == "x" else real.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return real.DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 16) if name == "x" else (-1, 8)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return list(PROFILES[profile_index])

    def create_runtime_config(self) -> FakeConfig:
        return FakeConfig(self._world)

    def create_execution_context(self, config: FakeConfig) -> FakeContext | None:
        if self._world.fail_context:
            if self._world.logger is not None:
                self._world.logger.log(real.ILogger.Severity.ERROR, "out of device memory")
            return None
        return FakeContext(self._world, config)

    def __del__(self) -> None:
        self._world.events.append("release engine")


class FakeRuntime:
    def __init__(self, logger: Any) -> None:
        self._world: World = WORLD[0]
        self._logger = logger
        self._world.logger = logger

    def deserialize_cuda_engine(self, buffer: Any) -> FakeEngine | None:
        self._world.events.append(("deserialize", len(memoryview(buffer))))
        if self._world.fail_deserialize:
            self._logger.log(real.ILogger.Severity.ERROR, "engine plan is for another GPU")
            return None
        return FakeEngine(self._world)

    def __del__(self) -> None:
        self._world.events.append("release runtime")


WORLD: list[World] = []


FAKES = {
    FakeRuntime: real.Runtime,
    FakeEngine: real.ICudaEngine,
    FakeConfig: real.IRuntimeConfig,
    FakeCache: real.IRuntimeCache,
    FakeContext: real.IExecutionContext,
}


class ValidityRuntime:
    """``tensorrt_rtx.Runtime`` as ``check`` uses it: ``get_engine_validity`` answers what it was
    told to (no machine here has a GPU for the real answer)."""

    engine_header_size = 64

    def __init__(self, validity: object, diagnostics: int) -> None:
        self.result = (validity, diagnostics)
        self.seen: list[bytes] = []

    def get_engine_validity(self, buffer: memoryview) -> tuple[object, int]:
        self.seen.append(bytes(buffer[:4]))
        return self.result


def install(world: World) -> SimpleNamespace:
    """Make ``world`` the one new fakes report to; returns the fake ``tensorrt_rtx`` module."""
    WORLD[:] = [world]
    return SimpleNamespace(
        Runtime=FakeRuntime,
        ILogger=real.ILogger,
        TensorIOMode=real.TensorIOMode,
        DataType=real.DataType,
        DynamicShapesKernelSpecializationStrategy=real.DynamicShapesKernelSpecializationStrategy,
        CudaGraphStrategy=real.CudaGraphStrategy,
        ExecutionContextAllocationStrategy=real.ExecutionContextAllocationStrategy,
    )
