"""Stage-1 outputs built in chunks, so a crash (kill -9 included) loses at most the chunk in flight.

Layout, for an output `scores.jsonl`:
  scores.jsonl.parts/progress.json   what is being built (fingerprint of inputs and settings, chunking)
  scores.jsonl.parts/chunk-00000.*   finished chunks, each written under a temporary name and renamed
  scores.jsonl                        the joined output, renamed into place only once every chunk is done
  scores.jsonl.meta.json              metadata with "complete": true, written last

Re-running the same command skips finished chunks. The joined output equals, row for row, what an
uninterrupted run writes, since chunk boundaries depend only on the inputs and the chunk size. Which engine computed
a chunk does not matter (ragdistill.core.ray_engine.run_chunks: this process, or Ray actors): the process that runs
the stage saves every chunk, so either engine resumes the other's run.
Shards split one job over machines without Ray: with `num_shards` N and `shard_id` I a run computes only chunks
i % N == I, into the same `.parts/` folder (chunk files are named by their index in the whole job, so the folders of
several machines merge with a plain copy) and joins nothing; the same command without shard flags then joins them
(computing whatever chunk is still missing). progress.json holds no shard, so every shard checks the same fingerprint.
Later stages call `require_complete`, which refuses a partial output and says how to resume; `reuse_complete` is the
one rule for an output that is already there: kept if made by the same job, else no longer counted as complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import atomic_open, read_json, write_json

PROGRESS_FILE = "progress.json"

logger = logging.getLogger(__name__)


def fingerprint(*parts: Any) -> str:
    """A stable digest of JSON-serialisable parts (inputs, model, settings)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()[:16]


def meta_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".meta.json")


def parts_dir(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + ".parts")


def check_shard(num_shards: int, shard_id: int) -> None:
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise InputError(None, f"--shard_id must be in 0..{num_shards - 1} and --num_shards at least 1, got shard "
                               f"{shard_id} of {num_shards}")


@dataclass
class ShardArguments:
    """The score stages' split over machines without Ray (both pipelines)."""

    num_shards: int = field(default=1, metadata={
        "help": "Split the chunks over N runs (machines or GPUs without Ray): this run computes chunks i with "
                "i %% N == --shard_id into <output>.parts/. Copy every run's .parts folder into one, then run the "
                "same command without shard flags to join them."})
    shard_id: int = field(default=0, metadata={"help": "Which shard this run computes (0 .. --num_shards - 1)."})

    def __post_init__(self):
        check_shard(self.num_shards, self.shard_id)

    @property
    def sharded(self) -> bool:
        return self.num_shards > 1


