"""Stage 4 of Embedding-Distillation: the pieces behind evaluation.py.

The students (before and after training) are scored through their public sentence-transformers API (`encode_query`,
`encode_document`, `similarity`); the teacher's row comes from its stored similarities
(ragdistill.embedding.scoring.cached_teacher_scores, full float32 precision). Both go through
`metrics_from_similarities`, which computes MAP / MRR@10 / NDCG@10 as sentence-transformers' RerankingEvaluator does,
with its order among tied scores (`evaluator_order`), so the rows compare like for like and with the evaluator's
numbers (tests/test_embedding_evaluation.py checks that they are equal).

Every file also gets a table of the students' agreement with the teacher (ragdistill.core.metrics.teacher_agreement),
which needs no labels: a file without labels (candidate lists) gets that table alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.metrics import ranking_metrics
from ragdistill.core.mteb import RerankingSample, all_labelled
from ragdistill.core.pipeline import StudentScores
from ragdistill.core.report import Comparison, agreement_comparison
from ragdistill.core.speed import items_per_second

HEADLINE_METRIC = {True: "map", False: "ndcg@10 vs teacher"}  # by whether the file has labels
SPEED = "texts/s"


def student_similarities(model, samples: Sequence[RerankingSample], batch_size: int = 32,
                         show_progress_bar: bool = False) -> list[np.ndarray]:
    """Per sample, the similarity of its query to each candidate: the model's own query and document encodings
    (`encode_query` / `encode_document`, so its prompts apply) compared by its own `similarity`, as
    RerankingEvaluator compares them."""
    queries = model.encode_query([s.query for s in samples], batch_size=batch_size, convert_to_tensor=True,
                                 show_progress_bar=show_progress_bar)
    documents = model.encode_document([text for s in samples for text in s.candidates], batch_size=batch_size,
                                      convert_to_tensor=True, show_progress_bar=show_progress_bar)
    result, offset = [], 0
    for index, sample in enumerate(samples):
        count = len(sample.candidates)
        scores = model.similarity(queries[index:index + 1], documents[offset:offset + count])
        result.append(scores.reshape(-1).float().cpu().numpy())
        offset += count
    return result


def evaluate_student(model, samples: Sequence[RerankingSample], batch_size: int = 32,
                     show_progress_bar: bool = False) -> StudentScores:
    """MAP / MRR@10 / NDCG@10 of a SentenceTransformer (none for samples without labels), and the similarities it
    ranked by. Computed as the teacher's row is (metrics_from_similarities), so the rows compare like for like; the
    numbers equal RerankingEvaluator's (tests/test_embedding_evaluation.py)."""
    similarities = student_similarities(model, samples, batch_size, show_progress_bar)
    metrics = metrics_from_similarities(samples, similarities, device=model.device) if all_labelled(samples) else {}
    return StudentScores(metrics, similarities)


def teacher_similarities(samples: Sequence[RerankingSample], score_rows: Sequence[dict], path: str
                         ) -> list[np.ndarray]:
    """The teacher's stored similarities, aligned with the samples (checked query by query; rows of a file without
    labels hold one `scores` list)."""
    if len(score_rows) < len(samples):
        raise InputError(path, f"teacher scores cover {len(score_rows)} queries, the file has {len(samples)}")
    result = []
    for line, (sample, row) in enumerate(zip(samples, score_rows), start=1):
        scores = row["positive_scores"] + row["negative_scores"] if "positive_scores" in row else row.get("scores", [])
        if row["query"] != sample.query or len(scores) != len(sample.candidates) \
                or ("positive_scores" in row) != sample.has_labels \
                or (sample.has_labels and len(row["positive_scores"]) != len(sample.positive)):
            raise InputError(path, "teacher scores do not match the evaluation file (delete the cache file)", line)
        result.append(np.asarray(scores, dtype=np.float64))
    return result


def evaluator_order(similarities: np.ndarray, device=None) -> np.ndarray:
    """The candidates best first, tied similarities in the order RerankingEvaluator puts them: it ranks by
    `torch.argsort(-scores)` on float32 scores, an unstable sort whose order among ties depends on the device
    (on CPUs it does not favour the candidate listed first). MRR depends on that order where scores tie."""
    import torch

    scores = torch.as_tensor(np.asarray(similarities, dtype=np.float32), device=device)
    return torch.argsort(-scores).cpu().numpy()


def metrics_from_similarities(samples: Sequence[RerankingSample], similarities: Sequence[np.ndarray],
                              device=None) -> dict:
    """MAP / MRR@10 / NDCG@10 as RerankingEvaluator computes them from these similarities: each query's candidates
    are put in the evaluator's order first, so the stable sort of ragdistill.core.metrics keeps the evaluator's tie order
    (MAP and NDCG do not depend on the order)."""
    queries = []
    for sample, sims in zip(samples, similarities):
        relevant = np.array([True] * len(sample.positive) + [False] * len(sample.negative))
        order = evaluator_order(sims, device)
        queries.append((relevant[order], np.asarray(sims, dtype=np.float32)[order].astype(np.float64)))
    return ranking_metrics(queries, ties="stable")


