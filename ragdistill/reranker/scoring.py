"""Stage 1 of Reranker-Distillation: a teacher scores every (query, passage) pair of MTEB reranking files.

For each input file, one output line per distinct (query, passage) pair, `{"query", "passage", "score"}`, grouped
by query in the order queries first appear (a query's passages stay together: stage 2 streams on that), plus
`<output>.meta.json` (teacher, backend, settings, counts, time, pairs/s, tokens/pair, truncations).

The output is built in chunks (ragdistill.core.resumable): re-running the same command after a crash, kill -9
included, continues with the unfinished chunks, and the result equals an uninterrupted run row for row. Each
chunk's statistics sit beside it (`stats-NNNNN.json`), so the final metadata covers every chunk, whichever run
scored it.

Shards (`num_shards`, `shard_id`) split the chunks over machines without Ray (ragdistill.core.resumable): each
scores its chunks into the same `<output>.parts/`; the command without shard flags joins them.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.hashing import file_digest
from ragdistill.core.jsonl import dumps, read_json, write_json
from ragdistill.core.mteb import iter_samples
from ragdistill.core.ray_engine import EngineArguments, run_chunks
from ragdistill.core.resumable import (
    ChunkedJob,
    concatenate_text_chunks,
    fingerprint,
    reuse_complete,
)

logger = logging.getLogger(__name__)



@dataclass
class ScoringPlan:
    """The distinct pairs of one input file, grouped by query: pair i is (queries[query_of[i]], passages[i])."""

    queries: list[str]
    query_of: list[int]
    passages: list[str]
    duplicate_pairs: int

    def pairs(self, items: range) -> list[tuple[str, str]]:
        return [(self.queries[self.query_of[i]], self.passages[i]) for i in items]

    def __len__(self) -> int:
        return len(self.passages)


def read_pairs(path: str | Path, max_queries: int = 0, skips: SkipCounter | None = None) -> ScoringPlan:
    """Distinct (query, passage) pairs of an MTEB reranking file, queries in first-appearance order.

    A query on several lines has all its passages gathered under its first appearance; a pair seen before
    is not scored again. `max_queries` keeps the first N distinct queries (0 = all).
    """
    passages_of: dict[str, dict[str, None]] = {}
    duplicates = 0
    for sample in iter_samples(path, skips):
        if sample.query not in passages_of:
            if max_queries and len(passages_of) >= max_queries:
                break
            passages_of[sample.query] = {}
        group = passages_of[sample.query]
        for passage in sample.candidates:
            if passage in group:
                duplicates += 1
            else:
                group[passage] = None
    queries, query_of, passages = list(passages_of), [], []
    for index, group in enumerate(passages_of.values()):
        query_of.extend([index] * len(group))
        passages.extend(group)
    return ScoringPlan(queries, query_of, passages, duplicates)


def _split_name(path: Path) -> tuple[str, str]:
    """'train.scores.jsonl.gz' -> ('train.scores', '.jsonl.gz')."""
    name = path.name
    for ext in (".jsonl.gz", ".jsonl", ".json.gz", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return name, ""


def default_output_path(output_dir: str | Path, input_path: str | Path) -> Path:
    """<output_dir>/<input name without .jsonl[.gz]>.scores.jsonl"""
    base, _ = _split_name(Path(input_path))
    return Path(output_dir) / f"{base}.scores.jsonl"


def output_paths(inputs: Sequence[str], output_dir: str | None, output_files: Sequence[str]) -> list[Path]:
    if output_files:
        if len(output_files) != len(inputs):
            raise InputError(None, f"--output_files names {len(output_files)} file(s) for {len(inputs)} input(s)")
        outputs = [Path(p) for p in output_files]
    else:
        if not output_dir:
            raise InputError(None, "give --output_dir (or --output_files)")
        outputs = [default_output_path(output_dir, p) for p in inputs]
    seen: dict[Path, str] = {}
    for source, out in zip(inputs, outputs):
        if out.resolve() in seen:
            raise InputError(source, f"would write to the same output as {seen[out.resolve()]} ({out}); "
                                     "name the outputs with --output_files")
        seen[out.resolve()] = source
    return outputs


def _check_finite(scored, pairs, teacher_name: str) -> None:
    for score, (query, passage) in zip(scored.scores, pairs):
        if not math.isfinite(score):
            raise InputError(teacher_name, f"non-finite teacher score ({score}) for query {query[:80]!r}, passage "
                                           f"{passage[:80]!r}; nothing of this chunk was written. Half precision "
                                           "can overflow: try --teacher_dtype bfloat16 or float32")


def _stats_path(job: ChunkedJob, index: int) -> Path:
    return job.work_dir / f"stats-{index:05d}.json"


class PairScorer:
    """One teacher replica scoring chunks of pairs: what every engine runs, in this process or on a Ray actor."""

    def __init__(self, load_teacher: Callable):
        self.teacher = load_teacher()

    def __call__(self, pairs: list[tuple[str, str]]) -> tuple:
        start = time.perf_counter()
        scored = self.teacher.score(pairs)
        loaded = {"device": self.teacher.device, "teacher_settings": self.teacher.settings.as_dict()}
        return scored, time.perf_counter() - start, loaded


@dataclass
class FileScoring:
    """One input file's stage-1 job: its pairs, its chunks on disk, and the metadata it will be finished with."""

    plan: ScoringPlan
    target: Path
    job: ChunkedJob
    metadata: dict
    skips: SkipCounter
    started: float
    loaded: dict = field(default_factory=dict)  # the teacher as a replica loaded it (device, resolved settings)

    def chunk_work(self, progress) -> list[tuple[Callable, Callable]]:
        """(payload, save) for each pending chunk: its pairs, and how its scores reach the disk."""
        teacher_name = self.metadata["teacher"]

        def save(index: int, pairs: list[tuple[str, str]], result: tuple) -> None:
            scored, seconds, loaded = result
            _check_finite(scored, pairs, teacher_name)
            lines = "".join(dumps({"query": q, "passage": p, "score": s}) + "\n"
                            for (q, p), s in zip(pairs, scored.scores))
            # Stats first, chunk second: a chunk on disk always has its stats.
            write_json(_stats_path(self.job, index), {
                "pairs": len(pairs), "seconds": seconds, "tokens": sum(scored.num_tokens),
                "truncated": sum(scored.truncated), "query_truncated": sum(scored.query_truncated),
                "loaded": loaded,  # a join that loads no teacher reports the device and settings of the scoring one
            })
            self.job.save_chunk(index, lambda handle: handle.write(lines))
            self.loaded.update(loaded)
            progress.update(len(pairs))

        work = []
        for index in self.job.pending():
            pairs = self.plan.pairs(self.job.chunk_range(index))
            work.append((lambda pairs=pairs: pairs, lambda result, index=index, pairs=pairs: save(index, pairs, result)))
        return work

    def finish(self) -> dict:
        """Join the chunks, whichever run or engine scored them, and write the metadata marked complete."""
        job, plan = self.job, self.plan
        stats = [read_json(_stats_path(job, i)) for i in range(job.num_chunks)]
        seconds = sum(s["seconds"] for s in stats)
        tokens = sum(s["tokens"] for s in stats)
        loaded = self.loaded or next((s["loaded"] for s in stats if "loaded" in s), {})
        teacher_settings = loaded.get("teacher_settings") or self.metadata["teacher_settings"]
        metadata = {
            **self.metadata,
            "teacher_settings": teacher_settings,
            "max_length": teacher_settings["max_length"],
            "device": loaded.get("device"),
            "num_pairs": len(plan),
            "seconds": round(seconds, 3),
            "pairs_per_second": round(len(plan) / seconds, 3) if seconds > 0 else None,
            "tokens_per_pair": round(tokens / len(plan), 2) if len(plan) else None,
            "truncated_pairs": sum(s["truncated"] for s in stats),
            "truncated_queries": sum(s["query_truncated"] for s in stats),
            "chunk_size": job.chunk_size,
            "num_chunks": job.num_chunks,
        }
        job.finish(concatenate_text_chunks(job.chunk_paths()), metadata)
        logger.info("%s: %d pairs of %d queries, %s pairs/s, %s tokens/pair, %d truncated; %.1f s with reading and "
                    "loading", self.target, metadata["num_pairs"], metadata["num_queries"],
                    metadata["pairs_per_second"], metadata["tokens_per_pair"], metadata["truncated_pairs"],
                    time.perf_counter() - self.started)
        if self.skips.total:
            logger.warning("%s: %s", self.target, self.skips.summary())
        return metadata


