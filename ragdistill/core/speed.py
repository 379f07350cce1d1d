"""Throughput measurement, so tables can show the speed a small student keeps next to its teacher."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any


def items_per_second(run: Callable[[Sequence[Any]], Any], items: Sequence[Any], warmup: int = 8) -> float:
    """Time `run(items)` once after a short warm-up call; return items per second."""
    if not items:
        return float("nan")
    if warmup:
        run(items[:warmup])
    start = time.perf_counter()
    run(items)
    return len(items) / max(time.perf_counter() - start, 1e-9)
