"""resolve_dtype: 'auto' never picks fp16 (it can overflow in LLM logits), on any device; named dtypes pass through."""

from __future__ import annotations

import logging

import pytest
import torch

from ragdistill.core import hardware
from ragdistill.core.errors import InputError


@pytest.mark.parametrize(("cuda", "native_bf16", "fast_cpu_bf16", "expected"), [
    (True, True, False, "bfloat16"),    # A100 / H100
    (True, False, True, "float32"),     # V100 / T4: no native bf16, and fp16 is not chosen for the user
    (False, False, True, "bfloat16"),   # CPU with AVX512-BF16 or AMX
    (False, False, False, "float32"),   # older CPU
])
def test_auto_dtype(monkeypatch, caplog, cuda, native_bf16, fast_cpu_bf16, expected):
    calls = []

    def is_bf16_supported(including_emulation=True):
        calls.append(including_emulation)
        return native_bf16 or including_emulation  # emulated bf16 is "supported" on every GPU: must not count

    monkeypatch.setattr(hardware, "has_cuda", lambda: cuda)
    monkeypatch.setattr(hardware, "cpu_has_fast_bf16", lambda: fast_cpu_bf16)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    with caplog.at_level(logging.WARNING, logger="ragdistill.core.hardware"):
        assert hardware.resolve_dtype("auto") == expected
    assert hardware.torch_dtype("auto") == getattr(torch, expected)
    assert calls == ([False, False] if cuda else [])
    # the one case where fp16 would be faster says so, and how to ask for it
    assert ("ask for float16" in caplog.text) == (cuda and not native_bf16)


@pytest.mark.parametrize("name", ["float16", "bfloat16", "float32"])
def test_named_dtypes_pass_through(monkeypatch, name):
    monkeypatch.setattr(hardware, "has_cuda", lambda: pytest.fail("a named dtype must not look at the device"))
    assert hardware.resolve_dtype(name) == name


@pytest.mark.parametrize("name", ["fp32", "bf16", "half", ""])
def test_other_dtype_names_are_refused(name):
    with pytest.raises(InputError, match="expected one of auto, float32, bfloat16, float16"):
        hardware.resolve_dtype(name)
