"""Stage 4: the student before and after distillation, next to the teacher, on an MTEB reranking test file.

    python evaluation.py --test_files data/test.jsonl --student_model BAAI/bge-reranker-v2-m3 \
        --trained_model output/reranker/model --teacher_scores output/reranker/teacher_scores/test.scores.jsonl

MAP, MRR@10 and NDCG@10 of the student before and after training come from its raw logits (CrossEncoder.predict)
over all candidates of each query, computed as sentence-transformers' CrossEncoderRerankingEvaluator computes them;
the teacher's from its stage-1 scores of the
same file (computed the evaluator's way; no second teacher run). Throughput (pairs/s) of the student before and
after is measured here, the teacher's comes from the stage-1 metadata. A second table measures the students'
agreement with the teacher (NDCG@10 with the teacher's scores as graded relevance, Spearman, Kendall), which needs
no labels: a test file of candidate lists ({"query", "candidates"}) gets that table alone. Prints the tables and
saves results.json, results.md and score_scatter.png (teacher vs student scores) in --output_dir.
"""

from __future__ import annotations

import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from transformers import set_seed

from ragdistill.core.arguments import StudentEvaluationArguments
from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.errors import InputError
from ragdistill.core.hardware import resolve_dtype, torch_dtype
from ragdistill.core.metrics import METRIC_NAMES
from ragdistill.core.mteb import all_labelled
from ragdistill.core.plots import score_scatter
from ragdistill.core.report import Comparison, agreement_comparison, save_comparisons
from ragdistill.reranker.evaluation import (
    SPEED,
    evaluate_student,
    flat_pairs,
    metrics_from_scores,
    read_test_samples,
    split_per_query,
    teacher_test_scores,
    throughput,
)
from ragdistill.reranker.training import load_student, saved_instruction, student_has_trained_head, student_instruction

logger = logging.getLogger(__name__)

NAMES = {"map": "MAP", "mrr@10": "MRR@10", "ndcg@10": "NDCG@10"}


# 64 pairs per forward pass where Embedding-Distillation's evaluation encodes 32 texts: this stage's default since its
# first release, kept so that its pairs/s stay comparable with earlier runs (the metrics move only by float rounding).
DEFAULTS = {"student_model": "BAAI/bge-reranker-v2-m3", "trained_model": "output/reranker/model",
            "student_batch_size": 64}


@dataclass
class EvaluationArguments:
    test_files: str = field(default="data/stackoverflowdupquestions-reranking/test.jsonl", metadata={
        "help": "The reranking test file (the flag Embedding-Distillation's evaluation names the same; this stage "
                "measures one file a run, against its stage-1 scores): labelled {query, positive, negative}, or "
                "candidate lists {query, candidates} (measured against the teacher)."})

    def __post_init__(self):
        from ragdistill.core.cli import split_paths

        files = split_paths(self.test_files)
        if len(files) != 1:
            raise InputError(None, f"--test_files: give one file (this stage measures one a run, against its "
                                   f"stage-1 scores); got {len(files)}")
        self.test_file = files[0]
    teacher_scores: str = field(default="output/reranker/teacher_scores/test.scores.jsonl", metadata={
        "help": "Stage-1 scores of the test file, for the teacher row ('' to leave the teacher out)."})
    output_dir: str = field(default="output/reranker/results", metadata={"help": "Where the table and plot go."})
    speed_pairs: int = field(default=1000, metadata={"help": "Test pairs timed for the throughput rows."})
    seed: int = field(default=42, metadata={
        "help": "Seed before loading the student: a freshly added head starts as in train.py (same --seed)."})


def _evaluate(model_path: str, label: str, student: StudentEvaluationArguments, seed: int, samples, pairs,
              speed_pairs: int, instruction: str | None = None) -> tuple[dict, list[float]]:
    set_seed(seed)
    model = load_student(model_path, student.max_seq_length, torch_dtype(student.student_dtype),
                         instruction=instruction)
    logger.info(f"evaluating {label}: {model_path}")
    if student_instruction(model):
        logger.info(f"yes/no LLM student: the teacher's prompt, instruction {student_instruction(model)!r}")
    result = evaluate_student(model, samples, student.student_batch_size, show_progress_bar=True)
    metrics, scores = result.metrics, np.concatenate(result.scores).tolist()
    metrics[SPEED] = throughput(model, pairs[:speed_pairs], student.student_batch_size)
    device = str(model.device)
    del model
    gc.collect()
    return {**metrics, "device": device}, scores


