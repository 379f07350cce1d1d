"""Stage 1 of both pipelines: warn when test queries also appear in the training files.

A test query the student was trained on (with the teacher's scores of its candidates) measures memory, not
ranking, and inflates the "after" row. Queries are compared after lower-casing and collapsing white space, so
the same question copied with other spacing or case still counts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ragdistill.core.errors import SkipCounter
from ragdistill.core.jsonl import iter_jsonl

logger = logging.getLogger(__name__)


def normalize_query(text: str) -> str:
    return " ".join(text.lower().split())


def _queries(path: str | os.PathLike) -> list[str]:
    """The query of every row that has one (bad rows are the stages' business, not this check's)."""
    return [normalize_query(row["query"]) for _, row in iter_jsonl(path, SkipCounter(skip_invalid=True))
            if isinstance(row, dict) and isinstance(row.get("query"), str)]


def leaked_test_queries(train_files: Sequence[str], test_files: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Per test file: (how many of its queries also appear in a training file, how many queries it has).

    Logs one warning per test file with overlap; test files that are also training files, or do not exist, are
    left out of the check (the latter with a warning).
    """
    train_paths = {Path(path).resolve() for path in train_files}
    training: set[str] = set()
    for path in train_files:
        training.update(_queries(path))
    result = {}
    for path in dict.fromkeys(test_files):
        if Path(path).resolve() in train_paths:
            continue
        if not Path(path).exists():
            logger.warning("cannot check %s for test queries seen in training: file not found", path)
            continue
        queries = _queries(path)
        leaked = sum(query in training for query in queries)
        result[os.fspath(path)] = (leaked, len(queries))
        if leaked:
            logger.warning("%d of the %d queries of test file %s also appear in the training files: its \"after\" "
                           "numbers measure memorised queries; remove them from the training files for a fair "
                           "test", leaked, len(queries), path)
    return result
