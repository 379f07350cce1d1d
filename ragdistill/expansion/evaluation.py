"""Rewriters side by side on held-out queries, per first stage: NDCG@10, Recall@10, Recall@100, MRR@10 and what a
rewrite costs a query before the final search (its feedback search, embeddings and policy or generation).

Graded by the labels where the queries have them, and by the teacher against the original query where a teacher is
given (label-free: NDCG@10 only; each query's lists of every method are graded on one pool, so rows compare).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ragdistill.expansion.environment import Grader, RetrievalEnvironment
from ragdistill.expansion.rewriters.base import Rewrite, Rewriter

ORIGINAL = "original query"
RANK_DEPTH = 100  # retrieved per query: Recall@100


def rewrite_all(environment: RetrievalEnvironment, rewriters: Sequence[Rewriter | None], queries: Sequence[str],
                feedback_documents: int) -> list[tuple[str, list[Rewrite], float, Counter]]:
    """Each method's rewrites of `queries` (None: the original query), the seconds per query they took, including
    the feedback search where the method reads one, and the rewrites that earn nothing, by reason."""
    out = []
    for rewriter in rewriters:
        if rewriter is None:
            out.append((ORIGINAL, [Rewrite(q) for q in queries], 0.0, Counter()))
            continue
        start = time.perf_counter()
        feedback = environment.feedback(queries, feedback_documents) if rewriter.uses_feedback else None
        rewrites = rewriter.rewrite(queries, feedback)
        seconds = (time.perf_counter() - start) / max(len(queries), 1)
        out.append((rewriter.describe(), rewrites, seconds, Counter(r.problem for r in rewrites if r.problem)))
    return out


def evaluate(environment: RetrievalEnvironment, grader: Grader, qids: Sequence[str],
             methods: list[tuple[str, list[Rewrite], float, Counter]], first_stage: str, k: int = 10) -> list[dict]:
    """One row per method: its metrics on `qids` with `first_stage` (Recall and MRR by labels or sources, not by the
    teacher)."""
    found = [[[d for d, _ in hits] for hits in environment.search(rewrites, RANK_DEPTH, first_stage)]
             for _, rewrites, _, _ in methods]
    # a usable rewrite that retrieves nothing (no word of it in the corpus) also earns zero: counted with the rest
    no_results = [sum(1 for r, ranked in zip(rewrites, lists) if r.problem is None and not ranked)
                  for (_, rewrites, _, _), lists in zip(methods, found)]
    per_method: list[list[list[float]]] = [[] for _ in methods]
    for position, qid in enumerate(qids):
        lists = [ranked[position] for ranked in found]
        ndcgs = grader.ndcg(qid, lists, k)
        relevant = set(grader.gains(qid, [])) if grader.grading != "teacher" else set()
        for m, ranked in enumerate(lists):
            row = [ndcgs[m]]
            if grader.grading != "teacher":
                first = next((r for r, d in enumerate(ranked[:k]) if d in relevant), None)
                row += [grader.recall(qid, ranked, k), grader.recall(qid, ranked, RANK_DEPTH),
                        0.0 if first is None else 1.0 / (first + 1)]
            per_method[m].append(row)
    rows = []
    names = ["ndcg@10", "recall@10", "recall@100", "mrr@10"] if grader.grading != "teacher" else ["ndcg@10"]
    for (name, _, seconds, problems), values, empty in zip(methods, per_method, no_results):
        problems = problems + Counter({"no_results": empty}) if empty else problems
        means = np.mean(values, axis=0) if values else np.zeros(len(names))
        rows.append({"method": name, "first_stage": first_stage, "grading": grader.grading,
                     **dict(zip(names, np.round(means, 4).tolist())), "rewrite_ms": round(1000 * seconds, 2),
                     "zero_reward_rewrites": sum(problems.values()), "problems": dict(problems)})
    return rows


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted rows (relative change against the original query's NDCG@10)."""
    base = rows[0]["ndcg@10"] or 1e-12
    labels = "recall@10" in rows[0]
    headers = ["method", "NDCG@10", "vs original"] + (["Recall@10", "Recall@100", "MRR@10"] if labels else []) + [
        "rewrite ms/query", "zero-reward rewrites"]
    out = []
    for r in rows:
        cells = [r["method"], f"{r['ndcg@10']:.4f}", f"{100 * (r['ndcg@10'] / base - 1):+.1f}%"]
        if labels:
            cells += [f"{r['recall@10']:.4f}", f"{r['recall@100']:.4f}", f"{r['mrr@10']:.4f}"]
        out.append(cells + [f"{r['rewrite_ms']:.1f}", str(r["zero_reward_rewrites"])])
    return headers, out
