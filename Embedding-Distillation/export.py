"""Stage 5: serve the trained student: export it to ONNX and OpenVINO, quantise it to int8, measure every variant.

    python export.py --model output/embedding/model --test_file data/scidocs-reranking/test.jsonl \
        --calibration_files data/scidocs-reranking/validation.jsonl \
        --teacher_model Qwen/Qwen3-Embedding-8B --backend vllm --teacher_scores_dir output/embedding/teacher_scores

Variants (ragdistill.export.variants): torch fp32 and bf16, ONNX Runtime fp32 (optimised graph), ONNX Runtime int8 (dynamic
quantisation), OpenVINO int8 (static, calibrated on queries and passages of the training file). The exported files
go into the model folder (onnx/, openvino/), as sentence-transformers lays them out. For every variant: MAP, MRR@10
and NDCG@10 on the test file (as in evaluation.py), mean per-query Spearman correlation of its
similarities with the teacher's (the cache stage 1 and evaluation fill; same teacher flags) and with the torch fp32
student's, texts/s at batch 32 and p50 / p95 latency of one query. Prints the table next to the teacher's row;
saves export_results.json / .md / .png (MAP against p95 latency) in --output_dir. A backend that is not installed
or fails is left out, and the table says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.mteb import first_queries, iter_samples, require_labels
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.embedding.evaluation import metrics_from_similarities, teacher_similarities
from ragdistill.embedding.pipeline import EmbeddingPipeline
from ragdistill.embedding.scoring import LazyTeacher, cached_teacher_scores
from ragdistill.embedding.teachers import TeacherArguments, load_teacher
from ragdistill.export.evaluation import TeacherRow, export_and_measure, save_report
from ragdistill.export.variants import ExportArguments


@dataclass
class EmbeddingExportArguments:
    teacher_scores_dir: str = field(default="output/embedding/teacher_scores", metadata={
        "help": "Cache of teacher similarities (stage 1 and evaluation fill it; '' to leave the teacher out)."})


DEFAULTS = {"model": "output/embedding/model", "test_file": "data/scidocs-reranking/test.jsonl",
            "calibration_files": "data/scidocs-reranking/validation.jsonl", "output_dir": "output/embedding/export"}


def main(argv: list[str] | None = None) -> None:
    # 1. arguments: the export, the measurement export, the teacher (same flags as stage 1: its cached scores)
    args, export, teacher_args, vllm_args = parse_args(EmbeddingExportArguments, ExportArguments, TeacherArguments,
                                                        VLLMArguments, args=argv, defaults=DEFAULTS)

    # 2. test data, and the teacher's similarities of it (from the cache, or computed once and cached)
    samples = first_queries(iter_samples(export.test_file), export.max_queries)
    require_labels(export.test_file, samples, "the variants' quality check (MAP against the labels)")
    teacher, teacher_per_query = None, None
    if args.teacher_scores_dir:
        lazy = LazyTeacher(teacher_args, lambda: load_teacher(teacher_args, vllm_args))
        try:
            rows, meta = cached_teacher_scores([export.test_file], lazy, args.teacher_scores_dir)[export.test_file]
        finally:
            lazy.close()
        teacher_per_query = teacher_similarities(samples, rows, export.test_file)
        teacher = TeacherRow(meta["teacher"], metrics_from_similarities(samples, teacher_per_query),
                             meta["embedding"].get("texts_per_second"), f"stored similarities ({meta['backend']}, "
                                                                        f"{meta['dtype']})")

    # 3. export every variant into the model folder (OpenVINO int8 calibrated on training queries and passages), then
    #    measure each: quality, Spearman vs the teacher and the torch fp32 student, throughput, latency
    pipeline = EmbeddingPipeline()
    results = export_and_measure(pipeline, export.model, samples, teacher_per_query, export.calibration_files, export)

    # 4. one table next to the teacher's row: printed, saved as JSON + Markdown, MAP against p95 latency as PNG
    notes = [f"{len(samples)} queries, {sum(len(s.candidates) for s in samples)} candidates of {export.test_file}; "
             "MAP / MRR@10 / NDCG@10 as RerankingEvaluator computes them; Spearman: mean per-query rank correlation of the "
             "similarities",
             f"texts/s at batch {export.student_batch_size} over up to {export.speed_items} distinct test texts (median of "
             f"{export.repeats}); latency: one query per call, {export.latency_items} calls; the variants take turns "
             "on the same CPU"]
    if teacher is not None:
        notes.append(f"teacher: {teacher.name}, metrics from its {teacher.setup}; its texts/s was measured during "
                     "its scoring pass, at its own batch size and dtype")
    save_report(results, teacher, export.output_dir, f"Embedding student as served: {export.model}",
                pipeline.speed_unit, export.student_batch_size, notes,
                extra={"student": pipeline.kind, "model": export.model, "test_file": export.test_file})


if __name__ == "__main__":
    run_main(main)
