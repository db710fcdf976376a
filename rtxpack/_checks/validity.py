"""Asking this machine's TensorRT-RTX runtime about engines (``get_engine_validity``), and turning
its answer into findings. Only meaningful with a GPU that TensorRT-RTX can use."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._bundle import Bundle
from .._exceptions import RtxpackError
from .._format.manifest import EngineInfo
from .report import Finding

__all__ = ["decode_validity", "runtime_findings"]

_DIAGNOSTICS = {
    # bit name: (code, message, fix)
    "VERSION_MISMATCH": (
        "runtime.version_mismatch",
        "was built by a different TensorRT-RTX release than the installed one",
        "install the release that built it, or rebuild it with `rtxpack rebuild`",
    ),
    "UNSUPPORTED_CC": (
        "runtime.unsupported_cc",
        "does not support this GPU's compute capability",
        "rebuild it for this GPU with `rtxpack rebuild` (if TensorRT-RTX supports the GPU)",
    ),
    "OLD_CUDA_DRIVER": (
        "runtime.old_cuda_driver",
        "needs a newer CUDA driver than the installed one",
        "update the NVIDIA driver",
    ),
    "OLD_CUDA_RUNTIME": (
        "runtime.old_cuda_runtime",
        "needs a newer CUDA runtime than the one TensorRT-RTX uses here",
        "install the TensorRT-RTX build for the newer CUDA (tensorrt-rtx-cu13) and its runtime",
    ),
    "INSUFFICIENT_GPU_MEMORY": (
        "runtime.insufficient_gpu_memory",
        "needs more GPU memory than is free",
        "close other programs using the GPU, or use a GPU with more memory",
    ),
    "MALFORMED_ENGINE": (
        "runtime.malformed_engine",
        "is malformed (TensorRT-RTX cannot read it)",
        "re-download or rebuild the bundle",
    ),
    "CUDA_ERROR": (
        "runtime.cuda_error",
        "could not be checked because CUDA reported an error",
        "check the GPU and driver (nvidia-smi) and that no other process broke the CUDA context",
    ),
}


def decode_validity(validity: Any, diagnostics: int, engine: str) -> list[Finding]:
    """Findings for the result of ``tensorrt_rtx.Runtime.get_engine_validity``: one per
    ``EngineInvalidityDiagnostics`` bit set, a warning for SUBOPTIMAL, nothing for VALID."""
    import tensorrt_rtx as trt

    out: list[Finding] = []
    if validity == trt.EngineValidity.VALID:
        return out
    if validity == trt.EngineValidity.SUBOPTIMAL:
        return [
            Finding(
                "runtime.suboptimal",
                "warning",
                f"engine {engine!r}: TensorRT-RTX says it is suboptimal here: the GPU is "
                "newer than this TensorRT-RTX knows, so it runs through PTX, slower than a "
                "native build; upgrade TensorRT-RTX and rebuild with `rtxpack rebuild`",
                engine,
            )
        ]
    remaining = int(diagnostics)
    for bit_name, member in trt.EngineInvalidityDiagnostics.__members__.items():
        bit = int(member)
        if not remaining & bit:
            continue
        remaining &= ~bit
        code, what, fix = _DIAGNOSTICS.get(
            bit_name,
            (f"runtime.{bit_name.lower()}", f"is invalid here ({bit_name})", "rebuild it"),
        )
        out.append(
            Finding(
                code,
                "error",
                f"engine {engine!r}: TensorRT-RTX says it {what} (EngineInvalidityDiagnostics."
                f"{bit_name}); {fix}",
                engine,
            )
        )
    if remaining:
        out.append(
            Finding(
                "runtime.unknown_diagnostic",
                "error",
                f"engine {engine!r}: TensorRT-RTX says it is invalid here, with diagnostic bits "
                f"{remaining:#x} this rtxpack does not know; upgrade rtxpack for a description",
                engine,
            )
        )
    if not out:
        out.append(
            Finding(
                "engine.invalid",
                "error",
                f"engine {engine!r}: TensorRT-RTX says it is invalid here and gives no reason; "
                "check the GPU and driver, or rebuild the engine with `rtxpack rebuild`",
                engine,
            )
        )
    return out


def _make_runtime() -> Any:
    import tensorrt_rtx as trt

    return trt.Runtime(trt.Logger(trt.Logger.INTERNAL_ERROR))


def runtime_findings(bundle: Bundle, engines: Iterable[EngineInfo]) -> list[Finding]:
    try:
        runtime = _make_runtime()
    except Exception as exc:
        return [
            Finding(
                "runtime.not_checked",
                "info",
                f"could not create a TensorRT-RTX runtime to ask it about the engines ({exc})",
            )
        ]
    out: list[Finding] = []
    for info in engines:
        try:
            data = bundle.read_engine(info.name, verify=False)
            try:
                validity, diagnostics = runtime.get_engine_validity(data)
            finally:
                del data
        except RtxpackError as exc:
            out.append(Finding("format.damaged", "error", str(exc), info.name))
            continue
        except Exception as exc:
            out.append(
                Finding(
                    "runtime.not_checked",
                    "info",
                    f"TensorRT-RTX could not check engine {info.name!r} ({exc})",
                    info.name,
                )
            )
            continue
        out += decode_validity(validity, diagnostics, info.name)
    return out
