"""Inference options of the frame network that keep the math (``MODEL.STMASK.INFERENCE``): BatchNorm folding
(:mod:`.fold_bn`), channels_last memory format and a bfloat16 option for CPUs with native bf16.

bf16 support is detected from oneDNN (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) or, where that is not
available, from the CPU flags in /proc/cpuinfo (``avx512_bf16`` or ``amx_bf16``); elsewhere bfloat16 falls back to
float32 with one log line.
"""
import functools
import logging

import torch

__all__ = ["cpu_has_native_bf16", "resolve_inference_dtype", "cast_floats"]

logger = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX): bf16 convs / matmuls then run faster than
    fp32 instead of being emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


_logged = set()


def resolve_inference_dtype(name: str, device_type: str) -> torch.dtype:
    """``MODEL.STMASK.INFERENCE.DTYPE`` -> the dtype the frame network runs in on ``device_type``.

    "float32": float32. "bfloat16": bfloat16 on CUDA, and on CPUs with native bf16; float32 elsewhere (logged
    once). "auto": bfloat16 where the CPU has native bf16, else float32 (CUDA: float32)."""
    n = str(name).lower()
    if n in ("float32", "fp32"):
        return torch.float32
    if n not in ("bfloat16", "bf16", "auto"):
        raise ValueError(f"MODEL.STMASK.INFERENCE.DTYPE must be float32, bfloat16 or auto, got {name!r}.")
    if device_type == "cuda":
        return torch.bfloat16 if n != "auto" else torch.float32
    if cpu_has_native_bf16():
        if ("bf16", device_type) not in _logged:
            _logged.add(("bf16", device_type))
            logger.info("Inference in bfloat16 (CPU with native bf16: AVX512-BF16 / AMX).")
        return torch.bfloat16
    if n != "auto" and ("fp32", device_type) not in _logged:
        _logged.add(("fp32", device_type))
        logger.info("MODEL.STMASK.INFERENCE.DTYPE bfloat16: this CPU has no native bf16 (AVX512-BF16 / AMX); "
                    "running in float32.")
    return torch.float32


def cast_floats(obj, dtype=torch.float32):
    """Tensors (also in dicts / lists / tuples) of a floating dtype other than ``dtype`` cast to it."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() and obj.dtype != dtype else obj
    if isinstance(obj, dict):
        return {k: cast_floats(v, dtype) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cast_floats(v, dtype) for v in obj)
    return obj