def encode_throughputs(models: dict[str, object], texts: Sequence[str], batch_size: int = 32,
                       repeats: int = 3) -> dict[str, float]:
    """Texts per second of each model's encode on the same texts: the median of `repeats` timed passes, each after
    a one-batch warm-up, the models taking turns so that a busy machine slows them alike."""
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            def run(items, model=model):
                return model.encode(list(items), batch_size=batch_size, show_progress_bar=False)

            rates[name].append(items_per_second(run, list(texts), warmup=batch_size))
    return {name: float(np.median(values)) for name, values in rates.items()}


@dataclass
class FileEvaluation:
    """Before / after / teacher on one evaluation file."""

    path: str
    domain: str  # "in-domain" or "out-of-domain"
    samples: list[RerankingSample]
    teacher: list[np.ndarray]
    students: dict[str, StudentScores] = field(default_factory=dict)
    tables: list[Comparison] = field(default_factory=list)  # set by comparisons(): its headline table first

    @property
    def name(self) -> str:
        path = Path(self.path)
        stem = re.sub(r"\.jsonl(\.gz)?$", "", path.name)
        return f"{path.parent.name}/{stem}" if path.parent.name else stem

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", self.name.replace("/", "-"))

    @property
    def labelled(self) -> bool:
        return all_labelled(self.samples)

    @property
    def headline_metric(self) -> str:
        return HEADLINE_METRIC[self.labelled]

    def comparisons(self) -> list[Comparison]:
        """The labelled table (MAP / MRR@10 / NDCG@10, where the file has labels) and the agreement table."""
        before, after = self.students["before"], self.students["after"]
        counts = f"{len(self.samples)} queries, {sum(len(s.candidates) for s in self.samples)} candidates"
        tables = []
        agreement_notes = [f"{counts}; students: their own similarities; teacher: its stored similarities"]
        if self.labelled:
            notes = [f"{counts}; students: their own similarities; teacher: its stored similarities; metrics as "
                     "RerankingEvaluator computes them"]
            if self.domain == "out-of-domain":
                notes.append(headline(self.name, before.metrics, after.metrics, prefix="no-forgetting check"))
            tables.append(Comparison(title=f"{self.name} ({self.domain})", before=dict(before.metrics),
                                     after=dict(after.metrics),
                                     teacher=metrics_from_similarities(self.samples, self.teacher), notes=notes))
        else:
            agreement_notes.append("the file has no labels: agreement with the teacher is the measure")
        agreement = agreement_comparison(f"{self.name} ({self.domain}), agreement with the teacher",
                                         before.scores, after.scores, self.teacher, agreement_notes)
        if self.domain == "out-of-domain" and not self.labelled:
            agreement.notes.append(headline(self.name, agreement.before, agreement.after, self.headline_metric,
                                            prefix="no-forgetting check"))
        self.tables = [*tables, agreement]
        return self.tables

    def flat(self, similarities: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.asarray(s, dtype=np.float64) for s in similarities])


def headline(name: str, before: dict, after: dict, metric: str = "map", prefix: str = "") -> str:
    change = (after[metric] - before[metric]) / abs(before[metric]) if before[metric] else float("nan")
    label = f"{prefix}, " if prefix else ""
    return (f"{label}{name}: {metric.upper() if metric == 'map' else metric} {before[metric]:.4f} -> "
            f"{after[metric]:.4f} "
            f"({change:+.1%} relative)")


def relative_change(before: dict, after: dict, metric: str = "map") -> float | None:
    return (after[metric] - before[metric]) / abs(before[metric]) if before.get(metric) else None


def throughput_comparison(speed: dict[str, float], teacher_meta: dict, student_setup: str) -> Comparison:
    """Encode texts/s of the students (before, after) next to the teacher's, as measured during its scoring pass."""
    teacher_rate = teacher_meta["embedding"].get("texts_per_second")
    notes = [f"students: {student_setup}",
             f"teacher: {teacher_meta['teacher']} on {teacher_meta['backend']}, {teacher_meta['dtype']}, measured "
             f"during its scoring pass over {teacher_meta['embedding']['texts_embedded_this_run']} texts"]
    if teacher_rate:
        notes.append(f"the trained student encodes {speed['after'] / teacher_rate:.1f}x as many texts/s as the "
                     "teacher")
    return Comparison(title=f"Encode throughput ({SPEED})", before={SPEED: speed["before"]},
                      after={SPEED: speed["after"]}, teacher={SPEED: teacher_rate} if teacher_rate else {},
                      notes=notes)


def speed_sample(samples: Sequence[RerankingSample], limit: int) -> list[str]:
    """Up to `limit` distinct texts (queries and passages in file order) for the throughput measurement."""
    texts = list(dict.fromkeys(text for s in samples for text in [s.query, *s.candidates]))
    return texts[:limit]
