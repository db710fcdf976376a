"""The ONNX Runtime backend: a bundle's ONNX source behind the same module interface.

Used by ``rtxpack.load(..., fallback="onnxruntime")`` on machines TensorRT-RTX cannot run on, and
by ``rtxpack verify --run``. Inputs are checked exactly as the TensorRT-RTX module checks them
(``base``), against the signature and optimization profiles recorded in the bundle.
"""

from __future__ import annotations

import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._exceptions import BackendError, RtxpackError, TensorMismatchError
from .._format.manifest import TensorSpec
from .base import (
    EngineModule,
    Signature,
    bind_inputs,
    check_tensors,
    choose_profile,
    pack_outputs,
    torch_dtype,
)
from .external_data import refuse_outside_data
from .session import open_session

__all__ = ["OnnxRuntimeModule", "cuda_provider_available"]

_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(bfloat16)": "bfloat16",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendError(
            "the ONNX Runtime fallback needs onnxruntime: pip install onnxruntime "
            "(or onnxruntime-gpu)"
        ) from None
    return onnxruntime


def cuda_provider_available() -> bool:
    try:
        return "CUDAExecutionProvider" in _ort().get_available_providers()
    except BackendError:
        return False


def _signature_from_session(session: Any) -> Signature:
    def spec(arg: Any) -> TensorSpec:
        dtype = _ORT_DTYPES.get(arg.type)
        if dtype is None:
            raise BackendError(f"ONNX input/output {arg.name!r} has type {arg.type}, unsupported")
        shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in arg.shape)
        return TensorSpec(arg.name, dtype, shape)

    return Signature(
        tuple(spec(a) for a in session.get_inputs()), tuple(spec(a) for a in session.get_outputs())
    )


class OnnxRuntimeModule(EngineModule):
    """The bundle's ONNX source run by ONNX Runtime, with the TensorRT-RTX module's interface.

    ``device`` is where inputs must be and outputs are returned: ``cpu`` (CPUExecutionProvider)
    or ``cuda[:N]`` when onnxruntime-gpu's CUDAExecutionProvider is available.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        onnx_model: bytes | Path,
        *,
        name: str = "main",
        signature: Signature | None = None,
        device: torch.device | str = "cpu",
        output_tree: Any = None,
        workdir: Path | None = None,
    ) -> None:
        """``onnx_model`` is the model's bytes, or the path of a graph whose external data files
        lie beside it. ``workdir``, if given, is a folder this module owns: it is removed when
        the module is closed or collected (``rtxpack.load`` materializes a bundle's source
        there). A bf16 model on the CPU runs as a float32 copy written into ``workdir``."""
        super().__init__()
        self._workdir = workdir
        self._cleanup = weakref.finalize(
            self, shutil.rmtree, str(workdir) if workdir else "", ignore_errors=True
        )
        if workdir is None:
            self._cleanup.detach()
        ort = _ort()
        self.output_tree = output_tree
        self._upcast = False
        self.engine_name = name
        self.device = torch.device(device)
        self.return_dict = False
        if self.device.type == "cuda":
            if not cuda_provider_available():
                raise BackendError(
                    "ONNX Runtime has no CUDAExecutionProvider here; use device='cpu' or install "
                    "onnxruntime-gpu"
                )
            providers: list[Any] = [
                ("CUDAExecutionProvider", {"device_id": self.device.index or 0}),
                "CPUExecutionProvider",
            ]
        else:
            providers = ["CPUExecutionProvider"]
        if not isinstance(onnx_model, Path):
            # Given as bytes, ONNX Runtime would read external data from the current folder.
            # (A path is a materialized source, checked against the bundle's own data files.)
            refuse_outside_data(onnx_model, what=f"the ONNX source of engine {name!r}")
        try:
            if isinstance(onnx_model, Path):
                self._session, self._upcast = open_session(
                    onnx_model, providers, workdir or onnx_model.parent
                )
            else:
                self._session = ort.InferenceSession(bytes(onnx_model), providers=providers)
        except RtxpackError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise BackendError(
                f"ONNX Runtime could not load the ONNX source of engine {name!r}: {exc}"
            ) from None
        session_sig = _signature_from_session(self._session)
        if signature is None or not signature.inputs:
            signature = session_sig
        elif set(signature.input_names) != set(session_sig.input_names):
            raise BackendError(
                f"engine {name!r}: the bundle records inputs {signature.input_names}, its ONNX "
                f"source has {session_sig.input_names}; the bundle is inconsistent — rebuild it"
            )
        self.signature = signature
        self.closed = False

    def forward(self, *args: Any, return_dict: bool | None = None, **kwargs: Any) -> Any:
        if self.closed:
            raise BackendError(f"engine {self.engine_name!r} was closed; load the bundle again")
        sig = self.signature
        tensors = bind_inputs(sig, args, kwargs)
        check_tensors(sig, tensors, self.device)
        choose_profile(sig, [tuple(t.shape) for t in tensors])
        feeds = {}
        for spec, t in zip(sig.inputs, tensors):
            if t.dtype == torch.bfloat16 and self._upcast:
                t = t.float()  # the session runs the model's float32 copy
            elif t.dtype == torch.bfloat16:
                raise TensorMismatchError(
                    f"input {spec.name!r}: ONNX Runtime on {self.device} cannot take bfloat16 "
                    "tensors from torch; load with device='cpu', where the fallback runs a "
                    "float32 copy of a bf16 model and takes and returns bfloat16"
                )
            feeds[spec.name] = np.ascontiguousarray(
                t.detach().cpu().resolve_conj().resolve_neg().numpy()
            )
        try:
            results = self._session.run(list(sig.output_names), feeds)
        except Exception as exc:
            raise BackendError(
                f"ONNX Runtime failed to run engine {self.engine_name!r}: {exc}"
            ) from None
        outputs = [torch.from_numpy(np.asarray(r)).to(self.device) for r in results]
        if self._upcast:  # back to the dtypes the bundle records (bf16)
            outputs = [o.to(torch_dtype(s.dtype) or o.dtype) for o, s in zip(outputs, sig.outputs)]
        as_dict = self.return_dict if return_dict is None else return_dict
        return pack_outputs(sig.output_names, outputs, as_dict, self.output_tree)

    def close(self) -> None:
        """Release the ONNX Runtime session and remove its working folder. Idempotent."""
        self.closed = True
        self.__dict__.pop("_session", None)
        self._cleanup()

    def extra_repr(self) -> str:
        return (
            f"engine={self.engine_name!r}, backend=onnxruntime, device={self.device}, "
            f"inputs={self.input_names}, outputs={self.output_names}"
        )