def main(argv: list[str] | None = None) -> None:
    student, args = parse_args(StudentEvaluationArguments, EvaluationArguments, args=argv, defaults=DEFAULTS)

    # 1. test data: every candidate of every query
    samples = read_test_samples(args.test_file, student.max_queries)
    pairs = flat_pairs(samples)
    labelled = all_labelled(samples)
    logger.info(f"{args.test_file}: {len(samples)} queries, {len(pairs)} (query, passage) pairs"
                + ("" if labelled else ", no labels: measured by agreement with the teacher"))
    if not labelled and not args.teacher_scores:
        raise InputError(args.test_file, "has no labels, so the students are measured against the teacher: give "
                                         "--teacher_scores (stage 1's scores of this file)")

    # 2. teacher row, from its stage-1 scores of this file
    teacher, teacher_scores, notes = {}, None, []
    if args.teacher_scores:
        teacher_scores, teacher_meta = teacher_test_scores(args.teacher_scores, samples)
        teacher = metrics_from_scores(teacher_scores, samples) if labelled else {}
        if teacher_meta.get("pairs_per_second"):
            teacher[SPEED] = teacher_meta["pairs_per_second"]
        notes.append(f"teacher: {teacher_meta.get('teacher')} (stage-1 scores, backend {teacher_meta.get('backend')}, "
                     f"{teacher_meta.get('dtype')}, {teacher_meta.get('device')}); its pairs/s was measured in stage "
                     f"1 on that hardware")

    # 3. student before and after training; a yes/no LLM student reads, before training too, the prompt it was
    # trained with (saved with it)
    instruction = saved_instruction(student.trained_model)
    before, before_scores = _evaluate(student.student_model, "student before training", student, args.seed, samples,
                                      pairs, args.speed_pairs, instruction)
    after, after_scores = _evaluate(student.trained_model, "student after training", student, args.seed, samples,
                                    pairs, args.speed_pairs)
    if not student_has_trained_head(student.student_model):
        notes.append(f"before: {student.student_model} has no trained reranking head; its 'before' row is a freshly "
                     f"initialised head (seed {args.seed}, as training started from)")
    notes.append(f"students: {resolve_dtype(student.student_dtype)} on {after['device']}, batch "
                 f"{student.student_batch_size}, pairs/s over "
                 f"{min(args.speed_pairs, len(pairs))} test pairs; metrics over all {len(pairs)} candidates of "
                 f"{len(samples)} queries (as CrossEncoderRerankingEvaluator computes them)")
    if instruction:
        notes.append(f"students (yes/no LLMs) read the teacher's prompt, instruction {instruction!r}")

    # 4. tables, before / after / teacher: quality by the labels (where the file has them) and throughput; agreement
    # with the teacher (where its scores are given)
    title = (f"Reranker distillation on {os.path.basename(args.test_file)}: "
             f"{os.path.basename(os.path.normpath(student.student_model))} before / after")
    rows = [*(NAMES[m] for m in METRIC_NAMES), SPEED] if labelled else [SPEED]

    def pick(values: dict) -> dict:
        return {NAMES.get(k, k): v for k, v in values.items() if k in (*METRIC_NAMES, SPEED)}

    comparisons = [Comparison(title=title if labelled else f"{title}, throughput",
                              before={k: pick(before)[k] for k in rows}, after=pick(after), teacher=pick(teacher),
                              notes=notes)]
    if teacher_scores is not None:
        comparisons.append(agreement_comparison(
            f"{title}, agreement with the teacher", split_per_query(before_scores, samples),
            split_per_query(after_scores, samples), split_per_query(teacher_scores, samples),
            [f"{len(samples)} queries, {len(pairs)} candidates; students: raw logits; teacher: its stage-1 scores"]))

    # 5. save the table (JSON + Markdown) and the score scatter
    output_dir = Path(args.output_dir)
    extra = {"test_file": args.test_file, "num_queries": len(samples), "num_pairs": len(pairs),
             "student_model": student.student_model, "trained_model": student.trained_model,
             "teacher_scores": args.teacher_scores or None, "labelled": labelled}
    save_comparisons(comparisons, output_dir, name="results", extra=extra)
    if teacher_scores is not None:
        plot = score_scatter(teacher_scores, {"before": before_scores, "after": after_scores},
                             output_dir / "score_scatter.png", title="Teacher vs student scores (test pairs)")
        logger.info(f"saved {plot}")


if __name__ == "__main__":
    run_main(main)
