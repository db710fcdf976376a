"""Reading an engine's TensorRT-RTX version and targets from its first bytes (no library needed)."""

from __future__ import annotations

from dataclasses import dataclass

from .._facts import HEADER_CC_BITS, HEADER_PTX_BIT

__all__ = ["EngineHeader", "sniff_engine_header"]


@dataclass(frozen=True)
class EngineHeader:
    trt_version: str  # major.minor.patch
    compute_capabilities: tuple[str, ...]
    hardware_portable: bool


def sniff_engine_header(data: bytes | memoryview) -> EngineHeader | None:
    """Read the TensorRT-RTX version and targets from an engine's first bytes, if recognized."""
    head = bytes(data[:64])
    if len(head) < 33 or head[:4] != b"vtrt":
        return None
    mask = head[32]
    return EngineHeader(
        trt_version=f"{head[24]}.{head[25]}.{head[26]}",
        compute_capabilities=tuple(cc for bit, cc in HEADER_CC_BITS.items() if mask >> bit & 1),
        hardware_portable=bool(mask >> HEADER_PTX_BIT & 1),
    )
