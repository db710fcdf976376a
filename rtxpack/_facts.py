"""What rtxpack knows about TensorRT-RTX itself: which GPUs it targets, which drivers its builds
need, how its engines and data types are spelled. Every such fact lives here and nowhere else.

Sources: NVIDIA's TensorRT-RTX 1.7 documentation (supported compute capabilities, the
``ComputeCapability`` and ``DataType`` enums) and NVIDIA's "CUDA Compatibility" guide (driver
floors). The engine-header layout is observed on TensorRT-RTX 1.7.1 engines, not documented.
"""

from __future__ import annotations

from ._text import version_tuple

__all__ = [
    "DRIVER_FLOOR",
    "HEADER_CC_BITS",
    "HEADER_PTX_BIT",
    "NEWEST_KNOWN_CC",
    "SUPPORTED_CCS",
    "TRT_DTYPES",
    "cc_tuple",
    "release_of",
    "same_release",
    "supports_cc",
]

#: Compute capabilities TensorRT-RTX 1.7 can target, with its ``ComputeCapability`` member names.
SUPPORTED_CCS = {
    "7.5": "SM75",
    "8.0": "SM80",
    "8.6": "SM86",
    "8.9": "SM89",
    "12.0": "SM120",
    "12.1": "SM121",
}


def cc_tuple(cc: str) -> tuple[int, int]:
    """``"8.9"`` -> (8, 9)."""
    major, minor = cc.split(".")
    return int(major), int(minor)


#: The newest GPU this TensorRT-RTX names; newer GPUs run default (PTX) engines too.
NEWEST_KNOWN_CC = max(SUPPORTED_CCS, key=cc_tuple)

#: Lowest NVIDIA driver branch for each CUDA major version a TensorRT-RTX build is made for
#: (TensorRT-RTX ships separate CUDA 12.9 and CUDA 13.x builds). Source: NVIDIA, "CUDA
#: Compatibility", Minor Version Compatibility, table 1 (CUDA 13.x >= 580, CUDA 12.x >= 525).
DRIVER_FLOOR = {12: 525, 13: 580}

#: Engine header: bytes 0..3 are b"vtrt", 24..26 the TensorRT-RTX major/minor/patch, byte 32 a
#: bit mask of targets (bit -> compute capability), and this bit for default builds, which also
#: run on newer GPUs through PTX.
HEADER_CC_BITS = {0: "7.5", 1: "8.0", 2: "8.6", 3: "8.9", 4: "12.0", 5: "12.1"}
HEADER_PTX_BIT = 6

#: ``tensorrt_rtx.DataType`` member name -> rtxpack's dtype name.
TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
    "UINT8": "uint8",
    "FP8": "float8_e4m3fn",
    "INT4": "int4",
    "FP4": "float4_e2m1fn_x2",
    "E8M0": "float8_e8m0fnu",
}


def supports_cc(cc: str) -> bool:
    """Whether TensorRT-RTX runs on GPUs of this compute capability at all (Turing 7.5 and the
    RTX GPUs after it; GPUs newer than it knows run through PTX). Hopper 9.0, data-center
    Blackwell 10.x and anything below 7.5 are not supported."""
    have = cc_tuple(cc)
    return have in {cc_tuple(c) for c in SUPPORTED_CCS} or have > cc_tuple(NEWEST_KNOWN_CC)


def release_of(version: str) -> tuple[int, ...]:
    """The part of a TensorRT-RTX version that engines and caches are tied to: major.minor.patch."""
    return version_tuple(version)[:3]


def same_release(a: str, b: str) -> bool:
    return release_of(a) == release_of(b)
