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


AGREEMENT_NAMES = ("ndcg@10 vs teacher", "spearman vs teacher", "kendall vs teacher")


def teacher_agreement(queries: Sequence[tuple[Sequence[float], Sequence[float]]], at_k: int = 10) -> dict[str, float]:
    """How closely a model ranks like the teacher, no labels needed: the mean over (model scores, teacher scores)
    pairs, one per query, of NDCG@k of the model's ranking with the teacher's scores as graded relevance (scaled to
    [0, 1] per query: the teacher's best candidate gains 1, its worst 0, so any score range works), and Spearman's
    and Kendall's (tau-b) rank correlations of the two score lists. Queries where either side gives every candidate
    the same score are skipped (no order to agree with); the teacher against itself scores 1.0 throughout."""
    from scipy.stats import kendalltau, spearmanr

    values: dict[str, list[float]] = {name: [] for name in AGREEMENT_NAMES}
    for model_scores, teacher_scores in queries:
        ours, theirs = np.asarray(model_scores, dtype=np.float64), np.asarray(teacher_scores, dtype=np.float64)
        if len(ours) != len(theirs):
            raise ValueError(f"{len(ours)} model scores against {len(theirs)} teacher scores for one query")
        if len(ours) < 2 or np.ptp(ours) == 0 or np.ptp(theirs) == 0:
            continue
        gains = (theirs - theirs.min()) / np.ptp(theirs)
        values[AGREEMENT_NAMES[0]].append(float(ndcg_score([gains], [ours], k=at_k)))
        values[AGREEMENT_NAMES[1]].append(float(spearmanr(ours, theirs).statistic))
        values[AGREEMENT_NAMES[2]].append(float(kendalltau(ours, theirs).statistic))
    if not values[AGREEMENT_NAMES[0]]:
        raise ValueError("no query has two candidates with different scores on both sides")
    return {name: float(np.mean(scores)) for name, scores in values.items()}
