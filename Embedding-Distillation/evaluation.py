"""Stage 4 of Embedding-Distillation: the student before and after training, next to its teacher.

On every in-domain and out-of-domain reranking file: MAP, MRR@10 and NDCG@10 of the base student and the
trained student (its own encode_query / encode_document / similarity, scored as sentence-transformers'
RerankingEvaluator scores) and of the teacher (from its similarities, cached per
teacher and file so it is computed once: score.py --test_files fills the same cache). Prints
one table per file (absolute and relative change, share of the teacher gap closed) plus encode throughput, saves
them as results.json / results.md, and a teacher-vs-student similarity scatter per file. The out-of-domain change
is the no-forgetting check. Every file also gets the students' agreement with the teacher (NDCG@10 with the
teacher's similarities as graded relevance, Spearman, Kendall), which needs no labels: a file of candidate lists
({"query", "candidates"}) gets that table alone.

    python evaluation.py --student_model BAAI/bge-m3 --trained_model output/embedding/model \
        --test_files data/scidocs-reranking/test.jsonl \
        --out_of_domain_files data/stackoverflowdupquestions-reranking/test.jsonl \
        --teacher_model Qwen/Qwen3-Embedding-8B --backend vllm --output_dir output/embedding/evaluation
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.arguments import StudentEvaluationArguments
from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, resolve_dtype, torch_dtype
from ragdistill.core.mteb import first_queries, iter_samples
from ragdistill.core.plots import score_scatter
from ragdistill.core.report import save_comparisons
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.embedding.evaluation import (
    FileEvaluation,
    encode_throughputs,
    evaluate_student,
    headline,
    relative_change,
    speed_sample,
    teacher_similarities,
    throughput_comparison,
)
from ragdistill.embedding.scoring import LazyTeacher, cached_teacher_scores
from ragdistill.embedding.teachers import TeacherArguments, load_teacher
from ragdistill.embedding.training import adopt_teacher_prompts, load_student

logger = logging.getLogger(__name__)


DEFAULTS = {"student_model": "BAAI/bge-m3", "trained_model": "output/embedding/model"}


@dataclass
class EvaluationArguments:
    test_files: str = field(default="data/scidocs-reranking/test.jsonl", metadata={
        "help": "Comma-separated reranking test files from the training domain (labelled, or candidate lists)."})
    out_of_domain_files: str = field(default="data/stackoverflowdupquestions-reranking/test.jsonl", metadata={
        "help": "Comma-separated reranking test files from other domains (the no-forgetting check)."})
    output_dir: str = field(default="output/embedding/evaluation", metadata={
        "help": "Where results.json, results.md and the scatter PNGs go."})
    teacher_scores_dir: str = field(default="output/embedding/teacher_scores", metadata={
        "help": "Cache of teacher similarities per teacher settings and file content (shared with stage 1)."})
    speed_texts: int = field(default=256, metadata={
        "help": "Distinct texts of the first file used to time the students' encoding (texts/s, median of 3 passes)."})


def main(argv: list[str] | None = None):
    # 1. arguments: evaluation, teacher (same settings as stage 1, so its cached scores are found), vLLM knobs
    student, args, teacher_args, vllm_args = parse_args(StudentEvaluationArguments, EvaluationArguments,
                                                          TeacherArguments, VLLMArguments, defaults=DEFAULTS, args=argv)
    domains = {path: "in-domain" for path in split_paths(args.test_files)}
    domains.update({path: "out-of-domain" for path in split_paths(args.out_of_domain_files)})
    if not domains:
        raise InputError(None, "no evaluation files: give --test_files and/or --out_of_domain_files")

    # 2. teacher similarities: from the cache, or one teacher pass per file (then cached)
    teacher = LazyTeacher(teacher_args, lambda: load_teacher(teacher_args, vllm_args))
    try:
        cached = cached_teacher_scores(list(domains), teacher, args.teacher_scores_dir)
    finally:
        teacher.close()
    files = []
    for path, domain in domains.items():
        samples = first_queries(iter_samples(path), student.max_queries)
        rows, _ = cached[path]
        files.append(FileEvaluation(path, domain, samples, teacher_similarities(samples, rows, path)))

    teacher_meta = cached[files[0].path][1]  # the teacher's settings and prompts, as stage 1 recorded them

    # 3. students before and after training: their similarities and metrics on every file, then encode throughput
    students = {label: load_student(path, student.max_seq_length, torch_dtype(student.student_dtype), default_device())
                for label, path in (("before", student.student_model), ("after", student.trained_model))}
    # An instruction-following student starts from the teacher's prompts, as in training (the trained one saved them)
    adopt_teacher_prompts(students["before"], teacher_meta)
    for label, model in students.items():
        for evaluation in files:
            logger.info(f"evaluating {label} training on {evaluation.name}")
            evaluation.students[label] = evaluate_student(model, evaluation.samples, student.student_batch_size,
                                                            show_progress_bar=True)
    speed_texts = speed_sample(files[0].samples, args.speed_texts)
    speed = encode_throughputs(students, speed_texts, student.student_batch_size)

    # 4. tables: one per file, plus throughput; printed and saved as JSON + Markdown
    comparisons = [table for evaluation in files for table in evaluation.comparisons()]
    comparisons.append(throughput_comparison(speed, teacher_meta, (
        f"sentence-transformers on {default_device()}, {resolve_dtype(student.student_dtype)}, batch "
        f"{student.student_batch_size}, {len(speed_texts)} texts of {files[0].name}")))
    save_comparisons(comparisons, args.output_dir, name="results", extra={
        "student": student.student_model, "trained_model": student.trained_model, "teacher": teacher_meta["teacher"],
        "student_max_seq_length": {label: model.max_seq_length for label, model in students.items()},
        "student_query_prompt": {label: (model.prompts or {}).get("query", "") for label, model in students.items()},
        "teacher_settings": {key: teacher_meta[key] for key in ("backend", "query_prompt", "max_length", "dtype")},
        "headline_relative_change": {f"{e.domain}: {e.name}": {e.headline_metric: relative_change(
            e.tables[0].before, e.tables[0].after, e.headline_metric)} for e in files},
    })

    # 5. pictures: teacher vs student similarities, before and after
    for evaluation in files:
        score_scatter(evaluation.flat(evaluation.teacher),
                      {label: evaluation.flat(scores.scores) for label, scores in evaluation.students.items()},
                      Path(args.output_dir) / f"scatter_{evaluation.slug}.png",
                      title=f"Teacher vs student cosine similarity, {evaluation.name}")
    logger.info(f"saved similarity scatter plots to {args.output_dir}")
    for evaluation in files:
        prefix = evaluation.domain + (" (no-forgetting check)" if evaluation.domain == "out-of-domain" else "")
        print(headline(evaluation.name, evaluation.tables[0].before, evaluation.tables[0].after,
                       evaluation.headline_metric, prefix=prefix))


if __name__ == "__main__":
    run_main(main)
