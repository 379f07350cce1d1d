"""What every query rewriter shares: its input (a query, and the first-stage feedback where it reads one), its output
(a rewrite: text for any first stage, term weights for BM25 where it has them), and how it is saved and described.

A rewriter folder holds `rewriter.json` ({"kind": ..., its settings}) beside the rewriter's own files;
ragdistill.expansion.rewriters.load_rewriter reads any of them.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, write_json

RECORD = "rewriter.json"


@dataclass
class Feedback:
    """A query's top first-stage documents: their texts, their first-stage scores, and, where the corpus was embedded
    by the rewriter's embedder, their normalised vectors and the query's (so nothing is embedded twice)."""

    documents: list[str]
    scores: list[float]
    vectors: np.ndarray | None = None
    query_vector: np.ndarray | None = None


@dataclass
class Rewrite:
    """A rewritten query: `text` for any first stage (a dense one embeds it), `weights` (term -> weight) for BM25
    where the rewriter weighs its terms (None: BM25 reads `text`). `problem`: why it earns nothing ('empty',
    'too_long', 'copies', 'no_answer'), or None (a rewrite that retrieves nothing is counted as 'no_results' where
    it is searched)."""

    text: str
    weights: dict[str, float] | None = None
    problem: str | None = None


class Rewriter(ABC):
    """query -> Rewrite, a batch at a time."""

    kind: str = ""
    uses_feedback: bool = False  # True: rewrite() needs each query's Feedback

    @abstractmethod
    def rewrite(self, queries: Sequence[str], feedback: Sequence[Feedback] | None = None) -> list[Rewrite]:
        """One Rewrite per query (`feedback`: one per query, for rewriters that use it)."""

    @abstractmethod
    def describe(self) -> str:
        """A short name for tables and logs."""

    def save(self, folder: str | os.PathLike) -> Path:
        """Save what load_rewriter needs into `folder` (rewriter.json last: a folder without it is unfinished)."""
        raise NotImplementedError(f"a {self.kind or type(self).__name__} rewriter is not saved; it has no training")

    def _check_feedback(self, queries: Sequence[str], feedback: Sequence[Feedback] | None) -> Sequence[Feedback]:
        if feedback is None or len(feedback) != len(queries):
            raise ValueError(f"{self.describe()} needs one Feedback per query ({len(queries)} queries, "
                             f"{'no' if feedback is None else len(feedback)} feedback)")
        return feedback


def write_record(folder: str | os.PathLike, record: dict) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / RECORD, record)
    return folder


def read_record(folder: str | os.PathLike) -> dict:
    path = Path(folder) / RECORD
    if not path.exists():
        raise InputError(folder, f"not a rewriter folder (no {RECORD}; Query-Expansion-RL/train.py writes one, "
                                 "last, when training finishes)")
    record = read_json(path)
    if not isinstance(record, dict) or "kind" not in record:
        raise InputError(path, "has no 'kind'")
    return record
