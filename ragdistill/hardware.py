"""What the hardware offers: the device, and the fastest dtype that does not hurt scores."""

from __future__ import annotations

import functools


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


def default_device() -> str:
    return "cuda" if has_cuda() else "cpu"


def resolve_dtype(dtype: str = "auto") -> str:
    """'auto' -> 'bfloat16' on GPUs with bf16 and on CPUs with AMX/AVX512-BF16, else 'float32'.

    bf16 keeps fp32's exponent range, so teacher scores move by rounding only (about 3 significant digits),
    far below the score gaps that rank passages; fp16 is not chosen automatically (overflow risk in logits).
    """
    if dtype != "auto":
        return {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}.get(dtype, dtype)
    if has_cuda():
        import torch

        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if cpu_has_fast_bf16() else "float32"


def torch_dtype(dtype: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[resolve_dtype(dtype)]
