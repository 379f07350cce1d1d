"""Reranking files, one query per line, in one of two forms:

- labelled (MTEB's reranking format): {"query": str, "positive": [str, ...], "negative": [str, ...]};
- a candidate list without labels: {"query": str, "candidates": [str, ...]}, ranked by the teacher alone; a query
  made from a document (ragdistill.data.pseudo_queries) names it, "source": str, one of the candidates, for the
  round-trip filter (the query is kept only where the teacher ranks its source near the top).

A file holds one form throughout. Reading a label of an unlabelled sample raises `LabelsMissing`: the label-free
path never reads one, and its tests prove it by running on files that carry none.
"""

from __future__ import annotations

import difflib
import itertools
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.jsonl import iter_jsonl, write_jsonl

LABELLED_KEYS = ("query", "positive", "negative")
UNLABELLED_KEYS = ("query", "candidates")
MIN_CANDIDATES = 2  # a ranking needs two passages


class LabelsMissing(RuntimeError):
    """A label was read from a sample that has none (a bug in the caller: the label-free path reads no labels)."""


@dataclass
class RerankingSample:
    """A query and its candidate passages; with labels, the first `num_positive` candidates are the positives."""

    query: str
    candidates: list[str]
    num_positive: int | None = None  # None: no labels
    source: str | None = None  # a pseudo-query's document (a candidate): what the round-trip filter checks

    @classmethod
    def labelled(cls, query: str, positive: list[str], negative: list[str]) -> RerankingSample:
        return cls(query, [*positive, *negative], len(positive))

    @property
    def has_labels(self) -> bool:
        return self.num_positive is not None

    def _positives(self) -> int:
        if self.num_positive is None:
            raise LabelsMissing(f"query {self.query[:60]!r} has no labels (a candidate list)")
        return self.num_positive

    @property
    def positive(self) -> list[str]:
        return self.candidates[:self._positives()]

    @property
    def negative(self) -> list[str]:
        return self.candidates[self._positives():]

    def as_dict(self) -> dict:
        if self.has_labels:
            return {"query": self.query, "positive": self.positive, "negative": self.negative}
        return {"query": self.query, "candidates": self.candidates, **({"source": self.source} if self.source else {})}


def all_labelled(samples: Iterable[RerankingSample]) -> bool:
    """Whether every sample carries labels (read from one file: all or none of them, iter_samples sees to it)."""
    return all(sample.has_labels for sample in samples)


def require_labels(path: str | os.PathLike, samples: Iterable[RerankingSample], use: str) -> None:
    """Refuse a file without labels where `use` needs them (the label-free path measures against the teacher)."""
    if not all_labelled(samples):
        raise InputError(path, f"has no labels (candidate lists), and {use} needs them; the evaluation stage "
                               "measures a file without labels against the teacher")


def _check_text(value, what: str, path, line: int) -> str:
    if not isinstance(value, str):
        raise InputError(path, f"wrong type: {what} must be a string, got {type(value).__name__}", line)
    if not value.strip():
        raise InputError(path, f"empty string: {what} is empty", line)
    return value


def _check_list(obj: dict, key: str, path, line: int) -> list[str]:
    value = obj[key]
    if not isinstance(value, list):
        raise InputError(path, f"wrong type: '{key}' must be a list of strings, got {type(value).__name__}", line)
    if not value:
        raise InputError(path, f"empty list: '{key}' has no passages", line)
    return [_check_text(text, f"'{key}'[{i}]", path, line) for i, text in enumerate(value)]


def validate_sample(obj, path: str | os.PathLike, line: int) -> RerankingSample:
    """Check one parsed line; raise InputError saying exactly what is wrong."""
    if not isinstance(obj, dict):
        raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
    expected = UNLABELLED_KEYS if "candidates" in obj and "positive" not in obj else LABELLED_KEYS
    missing = [key for key in expected if key not in obj]
    if missing:
        hints = []
        for key in missing:
            close = difflib.get_close_matches(key, [str(k) for k in obj], n=1, cutoff=0.6)
            hints.append(f"'{key}'" + (f" (found '{close[0]}': misspelled?)" if close else ""))
        raise InputError(path, f"missing key: {', '.join(hints)}; expected keys query, positive, negative "
                               "(labelled) or query, candidates (no labels)", line)
    query = _check_text(obj["query"], "'query'", path, line)
    if expected == UNLABELLED_KEYS:
        candidates = _check_list(obj, "candidates", path, line)
        if len(candidates) < MIN_CANDIDATES:
            raise InputError(path, f"too few candidates: {len(candidates)}; a query needs at least {MIN_CANDIDATES} "
                                   "to rank", line)
        source = obj.get("source")
        if source is not None and source not in candidates:
            raise InputError(path, "wrong source: 'source' must be one of the candidates (the document the query "
                                   "was made from)", line)
        return RerankingSample(query, candidates, source=source)
    return RerankingSample.labelled(query, _check_list(obj, "positive", path, line),
                                    _check_list(obj, "negative", path, line))


def iter_samples(path: str | os.PathLike, skips: SkipCounter | None = None) -> Iterator[RerankingSample]:
    """Stream validated samples. With a SkipCounter that skips, bad rows are counted instead of raised."""
    skips = skips or SkipCounter(skip_invalid=False)
    kept = 0
    form: tuple[bool, int] | None = None  # (labelled, line) of the first sample: the file's form
    for line, obj in iter_jsonl(path, skips):
        try:
            sample = validate_sample(obj, path, line)
            if form is None:
                form = (sample.has_labels, line)
            elif sample.has_labels != form[0]:
                kinds = ("a candidate list without labels", "labelled")
                raise InputError(path, f"mixed forms: this line is {kinds[sample.has_labels]}, line {form[1]} is "
                                       f"{kinds[form[0]]}; a file holds one form throughout", line)
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


def write_candidate_lists(source: str | os.PathLike, target: str | os.PathLike, count: int = 0) -> str | os.PathLike:
    """The first `count` queries (0 = all) of a labelled reranking file as candidate lists without labels: each
    query's passages sorted by text, so neither the keys nor the order carry what was a positive."""
    samples = first_queries(iter_samples(source), count)
    write_jsonl(target, ({"query": s.query, "candidates": sorted(s.candidates)} for s in samples))
    return target
