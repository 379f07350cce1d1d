"""Batching for the torch backends: length-sorted batches, a token budget on GPUs, shared prompt prefixes."""

from __future__ import annotations

from collections.abc import Sequence

from ragdistill.core.errors import InputError

# Padded tokens per forward pass on a GPU when not told otherwise: small fixed batches leave a GPU waiting on kernel
# launches, and a token budget lets short pairs go many to a pass while keeping an 8B teacher's activations to a few
# GB. On CPUs a fixed batch of rows already keeps the cores busy. Measurements: docs/benchmarks/defaults.md.
GPU_MAX_BATCH_TOKENS = 16384


# Padded batches are made a multiple of 8 tokens wide. Besides suiting tensor cores, this avoids a silent PyTorch bug
# (pytorch/pytorch#191937): on CUDA, SDPA's memory-efficient kernel with a padding mask and GQA's broadcast keys
# returns wrong attention for some key lengths (seen on an H100: docs/benchmarks/defaults.md).
PAD_TO_MULTIPLE_OF = 8


def padded_width(rows: Sequence[Sequence[int]]) -> int:
    """Width of a padded batch of these token rows: the longest, rounded up to PAD_TO_MULTIPLE_OF."""
    return -(-max(len(row) for row in rows) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF


def resolve_max_batch_tokens(max_batch_tokens: int, device: str) -> int:
    """0 = auto: GPU_MAX_BATCH_TOKENS on GPUs, off (fixed batch_size rows) on CPUs."""
    if max_batch_tokens:
        return max_batch_tokens
    return GPU_MAX_BATCH_TOKENS if str(device).startswith("cuda") else 0


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an out-of-memory shows up at once).

    With `max_batch_tokens`, a batch takes rows while rows x its longest row fit the budget (at least one row),
    so short pairs go many to a forward pass and long ones few; otherwise `batch_size` rows each.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if not max_batch_tokens:
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# Shortest shared prompt prefix worth computing once (tokens): the system prompt alone is longer.
MIN_SHARED_PREFIX = 16
SHARE_PREFIXES = ("auto", "on", "off")


def resolve_share_prefixes(share_prefixes: str, device: str) -> bool:
    """auto = on on CPUs, where it measured faster; off on GPUs, where it has not been measured yet."""
    if share_prefixes not in SHARE_PREFIXES:
        raise InputError(None, f"--share_prefixes {share_prefixes}: expected one of {', '.join(SHARE_PREFIXES)}")
    if share_prefixes == "auto":
        return not str(device).startswith("cuda")
    return share_prefixes == "on"


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens all sequences begin with, leaving every sequence at least one token of its own."""
    first, limit = sequences[0], min(len(s) for s in sequences) - 1
    for k in range(limit):
        if any(s[k] != first[k] for s in sequences[1:]):
            return k
    return max(limit, 0)