def plan_file(input_path: str | Path, output: Path, settings, chunk_size: int = 4096, max_queries: int = 0,
              num_shards: int = 1, shard_id: int = 0, skip_invalid: bool = False) -> FileScoring | dict:
    """Read one input file into its chunked job (a shard run: the chunks of its shard); the metadata of an output
    already complete with these inputs and settings instead (nothing left to do)."""
    skips = SkipCounter(skip_invalid)
    start = time.perf_counter()
    plan = read_pairs(input_path, max_queries, skips)
    run = fingerprint(file_digest(input_path), max_queries, skip_invalid, settings.as_dict())
    job_fingerprint = fingerprint(run, 1, 0)  # (run, shard count, shard id) until shards became chunk subsets
    previous = reuse_complete(output, job_fingerprint)
    if previous is not None:
        return previous
    if skips.total:
        logger.warning(skips.summary())
    metadata = {
        "stage": "teacher_scores",
        "input": str(Path(input_path).resolve()),  # stage 2 reads the data's labels from it, from any folder
        "input_digest": file_digest(input_path),
        "teacher": settings.model,
        "backend": settings.backend,
        "teacher_kind": settings.kind,
        "instruction": settings.instruction,
        "max_length": settings.max_length,
        "dtype": settings.dtype,
        "bi_encoder_scale": settings.bi_encoder_scale,
        "teacher_settings": settings.as_dict(),
        "max_queries": max_queries,
        "num_queries": len(plan.queries),
        "duplicate_pairs_skipped": plan.duplicate_pairs,
        "skipped_invalid_rows": skips.total,
        "skipped_by_reason": skips.by_reason,
        "run_fingerprint": run,
        "fingerprint": job_fingerprint,
    }
    job = ChunkedJob(output, job_fingerprint, len(plan), chunk_size, num_shards=num_shards, shard_id=shard_id)
    if job.done_count() and job.pending():
        logger.info("%s: resuming, %d of %d chunks already done", output, job.done_count(), job.num_chunks)
    return FileScoring(plan, output, job, metadata, skips, start)