class ChunkedJob:
    """Splits `num_items` items into fixed chunks and tracks which chunks are finished on disk. A shard
    (`num_shards` > 1) owns the chunks i % num_shards == shard_id: only those are pending for it."""

    def __init__(self, output: str | os.PathLike, job_fingerprint: str, num_items: int, chunk_size: int,
                 chunk_suffix: str = ".jsonl", num_shards: int = 1, shard_id: int = 0):
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        check_shard(num_shards, shard_id)
        self.num_shards, self.shard_id = num_shards, shard_id
        self.output = Path(output)
        self.work_dir = parts_dir(self.output)
        self.num_items = num_items
        self.chunk_size = chunk_size
        self.chunk_suffix = chunk_suffix
        self.num_chunks = (num_items + chunk_size - 1) // chunk_size
        progress = {"fingerprint": job_fingerprint, "num_items": num_items, "chunk_size": chunk_size}
        progress_path = self.work_dir / PROGRESS_FILE
        if progress_path.exists():
            previous = read_json(progress_path)
            if previous != progress:
                raise InputError(
                    self.work_dir,
                    "a partial output from a different run is here (other inputs, model or settings, e.g. "
                    f"--chunk_size): was {previous}, now {progress}. Re-run with the original settings to "
                    "resume, or delete this folder to start over",
                )
        else:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            write_json(progress_path, progress)

    def chunk_path(self, index: int) -> Path:
        return self.work_dir / f"chunk-{index:05d}{self.chunk_suffix}"

    def chunk_range(self, index: int) -> range:
        return range(index * self.chunk_size, min((index + 1) * self.chunk_size, self.num_items))

    def owned(self) -> list[int]:
        """The chunks of this run's shard (all of them without shards)."""
        return list(range(self.shard_id, self.num_chunks, self.num_shards))

    def items(self, indices: Iterable[int]) -> int:
        return sum(len(self.chunk_range(i)) for i in indices)

    def missing(self) -> list[int]:
        """Chunks not on disk yet, of every shard."""
        return [i for i in range(self.num_chunks) if not self.chunk_path(i).exists()]

    def pending(self) -> list[int]:
        """Chunks this run still has to compute: the missing ones of its shard."""
        return [i for i in self.missing() if i % self.num_shards == self.shard_id]

    def done_count(self) -> int:
        return self.num_chunks - len(self.missing())

    def shard_done(self, output_name: str | os.PathLike) -> None:
        """A shard run stops here: log what is left for the other shards and how to join."""
        missing = len(self.missing())
        then = (f"{missing} for other shards. When every shard is done, put all their {self.work_dir.name} folders "
                "together and run" if missing else "Run")
        logger.info("%s: shard %d of %d done, %d of %d chunks on disk, %s the same command without "
                    "--num_shards/--shard_id to join them", output_name, self.shard_id, self.num_shards,
                    self.done_count(), self.num_chunks, then)

    def save_chunk(self, index: int, write: Callable[[Any], None], binary: bool = False) -> None:
        """Write one chunk atomically: `write(handle)` fills it; it appears only once complete."""
        with atomic_open(self.chunk_path(index), "wb" if binary else "w") as handle:
            write(handle)

    def chunk_paths(self) -> list[Path]:
        missing = self.missing()
        if missing:
            raise RuntimeError(f"{len(missing)} chunk(s) not finished yet, first {missing[0]}")
        return [self.chunk_path(i) for i in range(self.num_chunks)]

    def finish(self, write_output: Callable[[Any], None], metadata: dict, binary: bool = False) -> None:
        """Join the chunks into the output (atomic), then write the metadata marked complete, then clean up."""
        with atomic_open(self.output, "wb" if binary else "w") as handle:
            write_output(handle)
        write_json(meta_path(self.output), {**metadata, "complete": True})
        shutil.rmtree(self.work_dir, ignore_errors=True)


def concatenate_text_chunks(paths: Iterable[Path]) -> Callable[[Any], None]:
    """A `write_output` for ChunkedJob.finish that streams text chunks one after another."""

    def write(handle) -> None:
        for path in paths:
            with open(path, encoding="utf-8") as chunk:
                shutil.copyfileobj(chunk, handle, 1 << 20)

    return write


def is_complete(output: str | os.PathLike) -> bool:
    output = Path(output)
    meta = meta_path(output)
    if not (output.exists() and meta.exists()):
        return False
    try:
        return bool(read_json(meta).get("complete"))
    except InputError:
        return False


def reuse_complete(output: str | os.PathLike, job_fingerprint: str, key: str = "fingerprint") -> dict | None:
    """The metadata of `output` if it is complete and was made by this job (`key` in its metadata equals
    `job_fingerprint`): there is nothing to do. Otherwise None; a finished output of other inputs or settings first
    stops counting as complete (its metadata goes), so a crash before the new one is written leaves nothing that
    later stages would take for this job's output."""
    output = Path(output)
    if not is_complete(output):
        return None
    previous = read_json(meta_path(output))
    if previous.get(key) == job_fingerprint:
        shutil.rmtree(parts_dir(output), ignore_errors=True)  # left over if a run died while cleaning up
        logger.info("%s: already complete (same inputs and settings), nothing to do", output)
        return previous
    logger.info("%s: replacing a finished output of a different run", output)
    meta_path(output).unlink()
    return None


def require_complete(output: str | os.PathLike, stage_command: str = "the stage-1 command") -> dict:
    """Refuse an output that stage 1 has not finished; return its metadata."""
    output = Path(output)
    work = parts_dir(output)
    if not is_complete(output):
        if work.exists():
            job = read_json(work / PROGRESS_FILE) if (work / PROGRESS_FILE).exists() else {}
            done = len(list(work.glob("chunk-*")))
            size = job.get("chunk_size") or 1
            total = (job.get("num_items", 0) + size - 1) // size
            raise InputError(output, f"incomplete: stage 1 stopped after {done} of {total or '?'} chunks. "
                                     f"Re-run {stage_command} with the same arguments to resume it")
        if output.exists():
            raise InputError(output, f"incomplete: no '{meta_path(output).name}' marked complete beside it. "
                                     f"Re-run {stage_command} to finish it")
        raise InputError(output, "file does not exist")
    return read_json(meta_path(output))
