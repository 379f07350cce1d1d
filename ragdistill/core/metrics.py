"""Ranking metrics from per-query scores, computed the way sentence-transformers' reranking evaluators do.

Used for the teacher row of the comparison tables: the teacher's metrics come from its stored scores, so it is
never run a second time. Same formulas as the student's evaluator, so the rows compare like for like.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, ndcg_score

METRIC_NAMES = ("map", "mrr@10", "ndcg@10")


def query_metrics(is_relevant: Sequence[bool], scores: Sequence[float], at_k: int = 10,
                  ties: str = "stable") -> dict[str, float]:
    """MAP (average precision over all candidates), MRR@k and NDCG@k for one query.

    MAP and NDCG treat equal scores as one group; MRR needs an order among them, `ties`:
    "stable" (the candidate listed first ranks higher), or "cross-encoder" (exactly what sentence-transformers'
    CrossEncoderRerankingEvaluator does, `np.argsort(scores)[::-1]` on float32 scores, so its rows and ours
    compare like for like even where scores tie).
    """
    relevant = np.asarray(is_relevant, dtype=bool)
    if ties == "cross-encoder":
        order = np.argsort(np.asarray(scores, dtype=np.float32))[::-1]
    elif ties == "stable":
        order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    else:
        raise ValueError(f"unknown ties={ties!r}, expected 'stable' or 'cross-encoder'")
    scores = np.asarray(scores, dtype=np.float64)
    top_hits = np.flatnonzero(relevant[order][:at_k])
    mrr = 1.0 / (top_hits[0] + 1) if len(top_hits) else 0.0
    return {
        "map": float(average_precision_score(relevant, scores)),
        f"mrr@{at_k}": float(mrr),
        f"ndcg@{at_k}": float(ndcg_score([relevant.astype(float)], [scores], k=at_k)),
    }


def ranking_metrics(queries: Sequence[tuple[Sequence[bool], Sequence[float]]], at_k: int = 10,
                    ties: str = "stable") -> dict[str, float]:
    """Mean of the per-query metrics over (is_relevant, scores) pairs; queries without both labels are skipped."""
    per_query = [query_metrics(rel, sc, at_k, ties) for rel, sc in queries if 0 < sum(rel) < len(rel)]
    if not per_query:
        raise ValueError("no query has both a relevant and a non-relevant candidate")
    return {name: float(np.mean([m[name] for m in per_query])) for name in per_query[0]}
