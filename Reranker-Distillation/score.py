"""Stage 1: a teacher reranker scores every (query, passage) pair of MTEB reranking files.

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
from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION
from ragdistill.reranker.scoring import output_paths, score_files
from ragdistill.reranker.teachers import TeacherOptions, describe_teacher, load_teacher

logger = logging.getLogger(__name__)


@dataclass
class TeacherScoringArguments:
    teacher_model: str = field(default="Qwen/Qwen3-Reranker-8B", metadata={
        "help": "Teacher: a yes/no LLM reranker (Qwen3-Reranker-*), a cross-encoder (bge-reranker-*), or for "
                "--backend bi-encoder any SentenceTransformer. Hub id or local folder."})
    output_dir: str = field(default="output/reranker/teacher_scores", metadata={
        "help": "Where <input name>.scores.jsonl files go (one per input)."})
    output_files: str = field(default=None, metadata={
        "help": "Explicit output paths instead, comma-separated, one per input (--train_files, then --test_files)."})
    backend: str = field(default="auto", metadata={
        "help": "vllm, torch or bi-encoder (an embedder as teacher); auto = vllm where a GPU and vLLM are present, "
                "else torch."})
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata={
        "help": "The <Instruct> of yes/no LLM rerankers: describe your retrieval task."})
    teacher_max_length: int = field(default=0, metadata={
        "help": "Max tokens per prompt; longer documents are cut (and counted). 0 = 8192 for yes/no LLM rerankers "
                "(lower it to save memory and time), the model's own limit otherwise."})
    teacher_dtype: str = field(default="auto", metadata={
        "help": "auto (bfloat16 on GPUs and CPUs with AMX or AVX512-BF16, else float32), float32, bfloat16 or "
                "float16."})
    batch_size: int = field(default=16, metadata={
        "help": "Pairs per forward pass (torch and bi-encoder backends; vLLM batches by itself)."})
    max_batch_tokens: int = field(default=0, metadata={
        "help": "torch backend: fill each forward pass up to this many padded tokens instead of --batch_size "
                "rows; 0 = 16384 on GPUs (fixed small batches leave a GPU idle), off on CPUs. Lower it on an "
                "out-of-memory."})
    share_prefixes: str = field(default="auto", metadata={
        "help": "torch backend, yes/no LLMs: compute each query's shared prompt prefix (system prompt, "
                "instruction, query) once as a KV cache and run only the passages' own tokens, many queries a "
                "batch; same scores. auto = on on CPUs (measured faster), off on GPUs (not measured there yet); "
                "on, off."})
    bi_encoder_scale: float = field(default=20.0, metadata={
        "help": "bi-encoder backend: score = cosine x this. Cosines span a narrow range; x20 (as in "
                "sentence-transformers' MarginMSE examples) gives logit-like margins."})
    device: str = field(default=None, metadata={"help": "torch/bi-encoder device; default cuda if present."})
    chunk_size: int = field(default=4096, metadata={
        "help": "Pairs per chunk: one vLLM call, one file on disk, the most a crash can lose. Keep it when resuming."})


def main(argv: list[str] | None = None) -> None:
    files, args, vllm, engine, shards = parse_args(ScoringInputArguments, TeacherScoringArguments, VLLMArguments,
                                                   EngineArguments, ShardArguments, args=argv)

    # 1. inputs and outputs
    train_files, test_files = split_paths(files.train_files), split_paths(files.test_files)
    if not train_files and not test_files:
        raise InputError(None, "give --train_files (MTEB reranking files, comma-separated) and/or --test_files")
    inputs = train_files + [path for path in test_files if path not in train_files]
    outputs = output_paths(inputs, args.output_dir, split_paths(args.output_files))
    leaked_test_queries(train_files, test_files)

    # 2. teacher: checked now (path, kind), loaded only once a chunk needs scoring (on each replica, with Ray)
    options = TeacherOptions(
        model=args.teacher_model, backend=args.backend, dtype=args.teacher_dtype, max_length=args.teacher_max_length,
        instruction=args.instruction, batch_size=args.batch_size, max_batch_tokens=args.max_batch_tokens,
        share_prefixes=args.share_prefixes, bi_encoder_scale=args.bi_encoder_scale,
        device=args.device, vllm=vllm,
    )
    settings = describe_teacher(options)
    logger.info(f"teacher {settings.model}: {settings.kind}, backend {settings.backend}, dtype {settings.dtype}")

    # 3. score every file's pairs chunk by chunk, in this process or on Ray actors (re-running resumes)
    score_files(inputs, outputs, settings, functools.partial(load_teacher, options), chunk_size=args.chunk_size,
                max_queries=files.max_queries, num_shards=shards.num_shards, shard_id=shards.shard_id,
                skip_invalid=files.skip_invalid, engine=engine, tensor_parallel_size=vllm.tensor_parallel_size)


if __name__ == "__main__":
    run_main(main)
