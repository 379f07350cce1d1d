"""Embedding-Distillation's training rows: the teacher's similarities as labels, in sentence-transformers' formats.

The score stage writes them (it holds the similarities), in one of FORMATS:
- ntuple (default): one row per (query, positive) with the n hardest negatives by teacher similarity (a query with
  fewer repeats its own to fill the row),
  {"query", "positive", "negative_1", ..., "negative_n", "label": [sim_pos, sim_neg_1, ..., sim_neg_n]}
- triplet: every (positive, negative) pair of a query, {"query", "positive", "negative", "label": [p, n]}
- scores: one row per query with every candidate's similarity (what evaluation caches for the teacher)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import dumps
from ragdistill.core.mteb import RerankingSample

FORMATS = ("ntuple", "triplet", "scores")
TRAINING_FORMATS = ("ntuple", "triplet")


def parse_num_negatives(value: str | int) -> int:
    """'all' or 0 -> 0 (every negative); else a positive count."""
    text = str(value).strip().lower()
    if text in ("all", "0"):
        return 0
    try:
        count = int(text)
    except ValueError:
        raise InputError(None, f"--num_negatives must be a positive number or 'all', got '{value}'") from None
    if count < 0:
        raise InputError(None, f"--num_negatives must be a positive number or 'all', got '{value}'")
    return count


def _labels(values: np.ndarray) -> list[float]:
    """Full float32 precision: rounding would tie similarities the evaluator tells apart, and ties change MRR."""
    return [float(value) for value in np.asarray(values, dtype=np.float32)]


def build_rows(samples: Sequence[RerankingSample], similarities: Sequence[np.ndarray], fmt: str,
               num_negatives: int, pad_negatives: bool = True) -> tuple[list[dict], dict]:
    """Training (or score) rows in input order, and counts.

    Listwise rows all have the same columns (a dataset needs them): `num_negatives` n > 0, or 0 for as many as the
    query with the most negatives has. A query with fewer negatives repeats its own, hardest first, to fill the row
    (`pad_negatives`; teacher and student see the same repeats, so the best student scores are unchanged), or is
    left out; either way it is counted.
    """
    rows: list[dict] = []
    stats = {"queries_padded": 0, "queries_too_few_negatives": 0}
    if fmt == "ntuple":
        width = num_negatives or max(len(sample.negative) for sample in samples)
        stats["negatives_per_row"] = width
    for sample, sims in zip(samples, similarities):
        num_pos = len(sample.positive)
        pos_sims, neg_sims = sims[:num_pos], sims[num_pos:]
        if fmt == "scores":
            rows.append({"query": sample.query, "positive_scores": _labels(pos_sims),
                         "negative_scores": _labels(neg_sims)})
        elif fmt == "triplet":
            for positive, pos_sim in zip(sample.positive, pos_sims):
                for negative, neg_sim in zip(sample.negative, neg_sims):
                    rows.append({"query": sample.query, "positive": positive, "negative": negative,
                                 "label": _labels(np.array([pos_sim, neg_sim]))})
        else:
            hardest = np.argsort(-neg_sims, kind="stable")  # deterministic; ties only decide which of equals to keep
            if len(hardest) < width:
                if not pad_negatives:
                    stats["queries_too_few_negatives"] += 1
                    continue
                stats["queries_padded"] += 1
                hardest = np.resize(hardest, width)  # cycles through the negatives, hardest first
            hardest = hardest[:width]
            for positive, pos_sim in zip(sample.positive, pos_sims):
                row = {"query": sample.query, "positive": positive}
                row.update({f"negative_{i + 1}": sample.negative[j] for i, j in enumerate(hardest)})
                row["label"] = _labels(np.concatenate([[pos_sim], neg_sims[hardest]]))
                rows.append(row)
    if not rows:
        hint = " (every query has fewer negatives than --num_negatives; lower it)" if fmt == "ntuple" else ""
        raise InputError(None, f"no rows to write{hint}")
    return rows, stats


def write_rows(handle, rows: Sequence[dict]) -> None:
    for row in rows:
        handle.write(dumps(row) + "\n")
