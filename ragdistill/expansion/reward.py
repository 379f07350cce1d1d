"""The reward of a rewritten query: how well the first stage retrieves with it.

NDCG@k of the retrieved list, with gains from the qrels where there are labels, or, label-free, from the teacher's
scores of the retrieved documents against the ORIGINAL query (never the rewrite: a policy must not grade itself),
scaled to [0, 1] per query (`unit_scaled`; ragdistill.expansion.environment.Grader pools them). A rewrite that is empty, over the length
limit or a copy of the query earns a counted zero, never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MAX_REWRITE_WORDS = 64  # a rewrite longer than this is rambling, not a query


def ndcg_at_k(ranked: Sequence[str], gains: Mapping[str, float], k: int = 10) -> float:
    """NDCG@k of a ranked list of document ids with graded `gains` (ids not in it gain 0); 0 when nothing gains."""
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    if not ideal:
        return 0.0
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = sum(gains.get(doc, 0.0) * discounts[rank] for rank, doc in enumerate(ranked[:k]))
    return float(dcg / np.dot(ideal, discounts[:len(ideal)]))


def recall_at_k(ranked: Sequence[str], gains: Mapping[str, float], k: int) -> float:
    relevant = {doc for doc, gain in gains.items() if gain > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def unit_scaled(values: Sequence[float]) -> np.ndarray:
    """`values` scaled to [0, 1] (the best 1, the worst 0; all equal: all 1): teacher scores as graded gains."""
    values = np.asarray(values, dtype=np.float64)
    spread = float(np.ptp(values)) if len(values) else 0.0
    return (values - values.min()) / spread if spread > 0 else np.ones_like(values)


def rewrite_problem(original: str, rewrite: str, max_words: int = MAX_REWRITE_WORDS) -> str | None:
    """Why a rewrite earns nothing ('empty', 'too_long', 'copies'), or None."""
    words = rewrite.split()
    if not words:
        return "empty"
    if len(words) > max_words:
        return "too_long"
    if " ".join(words).lower() == " ".join(original.split()).lower():
        return "copies"
    return None
