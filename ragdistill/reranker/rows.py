"""Stage 2 of Reranker-Distillation: training rows for the student from the teacher's scored pairs.

Per query, passages are ranked by teacher score. The top `top_k` are positives; each gets `num_negatives`
negatives: the next lower-scored passages (hardest first), or a seeded random draw from all lower-scored ones.
Formats, all read by sentence-transformers' CrossEncoderTrainer:

- `ntuple` (default): {"query", "positive", "negative_1", ..., "negative_n", "label": [s_pos, s_neg_1, ...]}.
  MarginMSELoss (sentence-transformers 6.2) takes labels of length n + 1 as [gold(q, pos), gold(q, neg_i)...]
  and turns them into the n margins gold(q, pos) - gold(q, neg_i) itself; the positive is encoded once per row,
  not once per negative. A positive with fewer than n lower-scored passages left gets no row (counted).
- `triplet`: {"query", "positive", "negative", "score": s_pos - s_neg}, one row per (positive, negative).
- `listwise`: {"query", "documents": [...], "scores": [...], "relevance": [...]} for ListNetLoss / LambdaLoss: the
  top `top_k` passages plus `num_negatives` more (the next ones, or random from the rest), in teacher order.
  `relevance` is the data's own label of each document (1 = a positive of the MTEB file stage 1 scored, else 0),
  for train.py's --label_weight; it is left out, with a warning, when that file is no longer where stage 1 read it
  or has changed since.

Pseudo-queries (made from documents: ragdistill.data.pseudo_queries) name their source document in the file stage 1
scored; such a query is kept only if the teacher ranks its source among its top `round_trip_top` passages (the
round-trip filter; the count of queries dropped is printed).

Streams: stage-1 output lists each query's passages together (it is written that way), so only one query's
passages are in memory at a time; a query that comes back after another one is an error (the file was edited
or concatenated). Same inputs and seed give byte-identical output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.jsonl import atomic_open, dumps, write_json
from ragdistill.core.resumable import meta_path, require_complete
from ragdistill.data.pseudo_queries import ROUND_TRIP_TOP, round_trip_keep

logger = logging.getLogger(__name__)

FORMATS = ("ntuple", "triplet", "listwise")
SAMPLING = ("hard", "random")
STAGE1_COMMAND = "score.py (bash score.sh)"


@dataclass
class RowSettings:
    format: str = "ntuple"
    top_k: int = 8
    num_negatives: int = 4
    negative_sampling: str = "hard"
    seed: int = 42
    round_trip_top: int = ROUND_TRIP_TOP

    def check(self) -> None:
        if self.format not in FORMATS:
            raise InputError(None, f"unknown --format '{self.format}', expected one of {', '.join(FORMATS)}")
        if self.negative_sampling not in SAMPLING:
            raise InputError(None, f"unknown --negative_sampling '{self.negative_sampling}', expected hard or random")
        if self.top_k < 1 or self.num_negatives < 0 or self.round_trip_top < 1:
            raise InputError(None, "--top_k and --round_trip_top must be at least 1, --num_negatives a count or all")
        if self.format == "ntuple" and not self.num_negatives:
            raise InputError(None, "--num_negatives all: an ntuple row has one column per negative, so it needs a "
                                   "count (or --format listwise / triplet)")


@dataclass
class RowStats:
    queries: int = 0
    scored_pairs: int = 0
    rows: int = 0
    positives_without_full_negatives: int = 0
    queries_too_small: int = 0
    round_trip_checked: int = 0  # pseudo-queries (their source named)
    round_trip_dropped: int = 0  # ... whose source the teacher did not rank near the top
    skipped_rows: int = 0
    files: list[str] = field(default_factory=list)
    relevance: bool = False  # listwise rows carry the data's labels


def iter_query_groups(path: str | Path, skips: SkipCounter) -> Iterator[tuple[str, list[tuple[str, float]]]]:
    """Yield (query, [(passage, score), ...]) per query of a stage-1 score file, streaming.

    Plain `json.loads` per line (the fast path); a NaN/inf or missing score is an InputError naming file and
    line, or a skipped row under --skip_invalid.
    """
    import gzip

    path = Path(path)
    seen: set[bytes] = set()
    query, group = None, []
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
                q, passage, score = row["query"], row["passage"], row["score"]
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                skips.handle(InputError(path, f"malformed JSON: {exc}", number))
                continue
            except (KeyError, TypeError):
                skips.handle(InputError(path, "missing key: a scored pair needs query, passage and score", number))
                continue
            if not isinstance(q, str) or not isinstance(passage, str):
                skips.handle(InputError(path, "wrong type: query and passage must be strings", number))
                continue
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                skips.handle(InputError(path, f"invalid score: {score!r} is not a finite number", number))
                continue
            if q != query:
                if query is not None:
                    yield query, group
                key = hashlib.blake2b(q.encode("utf-8"), digest_size=16).digest()
                if key in seen:
                    raise InputError(path, f"query {q[:80]!r} reappears after other queries: stage-1 output keeps "
                                           "each query's passages together; was the file edited or concatenated?",
                                     number)
                seen.add(key)
                query, group = q, []
            group.append((passage, float(score)))
    if query is not None:
        yield query, group


def scored_input(score_file: str | Path, meta: dict, want_positives: bool
                 ) -> tuple[dict[str, set[str]] | None, dict[str, str]]:
    """One pass over the file stage 1 scored into `score_file` (its metadata names the file and its digest): per
    query, the data's positives (when `want_positives`; None without labels), and per pseudo-query, the source
    document its line names. (None, {}) when that file is gone or has changed since, with a warning where the
    positives were wanted."""
    from ragdistill.core.hashing import file_digest
    from ragdistill.core.mteb import iter_samples

    source = Path(str(meta.get("input", "")))
    if not meta.get("input") or not source.is_file() or file_digest(source) != meta.get("input_digest"):
        if want_positives:
            logger.warning(f"{score_file}: rows without the data's labels (relevance): the file stage 1 scored "
                           f"({meta.get('input') or 'not recorded'}) is not there as it was scored")
        return None, {}
    positives: dict[str, set[str]] | None = {} if want_positives else None
    sources: dict[str, str] = {}
    for sample in iter_samples(source, SkipCounter(skip_invalid=True)):
        if sample.source:
            sources[sample.query] = sample.source
        if positives is not None:
            if sample.has_labels:
                positives.setdefault(sample.query, set()).update(sample.positive)
            else:
                logger.info(f"{source} has no labels: the rows carry the teacher's judgement alone")
                positives = None
    return positives, sources


def _negative_indices(rank: int, count: int, settings: RowSettings, rng: random.Random) -> list[int]:
    """Indices (into the teacher ranking) of the negatives for the positive at `rank`."""
    lower = range(rank + 1, count)
    if settings.negative_sampling == "hard":
        return list(lower[: settings.num_negatives or None])
    if not settings.num_negatives or len(lower) <= settings.num_negatives:
        return list(lower)
    return sorted(rng.sample(lower, settings.num_negatives))


def rows_for_query(query: str, group: Sequence[tuple[str, float]], settings: RowSettings, rng: random.Random,
                   stats: RowStats, positives: set[str] | None = None) -> list[dict]:
    """The training rows of one query (see the module docstring); `positives`: the data's positives of the query,
    for listwise rows' relevance (None: none recorded)."""
    # Stable sort: equal scores keep stage-1 order, so the rows do not depend on anything but the inputs.
    ranked = sorted(group, key=lambda item: -item[1])
    if len(ranked) < 2:
        stats.queries_too_small += 1
        return []
    rows = []
    if settings.format == "listwise":
        keep = min(settings.top_k, len(ranked))
        rest = range(keep, len(ranked))
        if settings.negative_sampling == "hard" or not settings.num_negatives or len(rest) <= settings.num_negatives:
            extra = list(rest[: settings.num_negatives or None])
        else:
            extra = sorted(rng.sample(rest, settings.num_negatives))
        chosen = list(range(keep)) + extra
        row = {"query": query, "documents": [ranked[i][0] for i in chosen], "scores": [ranked[i][1] for i in chosen]}
        if positives is not None:
            row["relevance"] = [1.0 if ranked[i][0] in positives else 0.0 for i in chosen]
        return [row]
    for rank in range(min(settings.top_k, len(ranked) - 1)):
        positive, positive_score = ranked[rank]
        negatives = _negative_indices(rank, len(ranked), settings, rng)
        if settings.format == "triplet":
            rows += [{"query": query, "positive": positive, "negative": ranked[i][0],
                      "score": positive_score - ranked[i][1]} for i in negatives]
        elif len(negatives) == settings.num_negatives:
            row = {"query": query, "positive": positive}
            row.update({f"negative_{j + 1}": ranked[i][0] for j, i in enumerate(negatives)})
            row["label"] = [positive_score] + [ranked[i][1] for i in negatives]
            rows.append(row)
        else:
            stats.positives_without_full_negatives += 1
    return rows


