"""Teacher similarities as soft labels: the driver behind Embedding-Distillation/score.py.

1. Read reranking files: labelled ({"query", "positive": [...], "negative": [...]}) or candidate lists without
   labels ({"query", "candidates": [...]}, ranked by the teacher alone: ragdistill.embedding.rows).
2. Collect the unique prompted texts (query prompt + query, document prompt + passage) across all rows and files;
   each is embedded once, in resumable chunks (`<output>.parts/chunk-*.npy`); a shard run (`num_shards` > 1)
   embeds only its chunks and stops there, the run without shard flags joins (ragdistill.core.resumable).
3. Cosine similarities per query: one matrix-vector product over its candidates.
4. Rows for sentence-transformers' distillation losses, with the teacher similarities as `label`
   (ragdistill.embedding.rows: ntuple, triplet or scores).
5. The output is renamed into place when complete, then `<output>.meta.json` is written marked complete.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.hashing import file_digest
from ragdistill.core.jsonl import atomic_open, read_json, write_json
from ragdistill.core.mteb import RerankingSample, all_labelled, iter_samples
from ragdistill.core.ray_engine import EngineArguments, run_chunks
from ragdistill.core.resumable import (
    ChunkedJob,
    check_shard,
    fingerprint,
    is_complete,
    meta_path,
    reuse_complete,
)
from ragdistill.data.pseudo_queries import ROUND_TRIP_TOP, round_trip_keep
from ragdistill.embedding.rows import FALSE_NEGATIVE_MARGIN, FORMATS, build_rows, split_candidates, write_rows
from ragdistill.embedding.teachers import (
    EmbeddingTeacher,
    TeacherArguments,
    describe_teacher,
    load_tokenizer,
    normalize_rows,
)

logger = logging.getLogger(__name__)

LABEL_PRECISION = "float32"  # part of every fingerprint: files written with rounded labels are not reused


# 1. input ------------------------------------------------------------------------------------------------------


@dataclass
class ReadResult:
    samples: list[RerankingSample]
    files: list[dict]
    skips: SkipCounter


def read_reranking_files(paths: Sequence[str], skip_invalid: bool = False, max_queries: int = 0) -> ReadResult:
    """Validated samples from every file in order; `max_queries` > 0 stops after that many (smoke runs)."""
    if not paths:
        raise InputError(None, "no input files given")
    skips = SkipCounter(skip_invalid)
    samples: list[RerankingSample] = []
    files = []
    for path in paths:
        if max_queries and len(samples) >= max_queries:
            break
        kept = 0
        for sample in iter_samples(path, skips):
            samples.append(sample)
            kept += 1
            if max_queries and len(samples) >= max_queries:
                break
        files.append({"path": os.fspath(path), "sha256": file_digest(path), "queries": kept})
    return ReadResult(samples, files, skips)


# 2. unique texts and their embeddings --------------------------------------------------------------------------


@dataclass
class UniqueTexts:
    """The distinct prompted texts, queries first, each in order of first appearance."""

    texts: list[str] = field(default_factory=list)
    num_queries: int = 0
    index: dict[str, int] = field(default_factory=dict)

    def add(self, text: str) -> int:
        position = self.index.get(text)
        if position is None:
            position = self.index[text] = len(self.texts)
            self.texts.append(text)
        return position

    def digest(self) -> str:
        hasher = hashlib.sha256()
        for text in self.texts:
            hasher.update(text.encode("utf-8"))
            hasher.update(b"\x00")
        return hasher.hexdigest()[:16]


def unique_texts(samples: Sequence[RerankingSample], query_prompt: str, document_prompt: str) -> UniqueTexts:
    texts = UniqueTexts()
    for sample in samples:
        texts.add(query_prompt + sample.query)
    texts.num_queries = len(texts.texts)
    for sample in samples:
        for passage in sample.candidates:
            texts.add(document_prompt + passage)
    return texts


def count_truncated(tokenizer, texts: UniqueTexts, max_length: int, batch_size: int = 1024) -> dict:
    """How many unique texts are longer than max_length tokens (and get cut), queries and passages apart."""
    too_long = np.zeros(len(texts.texts), dtype=bool)
    longest = 0
    for start in range(0, len(texts.texts), batch_size):
        ids = tokenizer(texts.texts[start:start + batch_size], add_special_tokens=True, truncation=False,
                        verbose=False)["input_ids"]
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        too_long[start:start + len(ids)] = lengths > max_length
        longest = max(longest, int(lengths.max(initial=0)))
    return {"max_length": max_length, "queries": int(too_long[:texts.num_queries].sum()),
            "passages": int(too_long[texts.num_queries:].sum()), "longest_text_tokens": longest}


class LazyTeacher:
    """Loads the teacher on first use only, so resumed or cached work never pays for a model start. With the ray
    `engine`, Ray actors load the replicas instead (then `loader` must pickle: a functools.partial of load_teacher)."""

    def __init__(self, args: TeacherArguments, loader: Callable[[], EmbeddingTeacher],
                 engine: EngineArguments | None = None, tensor_parallel_size: int = 1):
        self.args = args
        self.identity = describe_teacher(args)
        self._loader = loader
        self._teacher: EmbeddingTeacher | None = None
        self.engine = engine
        self.tensor_parallel_size = tensor_parallel_size

    def make_worker(self) -> Callable[[], TextEmbedder]:
        """What builds a replica: in this process, this teacher (loaded once, kept); on a Ray actor, its own load."""
        if self.engine is not None and self.engine.engine == "ray":
            return functools.partial(TextEmbedder, self._loader)
        return functools.partial(TextEmbedder, self.get)

    def get(self) -> EmbeddingTeacher:
        if self._teacher is None:
            logger.info(f"loading teacher {self.args.teacher_model} ({self.args.backend}, {self.identity['dtype']})")
            self._teacher = self._loader()
        return self._teacher

    @property
    def loaded(self) -> EmbeddingTeacher | None:
        return self._teacher

    def tokenizer(self):
        teacher = self._teacher
        return teacher.tokenizer if teacher is not None else load_tokenizer(self.args.teacher_model)

    def close(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None


class TextEmbedder:
    """One teacher replica embedding chunks of texts: what every engine runs, in this process or on a Ray actor."""

    def __init__(self, load_teacher: Callable[[], EmbeddingTeacher]):
        self.teacher = load_teacher()

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        return self.teacher.encode(texts), time.perf_counter() - start


@dataclass
class EmbedStats:
    embedded: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        rate = self.embedded / self.seconds if self.seconds > 0 else None
        return {"texts_embedded_this_run": self.embedded, "embed_seconds": round(self.seconds, 3),
                "texts_per_second": None if rate is None else round(rate, 2)}


def embed_in_chunks(teacher: LazyTeacher, texts: Sequence[str], work_output: Path, job_fingerprint: str,
                    chunk_size: int, stats: EmbedStats, desc: str = "teacher embeddings", num_shards: int = 1,
                    shard_id: int = 0) -> ChunkedJob:
    """Embed `texts` into `<work_output>.parts/chunk-*.npy`, skipping chunks already on disk (and, in a shard run,
    other shards' chunks): the teacher's engine (this process, or Ray actors) computes the missing ones, this
    process saves each as it comes."""
    from tqdm.auto import tqdm

    job = ChunkedJob(work_output, job_fingerprint, len(texts), chunk_size, chunk_suffix=".npy",
                     num_shards=num_shards, shard_id=shard_id)
    pending = job.pending()
    total = job.items(job.owned())
    done_items = total - job.items(pending)
    if pending and job.done_count():
        logger.info(f"resuming: {job.done_count()} of {job.num_chunks} chunks already on disk")
    with tqdm(total=total, initial=done_items, unit="text", desc=desc, disable=not pending) as bar:

        def save(index: int, result: tuple[np.ndarray, float]) -> None:
            embeddings, seconds = result
            stats.seconds += seconds
            stats.embedded += len(embeddings)
            job.save_chunk(index, lambda handle: np.save(handle, embeddings), binary=True)
            bar.update(len(embeddings))

        work = [(lambda span=job.chunk_range(index): list(texts[span.start:span.stop]), functools.partial(save, index))
                for index in pending]
        run_chunks(work, teacher.make_worker(), teacher.engine, teacher.tensor_parallel_size)
    return job


def load_chunks(job: ChunkedJob) -> np.ndarray:
    return np.concatenate([np.load(path) for path in job.chunk_paths()])


def kept_embeddings_path(output: Path) -> Path:
    """Where a finished run keeps the teacher's embeddings of its texts (beside its output), so that a run with
    other row settings (--num_negatives, --false_negative_margin, --format) on the same texts and teacher embeds
    nothing: with an 8B teacher on a large corpus that is hours of GPU time."""
    return output.with_name(output.name + ".teacher_embeddings.npy")


def load_kept_embeddings(output: Path, job_fingerprint: str, num_texts: int) -> np.ndarray | None:
    """The embeddings an earlier run kept, if they are of the same texts by the same teacher; else None."""
    path = kept_embeddings_path(output)
    if not is_complete(path):
        return None
    kept = read_json(meta_path(path))
    if kept.get("job_fingerprint") != job_fingerprint or kept.get("texts") != num_texts:
        return None
    embeddings = np.load(path)
    return embeddings if embeddings.shape == (num_texts, kept.get("dimension")) else None


def keep_embeddings(output: Path, job_fingerprint: str, embeddings: np.ndarray) -> None:
    """Save the embeddings for load_kept_embeddings (atomic, then marked complete), replacing older ones."""
    path = kept_embeddings_path(output)
    meta_path(path).unlink(missing_ok=True)
    with atomic_open(path, "wb") as handle:
        np.save(handle, embeddings)
    write_json(meta_path(path), {"job_fingerprint": job_fingerprint, "texts": int(embeddings.shape[0]),
                                 "dimension": int(embeddings.shape[1]), "dtype": str(embeddings.dtype),
                                 "complete": True})
    logger.info(f"kept the teacher's embeddings in {path} ({path.stat().st_size / 2 ** 20:.1f} MiB): a run with "
                "other row settings on these texts reuses them (delete the file to free the space)")


# 3. similarities -----------------------------------------------------------------------------------------------


def candidate_similarities(samples: Sequence[RerankingSample], texts: UniqueTexts, embeddings: np.ndarray,
                           query_prompt: str, document_prompt: str) -> list[np.ndarray]:
    """Per sample, the teacher's cosine similarity of its query to each candidate (positives, then negatives)."""
    unit = normalize_rows(embeddings.astype(np.float32, copy=False))
    result = []
    for sample in samples:
        query = unit[texts.index[query_prompt + sample.query]]
        candidates = unit[[texts.index[document_prompt + passage] for passage in sample.candidates]]
        result.append(candidates @ query)
    return result


def round_trip_filter(samples: Sequence[RerankingSample], similarities: Sequence[np.ndarray], top: int
                      ) -> tuple[list[RerankingSample], list[np.ndarray], dict]:
    """Pseudo-queries (samples naming a source document) kept only if the teacher ranks the source among its `top`
    candidates; other samples pass. Returns the kept samples, their similarities and the counts."""
    kept, kept_sims, checked = [], [], 0
    for sample, sims in zip(samples, similarities):
        if sample.source is not None:
            checked += 1
            if not round_trip_keep(sims, sample.candidates.index(sample.source), top):
                continue
        kept.append(sample)
        kept_sims.append(sims)
    if not checked:
        return kept, kept_sims, {}
    counts = {"checked": checked, "kept": checked - (len(samples) - len(kept)), "top": top}
    logger.info(f"round-trip filter: kept {counts['kept']} of {checked} pseudo-queries (the teacher ranked their "
                f"source among its top {top})")
    if not kept:
        raise InputError(None, f"the round-trip filter kept none of {checked} pseudo-queries: the teacher ranked no "
                               f"source among its top {top} (raise --round_trip_top, or make better queries)")
    return kept, kept_sims, counts


# 4. stage summary ----------------------------------------------------------------------------------------------


def similarity_summary(similarities: Sequence[np.ndarray], samples: Sequence[RerankingSample]) -> dict:
    """Mean teacher similarity of the positives and the negatives (without labels: of each query's top candidate
    and the rest), and the range: shows how narrow the cosine range is."""
    splits = [split_candidates(s, np.asarray(sims)) for s, sims in zip(samples, similarities)]
    pos = np.concatenate([sims[positives] for sims, (positives, _, _) in zip(similarities, splits)])
    rest = np.concatenate([np.delete(sims, positives) for sims, (positives, _, _) in zip(similarities, splits)])
    every = np.concatenate([pos, rest])
    names = ("positive_mean", "negative_mean") if all_labelled(samples) else ("top_candidate_mean", "other_mean")
    return {names[0]: round(float(pos.mean()), 4), names[1]: round(float(rest.mean()), 4),
            "min": round(float(every.min()), 4), "max": round(float(every.max()), 4)}


# 5. the whole stage --------------------------------------------------------------------------------------------


def _remove_stale_temporaries(path: Path) -> None:
    """A kill -9 during an atomic write leaves `.name.tmp-PID` behind; the re-run cleans it up."""
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    meta = meta_path(path)
    for stale in meta.parent.glob(f".{meta.name}.tmp-*"):
        stale.unlink(missing_ok=True)


@dataclass
class SoftLabelJob:
    """One stage-1 run: inputs, teacher, output and row settings."""

    files: list[str]
    output: str
    teacher: LazyTeacher
    fmt: str = "ntuple"
    num_negatives: int = 8
    pad_negatives: bool = True
    false_negative_margin: float = FALSE_NEGATIVE_MARGIN
    round_trip_top: int = ROUND_TRIP_TOP
    max_queries: int = 0
    skip_invalid: bool = False
    num_shards: int = 1
    shard_id: int = 0
    keep_embeddings: bool = False

    def __post_init__(self):
        if self.fmt not in FORMATS:
            raise InputError(None, f"--format must be one of {', '.join(FORMATS)}, got '{self.fmt}'")
        if self.round_trip_top < 1:
            raise InputError(None, f"--round_trip_top must be at least 1, got {self.round_trip_top}")
        if not 0.0 < self.false_negative_margin <= 1.0:
            raise InputError(None, f"--false_negative_margin must be in (0, 1], got {self.false_negative_margin}")
        check_shard(self.num_shards, self.shard_id)
        self.output_path = Path(self.output)
        if self.output_path.is_dir():
            raise InputError(self.output_path, "is a directory; --output_file must be a .jsonl or .jsonl.gz file")

    def settings(self, file_records: list[dict]) -> dict:
        return {"files": [(f["path"], f["sha256"]) for f in file_records], "teacher": self.teacher.identity,
                "format": self.fmt, "num_negatives": self.num_negatives, "pad_negatives": self.pad_negatives,
                "false_negative_margin": self.false_negative_margin, "round_trip_top": self.round_trip_top,
                "max_queries": self.max_queries,
                "skip_invalid": self.skip_invalid, "labels": LABEL_PRECISION}

    def run(self) -> dict:
        """Run (or resume, or skip if already complete); return the output's metadata (a shard run: marked
        incomplete, the rows are written by the run without shard flags)."""
        started = time.perf_counter()
        _remove_stale_temporaries(self.output_path)

        # 1. read the input, collect the unique texts
        data = read_reranking_files(self.files, self.skip_invalid, self.max_queries)
        identity = self.teacher.identity
        texts = unique_texts(data.samples, identity["query_prompt"], identity["document_prompt"])
        job_fingerprint = fingerprint(identity, texts.digest())
        settings_fingerprint = fingerprint(self.settings(data.files))
        previous = reuse_complete(self.output_path, settings_fingerprint)
        if previous is not None:
            return previous
        if data.skips.total:
            logger.warning(data.skips.summary())
        logger.info(f"{len(data.samples)} queries from {len(data.files)} file(s): {texts.num_queries} unique queries and "
              f"{len(texts.texts) - texts.num_queries} unique passages to embed")

        # 2. embeddings of every text: kept by an earlier run of the same texts and teacher, or embedded now (a
        # shard run: its chunks only, then it stops)
        stats = EmbedStats()
        embeddings = None
        if self.keep_embeddings and self.num_shards == 1:
            embeddings = load_kept_embeddings(self.output_path, job_fingerprint, len(texts.texts))
        if embeddings is not None:
            logger.info(f"the teacher's embeddings of these texts, kept by an earlier run: "
                        f"{kept_embeddings_path(self.output_path)} (nothing to embed)")
            job = ChunkedJob(self.output_path, job_fingerprint, len(texts.texts), self.teacher.args.chunk_size,
                             chunk_suffix=".npy")
        else:
            job = embed_in_chunks(self.teacher, texts.texts, self.output_path, job_fingerprint,
                                  self.teacher.args.chunk_size, stats, num_shards=self.num_shards,
                                  shard_id=self.shard_id)
            if self.num_shards > 1:
                job.shard_done(self.output_path)
                return {"complete": False, "job_fingerprint": job_fingerprint, "num_chunks": job.num_chunks,
                        "chunks_done": job.done_count(), "embedding": stats.as_dict()}
            embeddings = load_chunks(job)
            if self.keep_embeddings:
                keep_embeddings(self.output_path, job_fingerprint, embeddings)

        # 3. similarities, 4. rows
        truncated = count_truncated(self.teacher.tokenizer(), texts, identity["max_length"])
        sims = candidate_similarities(data.samples, texts, embeddings, identity["query_prompt"],
                                      identity["document_prompt"])
        samples, sims, round_trip = round_trip_filter(data.samples, sims, self.round_trip_top) \
            if self.fmt != "scores" else (data.samples, sims, {})
        rows, row_stats = build_rows(samples, sims, self.fmt, self.num_negatives, self.pad_negatives,
                                     self.false_negative_margin)
        labelled = all_labelled(data.samples)
        if not labelled and self.fmt != "scores":
            logger.info("the input has no labels: each query's positive is the teacher's top candidate, and "
                        f"candidates above {self.false_negative_margin:g} x its similarity are no negatives")
        meta = {
            **identity, "format": self.fmt, "num_negatives": self.num_negatives or "all",
            "pad_negatives": self.pad_negatives, "false_negative_margin": self.false_negative_margin,
            "files": data.files, "max_queries": self.max_queries, "labelled": labelled,
            "counts": {"queries": len(data.samples),
                       "positives": sum(len(s.positive) for s in data.samples) if labelled else None,
                       "negatives": sum(len(s.negative) for s in data.samples) if labelled else None,
                       "candidates": sum(len(s.candidates) for s in data.samples),
                       "unique_queries": texts.num_queries, "unique_passages": len(texts.texts) - texts.num_queries,
                       "rows": len(rows), "skipped_invalid": data.skips.total,
                       "skipped_invalid_by_reason": data.skips.by_reason, **row_stats},
            "round_trip": round_trip,
            "truncated": truncated, "teacher_similarity": similarity_summary(sims, samples),
            "embedding": {"dimension": int(embeddings.shape[1]), **stats.as_dict()},
            "engine": (self.teacher.engine or EngineArguments()).describe(),
            "seconds": round(time.perf_counter() - started, 3),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "fingerprint": settings_fingerprint, "job_fingerprint": job_fingerprint,
        }

        # 5. output renamed into place, then the metadata marked complete
        job.finish(lambda handle: write_rows(handle, rows), meta)
        print_summary(self.output_path, meta)
        return {**meta, "complete": True}


def print_summary(output: Path, meta: dict) -> None:
    counts, truncated, embedding = meta["counts"], meta["truncated"], meta["embedding"]
    rate = embedding.get("texts_per_second")
    similarity = meta["teacher_similarity"]
    labels = (f"positives {counts['positives']}, negatives {counts['negatives']}" if meta["labelled"] else
              f"{counts['candidates']} candidates, no labels")
    means = ", ".join(f"{name.replace('_mean', '').replace('_', ' ')}s mean {value}" for name, value in similarity.items()
                      if name.endswith("_mean"))
    lines = [
        f"wrote {counts['rows']} {meta['format']} rows to {output}",
        f"  queries {counts['queries']} (unique {counts['unique_queries']}), {labels}, "
        f"unique passages {counts['unique_passages']}",
        f"  truncated to {truncated['max_length']} tokens: {truncated['queries']} queries, "
        f"{truncated['passages']} passages (longest text {truncated['longest_text_tokens']} tokens)",
        f"  teacher cosine: {means}, range [{similarity['min']}, {similarity['max']}]",
        f"  embedded {embedding['texts_embedded_this_run']} texts this run"
        + (f" at {rate:.1f} texts/s" if rate else ""),
    ]
    if counts.get("skipped_invalid"):
        lines.append(f"  skipped {counts['skipped_invalid']} invalid row(s) ({counts['skipped_invalid_by_reason']})")
    if counts.get("queries_padded"):
        lines.append(f"  {counts['queries_padded']} queries have fewer than {counts['negatives_per_row']} negatives: "
                     "their rows repeat their negatives, hardest first")
    if counts.get("false_negatives_dropped"):
        lines.append(f"  {counts['false_negatives_dropped']} candidates scored within {meta['false_negative_margin']:g} x "
                     "the top candidate's similarity: not used as negatives (likely positives)")
    if counts.get("queries_without_negatives"):
        lines.append(f"  left out {counts['queries_without_negatives']} queries with no candidate left as a negative")
    if counts.get("queries_too_few_negatives"):
        lines.append(f"  left out {counts['queries_too_few_negatives']} queries with fewer than "
                     f"{counts['negatives_per_row']} negatives")
    logger.info("\n".join(lines))


# teacher scores of evaluation files, cached ----------------------------------------------------------------------


def _slug(path: str | os.PathLike) -> str:
    path = Path(path)
    stem = re.sub(r"\.jsonl(\.gz)?$", "", path.name)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{path.parent.name}-{stem}" if path.parent.name else stem)


def teacher_scores_path(cache_dir: str | os.PathLike, file: str | os.PathLike, identity: dict) -> Path:
    """Cache file of a teacher's similarities on an evaluation file, keyed by teacher settings + file content."""
    return Path(cache_dir) / f"{_slug(file)}.{fingerprint(identity, file_digest(file), LABEL_PRECISION)}.jsonl"


def cached_teacher_scores(files: Sequence[str], teacher: LazyTeacher, cache_dir: str | os.PathLike
                          ) -> dict[str, tuple[list[dict], dict]]:
    """The teacher's per-candidate similarities for each file: read from the cache, or computed once and stored.
    The teacher is loaded only if some file is not cached yet."""
    from ragdistill.core.jsonl import read_jsonl

    result = {}
    for file in files:
        if not Path(file).exists():
            raise InputError(file, "file does not exist")
        path = teacher_scores_path(cache_dir, file, teacher.identity)
        if is_complete(path):
            logger.info(f"teacher scores for {file}: cached in {path}")
        else:
            logger.info(f"teacher scores for {file}: computing into {path}")
            SoftLabelJob(files=[file], output=os.fspath(path), teacher=teacher, fmt="scores").run()
        result[os.fspath(file)] = (read_jsonl(path), read_json(meta_path(path)))
    return result
