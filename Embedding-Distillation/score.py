"""Stages 1-2 of Embedding-Distillation: the teacher's similarities become soft labels (training rows) for the student.

The teacher (e.g. Qwen3-Embedding-8B) embeds every unique query and passage of the training files once; the cosine
similarity of each query to its candidates becomes the `label` of rows that sentence-transformers'
DistillKLDivLoss (or MarginMSELoss) trains on. Work is saved in chunks, so re-running the same command after a
crash continues where it stopped. It also scores the test files (--test_files; off with --score_test_files false),
so evaluation.py does not load the teacher again.

    python score.py --teacher_model Qwen/Qwen3-Embedding-8B --backend vllm \
        --train_files data/scidocs-reranking/validation.jsonl --output_file output/embedding/training_rows.jsonl

Several GPUs or machines: `--engine ray --num_replicas N` embeds with N teacher replicas on Ray actors, on this
machine or on the Ray cluster $RAY_ADDRESS names (docs/scaling.md); the output is the same file. Without Ray: run
with --num_shards N --shard_id I (one process per GPU or machine), put their <output_file>.parts folders together,
then run the same command without shard flags: it joins the chunks and writes the rows.
"""

import functools
import logging
from dataclasses import dataclass, field

from ragdistill.core.arguments import ScoringInputArguments, parse_num_negatives
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.leakage import leaked_test_queries
from ragdistill.core.ray_engine import EngineArguments
from ragdistill.core.resumable import ShardArguments
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.data.pseudo_queries import ROUND_TRIP_TOP
from ragdistill.embedding.rows import FALSE_NEGATIVE_MARGIN, FORMATS
from ragdistill.embedding.scoring import LazyTeacher, SoftLabelJob, cached_teacher_scores
from ragdistill.embedding.teachers import TeacherArguments, load_teacher

logger = logging.getLogger(__name__)
AUTO_NEGATIVES = 8  # --num_negatives auto: the rows every measurement in the module README used


@dataclass
class DataArguments:
    output_file: str = field(default="output/embedding/training_rows.jsonl", metadata={
        "help": "Training rows (.jsonl or .jsonl.gz); metadata goes to <output_file>.meta.json."})
    format: str = field(default="ntuple", metadata={
        "help": "ntuple: one row per (query, positive) with the --num_negatives hardest negatives by teacher "
                "similarity. triplet: one row per (positive, negative) pair (the Cartesian product). "
                "scores: one row per query with every candidate's similarity.", "choices": list(FORMATS)})
    num_negatives: str = field(default="auto", metadata={
        "help": "Negatives per ntuple row, the hardest by teacher similarity; 'all' (or 0) = as many as the query "
                f"with the most negatives has (all rows need the same columns); 'auto' = {AUTO_NEGATIVES}, the rows "
                "every measurement in the module README used (Reranker-Distillation's listwise rows hold a query's "
                "whole list)."})
    pad_negatives: bool = field(default=True, metadata={
        "help": "A query with fewer negatives than a row holds repeats its own, hardest first (teacher and student "
                "see the same repeats). --pad_negatives false: leave such queries out (counted)."})
    false_negative_margin: float = field(default=FALSE_NEGATIVE_MARGIN, metadata={
        "help": "Input without labels: a candidate the teacher scores above this share of its top candidate's "
                "similarity is not used as a negative (likely a positive too; NV-Retriever's positive-aware "
                "filter). 1.0: only exact ties are dropped."})
    round_trip_top: int = field(default=ROUND_TRIP_TOP, metadata={
        "help": "Pseudo-queries (their lines name a source document): kept only if the teacher ranks the source "
                "among its top N candidates (the round-trip filter)."})
    keep_teacher_embeddings: bool = field(default=True, metadata={
        "help": "Keep the teacher's embeddings of the training texts beside --output_file "
                "(<output_file>.teacher_embeddings.npy, 4 bytes x dimension per text), so that a re-run with other "
                "row settings (--num_negatives, --false_negative_margin, --format) embeds nothing. false: do not."})
    score_test_files: bool = field(default=True, metadata={
        "help": "false: only check --test_files for leaked queries; evaluation.py scores them with the teacher. "
                "(Scored here, they are cached in --teacher_scores_dir, which saves loading the teacher again.)"})
    teacher_scores_dir: str = field(default="output/embedding/teacher_scores", metadata={
        "help": "Where teacher scores of evaluation files are cached (keyed by teacher settings and file content)."})


def main(argv: list[str] | None = None):
    # 1. arguments: data, teacher, vLLM engine knobs, where the replicas run (here or on Ray)
    inputs, data_args, teacher_args, vllm_args, engine, shards = parse_args(
        ScoringInputArguments, DataArguments, TeacherArguments, VLLMArguments, EngineArguments, ShardArguments,
        args=argv, defaults={"train_files": "data/scidocs-reranking/validation.jsonl"})
    leaked_test_queries(split_paths(inputs.train_files), split_paths(inputs.test_files))

    # 2. the teacher, loaded only when something is left to embed (resumed or cached work needs no model)
    teacher = LazyTeacher(teacher_args, functools.partial(load_teacher, teacher_args, vllm_args), engine,
                          vllm_args.tensor_parallel_size)
    logger.info(f"teacher {teacher_args.teacher_model} on {teacher_args.backend}, dtype {teacher.identity['dtype']}, "
          f"query prompt {teacher.identity['query_prompt']!r}, max {teacher_args.teacher_max_length} tokens")
    try:
        # 3. soft labels for the training files: resumable chunks (a shard run embeds its chunks only)
        SoftLabelJob(
            files=split_paths(inputs.train_files), output=data_args.output_file, teacher=teacher,
            fmt=data_args.format, num_negatives=parse_num_negatives(data_args.num_negatives, AUTO_NEGATIVES, zero=0),
            pad_negatives=data_args.pad_negatives, false_negative_margin=data_args.false_negative_margin,
            round_trip_top=data_args.round_trip_top,
            max_queries=inputs.max_queries, skip_invalid=inputs.skip_invalid,
            num_shards=shards.num_shards, shard_id=shards.shard_id, keep_embeddings=data_args.keep_teacher_embeddings,
        ).run()

        # 4. teacher scores of the evaluation files, cached for evaluation.py (not in shard runs)
        if inputs.test_files and data_args.score_test_files and not shards.sharded:
            cached_teacher_scores(split_paths(inputs.test_files), teacher, data_args.teacher_scores_dir)
    finally:
        teacher.close()


if __name__ == "__main__":
    run_main(main)