def score_files(inputs: Sequence[str | Path], outputs: Sequence[Path], settings, load_teacher: Callable,
                chunk_size: int = 4096, max_queries: int = 0, num_shards: int = 1, shard_id: int = 0,
                skip_invalid: bool = False, engine: EngineArguments | None = None,
                tensor_parallel_size: int = 1) -> list[dict]:
    """Stage 1 for every input file: the chunks still missing (of shard `shard_id` of `num_shards`) are scored by
    `engine` (this process, or one Ray actor pool for all files), then each output is joined (not by a shard run:
    its metadata comes back marked incomplete). `settings` (TeacherSettings) identify the scores; `load_teacher()`
    runs once per replica, only if some chunk still needs scoring (with the ray engine it must pickle, e.g.
    functools.partial(load_teacher, options)). Returns each file's metadata."""
    jobs = [plan_file(path, output, settings, chunk_size, max_queries, num_shards, shard_id, skip_invalid)
            for path, output in zip(inputs, outputs)]
    pending = [job for job in jobs if isinstance(job, FileScoring)]
    for job in pending:
        job.metadata["engine"] = (engine or EngineArguments()).describe()
    total = sum(job.job.items(job.job.owned()) for job in pending)
    done = total - sum(job.job.items(job.job.pending()) for job in pending)
    with tqdm(total=total, initial=done, unit="pair", desc="scoring pairs", disable=not pending) as progress:
        work = [item for job in pending for item in job.chunk_work(progress)]
        run_chunks(work, functools.partial(PairScorer, load_teacher), engine, tensor_parallel_size)
    if num_shards > 1:
        for job in pending:
            job.job.shard_done(job.target)
        return [{**job.metadata, "complete": False} if isinstance(job, FileScoring) else job for job in jobs]
    return [job.finish() if isinstance(job, FileScoring) else job for job in jobs]


def score_file(input_path: str | Path, output: Path, settings, load_teacher: Callable, chunk_size: int = 4096,
               max_queries: int = 0, num_shards: int = 1, shard_id: int = 0, skip_invalid: bool = False,
               engine: EngineArguments | None = None) -> dict:
    """Stage 1 for one input file; see score_files."""
    return score_files([input_path], [output], settings, load_teacher, chunk_size, max_queries, num_shards, shard_id,
                       skip_invalid, engine)[0]
