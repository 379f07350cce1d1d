"""Stage 1: a teacher reranker scores every (query, passage) pair of reranking files (labelled or candidate lists).

For each input file it writes one line per distinct pair, {"query", "passage", "score"}, where the score is the
teacher's raw logit (for Qwen3-Reranker: logit("yes") - logit("no") after its model-card prompt), and beside it
<output>.meta.json with the teacher, backend, settings, counts, time, pairs/s, tokens/pair and truncations.

    python score.py --teacher_model Qwen/Qwen3-Reranker-8B --backend vllm \
        --train_files data/train.jsonl --test_files data/test.jsonl --output_dir output/reranker/teacher_scores

Backends: vllm (GPUs; --tensor_parallel_size for teachers larger than one GPU), torch (transformers, CPU or GPU),
bi-encoder (any SentenceTransformer; score = cosine x --bi_encoder_scale). A crash or kill loses at most the
chunk in flight: run the same command again to resume.

Several GPUs or machines: `--engine ray --num_replicas N` runs N teacher replicas as Ray actors, on this machine
or on the Ray cluster $RAY_ADDRESS names (docs/scaling.md); the output is the same file. Without Ray: run with
--num_shards N --shard_id I on N machines, put their <output>.parts folders together, then run the same command
without shard flags to join them.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field

from ragdistill.core.arguments import ScoringInputArguments
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.leakage import leaked_test_queries
from ragdistill.core.ray_engine import EngineArguments
from ragdistill.core.resumable import ShardArguments
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.reranker.scoring import output_paths, score_files
from ragdistill.reranker.teachers import TeacherArguments, describe_teacher, load_teacher

logger = logging.getLogger(__name__)


@dataclass
class OutputArguments:
    output_dir: str = field(default="output/reranker/teacher_scores", metadata={
        "help": "Where <input name>.scores.jsonl files go (one per input)."})
    output_files: str = field(default=None, metadata={
        "help": "Explicit output paths instead, comma-separated, one per input (--train_files, then --test_files)."})


def main(argv: list[str] | None = None) -> None:
    files, output, teacher, vllm, engine, shards = parse_args(
        ScoringInputArguments, OutputArguments, TeacherArguments, VLLMArguments, EngineArguments, ShardArguments,
        args=argv)

    # 1. inputs and outputs
    train_files, test_files = split_paths(files.train_files), split_paths(files.test_files)
    if not train_files and not test_files:
        raise InputError(None, "give --train_files (reranking files, comma-separated) and/or --test_files")
    inputs = train_files + [path for path in test_files if path not in train_files]
    outputs = output_paths(inputs, output.output_dir, split_paths(output.output_files))
    leaked_test_queries(train_files, test_files)

    # 2. teacher: checked now (path, kind), loaded only once a chunk needs scoring (on each replica, with Ray)
    settings = describe_teacher(teacher)
    logger.info(f"teacher {settings.model}: {settings.kind}, backend {settings.backend}, dtype {settings.dtype}")

    # 3. score every file's pairs chunk by chunk, in this process or on Ray actors (re-running resumes)
    load = functools.partial(load_teacher, teacher, vllm)
    score_files(inputs, outputs, settings, load, chunk_size=teacher.chunk_size,
                max_queries=files.max_queries, num_shards=shards.num_shards, shard_id=shards.shard_id,
                skip_invalid=files.skip_invalid, engine=engine, tensor_parallel_size=vllm.tensor_parallel_size)


if __name__ == "__main__":
    run_main(main)
