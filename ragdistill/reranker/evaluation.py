"""Stage 4 of Reranker-Distillation: the student before and after training next to the teacher.

- Student rows: every candidate of the MTEB test file is scored with the student's own `predict` (no first-stage
  retrieval cut-off), with the identity as activation: the ranking uses raw logits (a sigmoid in float32 saturates
  and can tie distinct logits). MAP is over all candidates, MRR and NDCG at 10.
- Teacher row: from the teacher's stage-1 scores of the same test file (no second teacher run).
- Both rows go through ragdistill.core.metrics with the tie order of sentence-transformers'
  CrossEncoderRerankingEvaluator, so they compare like for like and with the evaluator's numbers
  (tests/test_reranker_evaluation.py checks that they are equal).
- Throughput (pairs/s) of the student before and after (ragdistill.core.speed), and the teacher's from the stage-1
  metadata (measured there, with its backend and hardware).
- A scatter of teacher vs student scores on every test pair, before and after.
- Agreement with the teacher (ragdistill.core.metrics.teacher_agreement), which needs no labels: a test file without
  labels (candidate lists) is measured by it alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import iter_jsonl
from ragdistill.core.metrics import ranking_metrics
from ragdistill.core.mteb import RerankingSample, all_labelled, first_queries, iter_samples
from ragdistill.core.pipeline import StudentScores
from ragdistill.core.resumable import require_complete

SPEED = "pairs/s"


def read_test_samples(path: str | Path, max_queries: int = 0) -> list[RerankingSample]:
    return first_queries(iter_samples(path), max_queries)


def flat_pairs(samples: Sequence[RerankingSample]) -> list[tuple[str, str]]:
    """Every (query, candidate) of the samples in file order (positives first where there are labels: the order of
    `relevance` and of the scores)."""
    return [(s.query, doc) for s in samples for doc in s.candidates]


def relevance(samples: Sequence[RerankingSample]) -> list[list[bool]]:
    return [[True] * len(s.positive) + [False] * len(s.negative) for s in samples]


def split_per_query(flat: Sequence[float], samples: Sequence[RerankingSample]) -> list[list[float]]:
    out, start = [], 0
    for s in samples:
        n = len(s.candidates)
        out.append([float(x) for x in flat[start:start + n]])
        start += n
    return out


def teacher_test_scores(score_file: str | Path, samples: Sequence[RerankingSample]) -> tuple[list[float], dict]:
    """The teacher's stage-1 score for every test pair (flat, evaluator order), and the stage-1 metadata."""
    if not Path(score_file).exists() and not Path(f"{score_file}.parts").exists():
        raise InputError(score_file, "no teacher scores for the test file: score it in stage 1 (score.sh "
                                     "scores TRAIN_FILE and TEST_FILE), or pass --teacher_scores '' to leave the "
                                     "teacher row out")
    meta = require_complete(score_file, "score.py (bash score.sh) on the test file")
    wanted = {s.query for s in samples}
    scores: dict[tuple[str, str], float] = {}
    for _, row in iter_jsonl(score_file):
        if row["query"] in wanted:
            scores[(row["query"], row["passage"])] = float(row["score"])
    pairs = flat_pairs(samples)
    missing = [pair for pair in pairs if pair not in scores]
    if missing:
        query, passage = missing[0]
        raise InputError(score_file, f"has no teacher score for {len(missing)} of the {len(pairs)} test pairs (first: "
                                     f"query {query[:60]!r}, passage {passage[:60]!r}). Score the same test file "
                                     "in stage 1 (without a smaller --max_queries than here)")
    return [scores[pair] for pair in pairs], meta


def evaluate_student(model, samples: Sequence[RerankingSample], batch_size: int = 32,
                     show_progress_bar: bool = False) -> StudentScores:
    """MAP / MRR@10 / NDCG@10 of a CrossEncoder over all candidates (none for samples without labels), and per
    sample its raw score (logit) for each candidate, ranked as the teacher's row is (metrics_from_scores) so that
    the rows compare like for like."""
    import torch

    scores = model.predict(flat_pairs(samples), batch_size=batch_size, activation_fn=torch.nn.Identity(),
                           convert_to_numpy=True, show_progress_bar=show_progress_bar)
    scores = np.asarray(scores, dtype=np.float32)
    metrics = metrics_from_scores(scores.tolist(), samples) if all_labelled(samples) else {}
    bounds = np.cumsum([0] + [len(s.candidates) for s in samples])
    return StudentScores(metrics, [scores[start:end] for start, end in zip(bounds[:-1], bounds[1:])])


def metrics_from_scores(scores: Sequence[float], samples: Sequence[RerankingSample]) -> dict[str, float]:
    """MAP / MRR@10 / NDCG@10 of flat scores (flat_pairs order), ties ranked as CrossEncoderRerankingEvaluator
    ranks them."""
    return ranking_metrics(list(zip(relevance(samples), split_per_query(scores, samples))), ties="cross-encoder")



def throughput(model, pairs: Sequence[tuple[str, str]], batch_size: int) -> float:
    """Pairs per second of model.predict on `pairs` (after a short warm-up)."""
    from ragdistill.core.speed import items_per_second

    return items_per_second(lambda items: model.predict(list(items), batch_size=batch_size, show_progress_bar=False),
                            list(pairs))

