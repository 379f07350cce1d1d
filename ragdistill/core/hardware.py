"""What the hardware offers: the device, and the fastest dtype that does not hurt scores."""

from __future__ import annotations

import functools
import logging

from ragdistill.core.errors import InputError

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")  # PyTorch's names, in every flag


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX512-BF16, where a bf16 matmul runs several times faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return any(flag in flags for flag in ("amx_bf16", "avx512_bf16"))


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def auto_backend() -> str:
    """A teacher's --backend auto, in both pipelines: vLLM where a GPU and vLLM are present, else torch."""
    import importlib.util

    return "vllm" if has_cuda() and importlib.util.find_spec("vllm") is not None else "torch"


def default_device() -> str:
    return "cuda" if has_cuda() else "cpu"


def resolve_dtype(dtype: str = "auto") -> str:
    """'auto' -> 'bfloat16' on GPUs with bf16 and on CPUs with AMX/AVX512-BF16, else 'float32'.

    bf16 keeps fp32's exponent range, so teacher scores move by rounding only (about 3 significant digits),
    far below the score gaps that rank passages. fp16 is never chosen automatically, not even on GPUs without bf16
    (V100, T4): its range ends at 65504, so an LLM's hidden states and logits can overflow to inf or NaN, and a
    user who asks for "auto" expects the scores fp32 gives. There "auto" is fp32, and a message says that
    `float16` is faster for those who accept the risk.
    """
    if dtype not in DTYPES:
        raise InputError(None, f"unknown dtype '{dtype}': expected one of {', '.join(DTYPES)}")
    if dtype != "auto":
        return dtype
    if has_cuda():
        import torch

        if torch.cuda.is_bf16_supported(including_emulation=False):  # emulated bf16 (V100) is slow
            return "bfloat16"
        logger.warning("this GPU has no bf16: dtype auto runs in float32 (fp16 is faster but can overflow in "
                       "LLM logits; ask for float16 if you accept that)")
        return "float32"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def torch_dtype(dtype: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[resolve_dtype(dtype)]