def build_rows(score_files: Sequence[str | Path], output: str | Path, settings: RowSettings,
               skip_invalid: bool = False) -> RowStats:
    """Stage 2: stream stage-1 score files into training rows at `output` (written atomically)."""
    settings.check()
    metas = [require_complete(path, STAGE1_COMMAND) for path in score_files]
    output = Path(output)
    if meta_path(output).exists():
        meta_path(output).unlink()  # the old rows stop counting as finished before they are replaced
    skips = SkipCounter(skip_invalid)
    stats = RowStats(files=[str(p) for p in score_files])
    # One seeded generator over the whole run: same inputs, same seed, same rows.
    rng = random.Random(settings.seed)
    inputs = [scored_input(path, meta, settings.format == "listwise") for path, meta in zip(score_files, metas)]
    labelled, sources = [positives for positives, _ in inputs], [sources_of for _, sources_of in inputs]
    # Rows of one file carry the labels only if every file has them: the columns of a run are the same throughout.
    stats.relevance = all(positives is not None for positives in labelled) and settings.format == "listwise"
    with atomic_open(output) as handle:
        for path, positives, sources_of in zip(score_files, labelled, sources):
            for query, group in iter_query_groups(path, skips):
                stats.queries += 1
                stats.scored_pairs += len(group)
                if query in sources_of:
                    stats.round_trip_checked += 1
                    passages = [passage for passage, _ in group]
                    if sources_of[query] not in passages or not round_trip_keep(
                            [score for _, score in group], passages.index(sources_of[query]),
                            settings.round_trip_top):
                        stats.round_trip_dropped += 1
                        continue
                query_positives = positives.get(query, set()) if stats.relevance else None
                for row in rows_for_query(query, group, settings, rng, stats, query_positives):
                    handle.write(dumps(row) + "\n")
                    stats.rows += 1
        if stats.rows == 0:
            raise InputError(score_files[0], "no training rows: every query has fewer than two scored passages")
    if skips.total:
        logger.warning(skips.summary())
    stats.skipped_rows = skips.total
    write_json(meta_path(output), {
        "stage": "training_rows", "score_files": stats.files,
        "teachers": sorted({str(m.get("teacher")) for m in metas}),
        "settings": asdict(settings), **{k: v for k, v in asdict(stats).items() if k != "files"}, "complete": True,
    })
    return stats
