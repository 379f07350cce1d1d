"""The MTEB reranking format: one query per line, {"query": str, "positive": [str, ...], "negative": [str, ...]}."""

from __future__ import annotations

import difflib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.jsonl import iter_jsonl

REQUIRED_KEYS = ("query", "positive", "negative")


@dataclass
class RerankingSample:
    query: str
    positive: list[str]
    negative: list[str]

    @property
    def candidates(self) -> list[str]:
        return self.positive + self.negative

    def as_dict(self) -> dict:
        return {"query": self.query, "positive": self.positive, "negative": self.negative}


def _check_text(value, what: str, path, line: int) -> str:
    if not isinstance(value, str):
        raise InputError(path, f"wrong type: {what} must be a string, got {type(value).__name__}", line)
    if not value.strip():
        raise InputError(path, f"empty string: {what} is empty", line)
    return value


def validate_sample(obj, path: str | os.PathLike, line: int) -> RerankingSample:
    """Check one parsed line; raise InputError saying exactly what is wrong."""
    if not isinstance(obj, dict):
        raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        hints = []
        for key in missing:
            close = difflib.get_close_matches(key, [str(k) for k in obj], n=1, cutoff=0.6)
            hints.append(f"'{key}'" + (f" (found '{close[0]}': misspelled?)" if close else ""))
        raise InputError(path, f"missing key: {', '.join(hints)}; expected keys query, positive, negative", line)
    query = _check_text(obj["query"], "'query'", path, line)
    lists = {}
    for key in ("positive", "negative"):
        value = obj[key]
        if not isinstance(value, list):
            raise InputError(path, f"wrong type: '{key}' must be a list of strings, got {type(value).__name__}", line)
        if not value:
            raise InputError(path, f"empty list: '{key}' has no passages", line)
        lists[key] = [_check_text(text, f"'{key}'[{i}]", path, line) for i, text in enumerate(value)]
    return RerankingSample(query=query, positive=lists["positive"], negative=lists["negative"])


def iter_samples(path: str | os.PathLike, skips: SkipCounter | None = None) -> Iterator[RerankingSample]:
    """Stream validated samples. With a SkipCounter that skips, bad rows are counted instead of raised."""
    skips = skips or SkipCounter(skip_invalid=False)
    kept = 0
    for line, obj in iter_jsonl(path, skips):
        try:
            sample = validate_sample(obj, path, line)
        except InputError as error:
            skips.handle(error)
            continue
        kept += 1
        yield sample
    if kept == 0:
        raise InputError(path, "no valid rows left (every row was invalid)")


def read_samples(path: str | os.PathLike, skips: SkipCounter | None = None) -> list[RerankingSample]:
    return list(iter_samples(path, skips))


T = TypeVar("T")


def first_queries(queries: Iterable[T], max_queries: int = 0) -> list[T]:
    """The first `max_queries` queries (samples, ids, or (id, text) items) in input order; 0 = all. Every stage's
    --max_queries goes through here; a lazy iterable (iter_samples) is read no further than needed."""
    if max_queries < 0:
        raise InputError(None, f"--max_queries must be 0 (all) or positive, got {max_queries}")
    return list(itertools.islice(queries, max_queries or None))
