"""Stage 5: serve the trained student: export it to ONNX and OpenVINO, quantise it to int8, measure every variant.

    python export.py --model output/reranker/model --test_file data/test.jsonl \
        --teacher_scores output/reranker/teacher_scores/test.scores.jsonl --calibration_files data/train.jsonl

Variants (ragdistill.export.variants): torch fp32 and bf16, ONNX Runtime fp32 (optimised graph), ONNX Runtime int8 (dynamic
quantisation), OpenVINO int8 (static, calibrated on (query, passage) pairs of the training file). The exported files
go into the model folder (onnx/, openvino/), as sentence-transformers lays them out. For every variant: MAP, MRR@10
and NDCG@10 on the test file (as in evaluation.py), mean per-query Spearman
correlation with the teacher's stage-1 scores and with the torch fp32 student's, pairs/s at batch 32 and p50 / p95
latency of one pair. Prints the table next to the teacher's row; saves export_results.json / .md / .png (MAP
against p95 latency) in --output_dir. A backend that is not installed or fails is left out, and the table says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.mteb import require_labels
from ragdistill.export.evaluation import TeacherRow, export_and_measure, save_report
from ragdistill.export.variants import ExportArguments
from ragdistill.reranker.evaluation import (
    SPEED,
    metrics_from_scores,
    read_test_samples,
    split_per_query,
    teacher_test_scores,
)
from ragdistill.reranker.pipeline import RerankerPipeline


@dataclass
class RerankerExportArguments:
    teacher_scores: str = field(default="output/reranker/teacher_scores/test.scores.jsonl", metadata={
        "help": "Stage-1 scores of the test file, for the teacher row ('' to leave the teacher out)."})


DEFAULTS = {"model": "output/reranker/model", "test_file": "data/stackoverflowdupquestions-reranking/test.jsonl",
            "calibration_files": "data/stackoverflowdupquestions-reranking/train.jsonl",
            "output_dir": "output/reranker/export"}


def main(argv: list[str] | None = None) -> None:
    # 1. arguments
    args, export = parse_args(RerankerExportArguments, ExportArguments, args=argv, defaults=DEFAULTS)

    # 2. test data, and the teacher's stage-1 scores of it
    samples = read_test_samples(export.test_file, export.max_queries)
    require_labels(export.test_file, samples, "the variants' quality check (MAP against the labels)")
    teacher, teacher_per_query = None, None
    if args.teacher_scores:
        flat, meta = teacher_test_scores(args.teacher_scores, samples)
        teacher_per_query = split_per_query(flat, samples)
        teacher = TeacherRow(meta.get("teacher", "teacher"), metrics_from_scores(flat, samples),
                             meta.get("pairs_per_second"), f"stage-1 scores ({meta.get('backend')}, "
                                                           f"{meta.get('dtype')}, {meta.get('device')})")

    # 3. export every variant into the model folder (OpenVINO int8 calibrated on training (query, passage) pairs), then
    #    measure each: quality, Spearman vs the teacher and the torch fp32 student, throughput, latency
    pipeline = RerankerPipeline()
    results = export_and_measure(pipeline, export.model, samples, teacher_per_query, export.calibration_files, export)

    # 4. one table next to the teacher's row: printed, saved as JSON + Markdown, MAP against p95 latency as PNG
    pairs = sum(len(s.candidates) for s in samples)
    notes = [f"{len(samples)} queries, {pairs} pairs of {export.test_file}; MAP / MRR@10 / NDCG@10 over all candidates "
             "(as CrossEncoderRerankingEvaluator computes them); Spearman: mean per-query rank correlation of the scores",
             f"{SPEED} at batch {export.student_batch_size} over {min(export.speed_items, pairs)} test pairs (median of "
             f"{export.repeats}); latency: one (query, passage) pair per call, {export.latency_items} calls; the "
             "variants take turns on the same CPU"]
    if teacher is not None:
        notes.append(f"teacher: {teacher.name}, metrics from its {teacher.setup}; its {SPEED} was measured in "
                     "stage 1, at its own batch size and dtype")
    save_report(results, teacher, export.output_dir, f"Reranker student as served: {export.model}",
                pipeline.speed_unit, export.student_batch_size, notes,
                extra={"student": pipeline.kind, "model": export.model, "test_file": export.test_file,
                       "teacher_scores": args.teacher_scores or None})


if __name__ == "__main__":
    run_main(main)
