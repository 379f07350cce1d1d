"""Embedding-Distillation's training rows: the teacher's similarities as labels, in sentence-transformers' formats.

The score stage writes them (it holds the similarities), in one of FORMATS:
- ntuple (default): one row per (query, positive) with the n hardest negatives by teacher similarity (a query with
  fewer repeats its own to fill the row),
  {"query", "positive", "negative_1", ..., "negative_n", "label": [sim_pos, sim_neg_1, ..., sim_neg_n]}
- triplet: every (positive, negative) pair of a query, {"query", "positive", "negative", "label": [p, n]}
- scores: one row per query with every candidate's similarity (what evaluation caches for the teacher)

Input without labels (candidate lists) is ranked by the teacher alone: its top candidate is the row's positive
(a pseudo-positive), and the negatives come from the rest, except those the teacher scores within a margin of the
positive (above FALSE_NEGATIVE_MARGIN x its similarity): likely positives too, dropped and counted
(positive-aware false-negative filtering, as NV-Retriever does). No label is read on this path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import dumps
from ragdistill.core.mteb import RerankingSample

FORMATS = ("ntuple", "triplet", "scores")
TRAINING_FORMATS = ("ntuple", "triplet")
# A candidate the teacher scores above this share of the pseudo-positive's similarity is no negative. NV-Retriever
# (Moreira et al., 2024) found 95% of the positive's score the best of its positive-aware thresholds.
FALSE_NEGATIVE_MARGIN = 0.95


def _labels(values: np.ndarray) -> list[float]:
    """Full float32 precision: rounding would tie similarities the evaluator tells apart, and ties change MRR."""
    return [float(value) for value in np.asarray(values, dtype=np.float32)]


def split_candidates(sample: RerankingSample, sims: np.ndarray, margin: float = FALSE_NEGATIVE_MARGIN
                     ) -> tuple[list[int], list[int], int]:
    """(positive indices, negative indices, negatives dropped) of a sample's candidates: the data's labels where
    it has them; else the teacher's top candidate, and the rest below `margin` x its similarity (for a negative
    similarity: at least (1 - margin) x its size below it)."""
    if sample.has_labels:
        count = len(sample.positive)
        return list(range(count)), list(range(count, len(sims))), 0
    top = int(np.argmax(sims))
    ceiling = sims[top] - (1.0 - margin) * abs(float(sims[top]))
    rest = [i for i in range(len(sims)) if i != top]
    negatives = [i for i in rest if sims[i] < ceiling]
    return [top], negatives, len(rest) - len(negatives)


def build_rows(samples: Sequence[RerankingSample], similarities: Sequence[np.ndarray], fmt: str,
               num_negatives: int, pad_negatives: bool = True, margin: float = FALSE_NEGATIVE_MARGIN
               ) -> tuple[list[dict], dict]:
    """Training (or score) rows in input order, and counts.

    Listwise rows all have the same columns (a dataset needs them): `num_negatives` n > 0, or 0 for as many as the
    query with the most negatives has. A query with fewer negatives repeats its own, hardest first, to fill the row
    (`pad_negatives`; teacher and student see the same repeats, so the best student scores are unchanged), or is
    left out; either way it is counted.
    """
    rows: list[dict] = []
    stats = {"queries_padded": 0, "queries_too_few_negatives": 0, "false_negatives_dropped": 0,
             "queries_without_negatives": 0}
    splits = [split_candidates(sample, np.asarray(sims), margin) for sample, sims in zip(samples, similarities)]
    if fmt == "ntuple":
        width = num_negatives or max(len(negatives) for _, negatives, _ in splits)
        stats["negatives_per_row"] = width
    for sample, sims, (pos_index, neg_index, dropped) in zip(samples, similarities, splits):
        if fmt == "scores":
            rows.append({"query": sample.query, "positive_scores": _labels(sims[:len(sample.positive)]),
                         "negative_scores": _labels(sims[len(sample.positive):])} if sample.has_labels
                        else {"query": sample.query, "scores": _labels(sims)})
            continue
        stats["false_negatives_dropped"] += dropped
        if not neg_index:
            stats["queries_without_negatives"] += 1
            continue
        positives = [sample.candidates[i] for i in pos_index]
        negatives = [sample.candidates[i] for i in neg_index]
        pos_sims, neg_sims = sims[pos_index], sims[neg_index]
        if fmt == "triplet":
            for positive, pos_sim in zip(positives, pos_sims):
                for negative, neg_sim in zip(negatives, neg_sims):
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
            for positive, pos_sim in zip(positives, pos_sims):
                row = {"query": sample.query, "positive": positive}
                row.update({f"negative_{i + 1}": negatives[j] for i, j in enumerate(hardest)})
                row["label"] = _labels(np.concatenate([[pos_sim], neg_sims[hardest]]))
                rows.append(row)
    if not rows:
        hint = " (every query has fewer negatives than --num_negatives; lower it)" if fmt == "ntuple" else ""
        raise InputError(None, f"no rows to write{hint}")
    return rows, stats


def write_rows(handle, rows: Sequence[dict]) -> None:
    for row in rows:
        handle.write(dumps(row) + "\n")
