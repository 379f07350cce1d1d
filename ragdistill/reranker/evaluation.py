"""Stage 4 of Reranker-Distillation: the student before and after training next to the teacher.

- Student rows: sentence-transformers' CrossEncoderRerankingEvaluator on the MTEB test file. Samples are given
  as {"query", "positive", "negative"}, so every candidate of the file is scored and ranked (no first-stage
  retrieval cut-off); MAP is over all candidates, MRR and NDCG at 10. The model's activation is set to identity
  while evaluating: the ranking uses raw logits (a sigmoid in float32 saturates and can tie distinct logits).
- Teacher row: from the teacher's stage-1 scores of the same test file (no second teacher run), through
  ragdistill.core.metrics with the evaluator's own tie order. Every run checks that ragdistill.core.metrics on the
  student's recorded predictions reproduces the evaluator's numbers, so the rows are computed alike.
- Throughput (pairs/s) of the student before and after (ragdistill.core.speed), and the teacher's from the stage-1
  metadata (measured there, with its backend and hardware).
- A scatter of teacher vs student scores on every test pair, before and after.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import iter_jsonl
from ragdistill.core.metrics import ranking_metrics
from ragdistill.core.mteb import RerankingSample, first_queries, iter_samples
from ragdistill.core.resumable import require_complete

METRICS = ("map", "mrr@10", "ndcg@10")
SPEED = "pairs/s"


def read_test_samples(path: str | Path, max_queries: int = 0) -> list[RerankingSample]:
    return first_queries(iter_samples(path), max_queries)


def flat_pairs(samples: Sequence[RerankingSample]) -> list[tuple[str, str]]:
    """Every (query, candidate) of the samples, positives first: the order the evaluator scores them in."""
    return [(s.query, doc) for s in samples for doc in s.positive + s.negative]


def relevance(samples: Sequence[RerankingSample]) -> list[list[bool]]:
    return [[True] * len(s.positive) + [False] * len(s.negative) for s in samples]


def split_per_query(flat: Sequence[float], samples: Sequence[RerankingSample]) -> list[list[float]]:
    out, start = [], 0
    for s in samples:
        n = len(s.positive) + len(s.negative)
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


@contextlib.contextmanager
def recorded_predictions(model) -> Iterator[list[np.ndarray]]:
    """Record what model.predict returns while the evaluator runs (so the scores are not computed twice), with
    the activation off (raw logits)."""
    import torch

    recorded: list[np.ndarray] = []
    predict, activation = model.predict, model.activation_fn

    def record(*args, **kwargs):
        scores = predict(*args, **kwargs)
        recorded.append(np.asarray(scores, dtype=np.float32))
        return scores

    model.predict = record
    model.activation_fn = torch.nn.Identity()
    try:
        yield recorded
    finally:
        del model.predict  # back to the class's method
        model.activation_fn = activation


def evaluate_cross_encoder(model, samples: Sequence[RerankingSample], batch_size: int = 64,
                           name: str = "") -> tuple[dict[str, float], list[float]]:
    """CrossEncoderRerankingEvaluator metrics over all candidates, and the model's raw score for every pair."""
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    evaluator = CrossEncoderRerankingEvaluator(
        samples=[s.as_dict() for s in samples], at_k=10, name=name, batch_size=batch_size, write_csv=False,
        show_progress_bar=True,
    )
    with recorded_predictions(model) as recorded:
        results = evaluator(model)
    prefix = f"{name}_" if name else ""
    metrics = {metric: float(results[prefix + metric]) for metric in METRICS}
    scores = np.concatenate(recorded).tolist() if recorded else []
    if len(scores) != len(flat_pairs(samples)):
        raise RuntimeError(f"recorded {len(scores)} predictions for {len(flat_pairs(samples))} test pairs")
    # Same scores through ragdistill.core.metrics must give the evaluator's numbers, or the teacher row would not
    # be comparable.
    ours = ranking_metrics(list(zip(relevance(samples), split_per_query(scores, samples))), ties="cross-encoder")
    for metric in METRICS:
        if not math.isclose(ours[metric], metrics[metric], rel_tol=1e-9, abs_tol=1e-12):
            raise RuntimeError(f"ragdistill.core.metrics gives {metric}={ours[metric]} on the evaluator's own scores, "
                               f"the evaluator {metrics[metric]}: the teacher row would not compare like for like")
    return metrics, scores


def teacher_metrics(scores: Sequence[float], samples: Sequence[RerankingSample]) -> dict[str, float]:
    return ranking_metrics(list(zip(relevance(samples), split_per_query(scores, samples))), ties="cross-encoder")


def throughput(model, pairs: Sequence[tuple[str, str]], batch_size: int) -> float:
    """Pairs per second of model.predict on `pairs` (after a short warm-up)."""
    from ragdistill.core.speed import items_per_second

    return items_per_second(lambda items: model.predict(list(items), batch_size=batch_size, show_progress_bar=False),
                            list(pairs))

