"""Measure a student's exported variants the way they would be deployed, and report them side by side.

Every variant that `ragdistill.export.variants` built is loaded together with the others and scored on the test
samples (MAP / MRR@10 / NDCG@10, rank agreement with the teacher and with the torch fp32 student), then timed in
turns (throughput at the stage's batch size, latency at batch one), so that a busy machine slows them alike.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.metrics import METRIC_NAMES
from ragdistill.core.mteb import RerankingSample
from ragdistill.core.pipeline import Pipeline
from ragdistill.core.report import format_number
from ragdistill.export.variants import (
    ExportArguments,
    export_variants,
    load_variant,
    read_calibration_samples,
    short_error,
    variant_size_bytes,
)

logger = logging.getLogger(__name__)


def throughputs_in_turns(runs: dict[str, Callable[[list], object]], items: Sequence, batch_size: int,
                         repeats: int = 3) -> dict[str, float]:
    """Items per second of each run on the same items: median of `repeats` timed passes, each after a one-batch
    warm-up, the variants taking turns so that a busy machine slows them alike."""
    from ragdistill.core.speed import items_per_second

    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(items_per_second(run, list(items), warmup=batch_size))
    return {name: float(np.median(values)) for name, values in rates.items()}


def latencies_in_turns(runs: dict[str, Callable[[list], object]], items: Sequence, warmup: int = 3
                       ) -> dict[str, dict[str, float]]:
    """p50 / p95 / mean milliseconds of one call on one item (batch of one, as a service gets a query), the
    variants taking turns item by item."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for item in list(items)[:warmup]:
        for run in runs.values():
            run([item])
    for item in items:
        for name, run in runs.items():
            started = time.perf_counter()
            run([item])
            times[name].append((time.perf_counter() - started) * 1e3)
    return {name: {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
                   "mean_ms": float(statistics.fmean(values))} for name, values in times.items() if values}


@dataclass
class VariantResult:
    variant: str
    metrics: dict[str, float] = field(default_factory=dict)  # map, mrr@10, ndcg@10
    scores: list[np.ndarray] = field(default_factory=list)   # per query, the candidates' scores
    spearman_teacher: float | None = None
    spearman_fp32: float | None = None
    throughput: float | None = None
    latency: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None
    problem: str | None = None

    def to_json(self) -> dict:
        return {"variant": self.variant, "metrics": self.metrics, "spearman_vs_teacher": self.spearman_teacher,
                "spearman_vs_torch_fp32": self.spearman_fp32, "throughput": self.throughput, "latency": self.latency,
                "size_bytes": self.size_bytes, "problem": self.problem}


def mean_spearman(scores: Sequence[Sequence[float]], reference: Sequence[Sequence[float]]) -> float:
    """Mean per-query Spearman correlation of two score lists per query (ragdistill.core.metrics.teacher_agreement);
    NaN where no query has an order on both sides."""
    from ragdistill.core.metrics import teacher_agreement

    try:
        return teacher_agreement(list(zip(scores, reference)))["spearman vs teacher"]
    except ValueError:
        return float("nan")


def measure_variants(pipeline: Pipeline, model_path: str | Path, variants: Sequence[str], samples: Sequence[RerankingSample],
                     teacher_scores: Sequence[np.ndarray] | None, problems: dict[str, str], batch_size: int = 32,
                     speed_count: int = 512, latency_count: int = 200, max_length: int = 0, repeats: int = 3
                     ) -> list[VariantResult]:
    """Quality of every variant on the test samples, then its speed (batch `batch_size`) and latency (batch 1),
    all variants loaded together so they take turns on the CPU."""
    from tqdm.auto import tqdm

    results = {v: VariantResult(v, problem=problems.get(v)) for v in variants}
    models = {}
    for variant in tqdm([v for v in variants if not results[v].problem], desc="quality per variant", unit="variant"):
        result = results[variant]
        try:
            model = load_variant(pipeline, model_path, variant, max_length)
            scored = pipeline.evaluate(model, samples, batch_size)
            result.metrics, result.scores = {name: scored.metrics[name] for name in METRIC_NAMES}, scored.scores
        except Exception as error:  # a runtime that fails on this model: reported, the others still measured
            result.problem = f"could not run: {short_error(error)}"
            logger.warning("%s: %s", variant, result.problem)
            continue
        models[variant] = model
        result.size_bytes = variant_size_bytes(model_path, variant)
        if teacher_scores is not None:
            result.spearman_teacher = mean_spearman(result.scores, teacher_scores)
    reference = results.get("torch-fp32")
    for result in results.values():
        if reference is not None and reference.scores and result.scores:
            result.spearman_fp32 = mean_spearman(result.scores, reference.scores)
    if models:
        runs = {variant: pipeline.runner(model, batch_size) for variant, model in models.items()}
        logger.info("timing %d variants: %d items at batch %d, then %d single items", len(runs), speed_count,
                    batch_size, latency_count)
        rates = throughputs_in_turns(runs, pipeline.speed_items(samples, speed_count), batch_size, repeats)
        latencies = latencies_in_turns(runs, pipeline.latency_items(samples, latency_count))
        for variant in models:
            results[variant].throughput = rates[variant]
            results[variant].latency = latencies.get(variant, {})
    return [results[v] for v in variants]


def export_and_measure(pipeline: Pipeline, model_path: str | Path, samples: Sequence[RerankingSample],
                       teacher_scores: Sequence[np.ndarray] | None, calibration_files: str, knobs: ExportArguments
                       ) -> list[VariantResult]:
    """An export stage's work: every chosen variant written into the model folder (the OpenVINO one calibrated on
    the training files), then all of them measured on the test samples."""
    from ragdistill.core.cli import split_paths

    calibration: list[RerankingSample] = []
    if "openvino-int8" in knobs.variant_list:
        paths = split_paths(calibration_files)
        if not paths:
            raise InputError(None, "--calibration_files: the openvino-int8 variant needs a training file")
        calibration = read_calibration_samples(paths, knobs.calibration_items)
    problems = export_variants(pipeline, model_path, knobs.variant_list, calibration, knobs.calibration_items)
    return measure_variants(pipeline, model_path, knobs.variant_list, samples, teacher_scores, problems,
                            knobs.student_batch_size, knobs.speed_items, knobs.latency_items, knobs.max_seq_length,
                            knobs.repeats)


# ----------------------------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class TeacherRow:
    name: str
    metrics: dict[str, float]
    throughput: float | None = None
    setup: str = ""


def torch_reference(results: Sequence[VariantResult]) -> VariantResult | None:
    """The measured torch fp32 student, the row every variant is compared with (None if it was not measured)."""
    return next((r for r in results if r.variant == "torch-fp32" and r.metrics), None)


def best_variant(results: Sequence[VariantResult], keep: float = 0.99) -> VariantResult | None:
    """The fastest variant (throughput) whose MAP is at least `keep` x the torch fp32 student's."""
    reference = torch_reference(results)
    if reference is None:
        return None
    kept = [r for r in results if r.metrics and r.throughput and r.metrics["map"] >= keep * reference.metrics["map"]]
    return max(kept, key=lambda r: r.throughput, default=None)


def table(results: Sequence[VariantResult], teacher: TeacherRow | None, unit: str, batch_size: int
          ) -> tuple[list[str], list[list[str]]]:
    headers = ["variant", "MAP", "MRR@10", "NDCG@10", "MAP vs fp32", "Spearman vs teacher", "Spearman vs fp32",
               f"{unit} (batch {batch_size})", "speed-up vs fp32", "p50 ms (batch 1)", "p95 ms (batch 1)", "MB"]
    reference = torch_reference(results)
    rows = []
    for r in results:
        if not r.metrics:
            rows.append([r.variant] + ["-"] * (len(headers) - 1))
            continue
        relative = (r.metrics["map"] / reference.metrics["map"] - 1) if reference else None
        speedup = r.throughput / reference.throughput if reference and reference.throughput and r.throughput else None
        rows.append([r.variant, *(format_number(r.metrics[name]) for name in METRIC_NAMES),
                     "-" if relative is None else f"{relative:+.2%}", format_number(r.spearman_teacher),
                     format_number(r.spearman_fp32), format_number(r.throughput, 1),
                     "-" if speedup is None else f"{speedup:.2f}x", format_number(r.latency.get("p50_ms"), 2),
                     format_number(r.latency.get("p95_ms"), 2),
                     "-" if r.size_bytes is None else f"{r.size_bytes / 1e6:.1f}"])
    if teacher is not None:
        rows.append([f"teacher ({Path(teacher.name).name})",
                     *(format_number(teacher.metrics.get(name)) for name in METRIC_NAMES),
                     "-", "1.0000", "-", format_number(teacher.throughput, 1), "-", "-", "-", "-"])
    return headers, rows


def summary_lines(results: Sequence[VariantResult], teacher: TeacherRow | None, unit: str) -> list[str]:
    lines = []
    best = best_variant(results)
    reference = torch_reference(results)
    if best is not None and reference is not None:
        line = (f"best variant (fastest that keeps >= 99% of the torch fp32 student's MAP): {best.variant}, "
                f"{best.throughput:.1f} {unit}, {best.throughput / reference.throughput:.2f}x the torch fp32 "
                f"student, MAP {best.metrics['map']:.4f} ({best.metrics['map'] / reference.metrics['map'] - 1:+.2%})")
        if teacher is not None and teacher.throughput:
            line += f", {best.throughput / teacher.throughput:.1f}x the teacher's {unit}"
        lines.append(line)
    for r in results:
        if r.problem:
            lines.append(f"{r.variant} left out: {r.problem}")
    return lines


def save_report(results: Sequence[VariantResult], teacher: TeacherRow | None, output_dir: str | Path, title: str,
                unit: str, batch_size: int, notes: Sequence[str] = (), extra: dict | None = None,
                name: str = "export_results") -> dict[str, Path]:
    """Print the table; save <name>.json, <name>.md and <name>.png (MAP against p95 latency at batch 1)."""
    from ragdistill.core.jsonl import atomic_open, write_json
    from ragdistill.core.plots import labelled_scatter
    from ragdistill.core.report import to_markdown, to_text

    output_dir = Path(output_dir)
    headers, rows = table(results, teacher, unit, batch_size)
    notes = [*summary_lines(results, teacher, unit), *notes]
    print("\n" + to_text(headers, rows, title, notes=notes))
    paths = {"json": output_dir / f"{name}.json", "markdown": output_dir / f"{name}.md",
             "png": output_dir / f"{name}.png"}
    best = best_variant(results)
    write_json(paths["json"], {
        "title": title, "unit": unit, "batch_size": batch_size, "variants": [r.to_json() for r in results],
        "teacher": None if teacher is None else {"name": teacher.name, "metrics": teacher.metrics,
                                                 "throughput": teacher.throughput, "setup": teacher.setup},
        "best_variant": None if best is None else best.variant, "notes": notes,
        "table": {"headers": headers, "rows": rows}, **(extra or {})})
    with atomic_open(paths["markdown"]) as handle:
        handle.write(to_markdown(headers, rows, title, notes))
    points = [(r.latency["p95_ms"], r.metrics["map"], r.variant) for r in results if r.metrics and r.latency]
    lines = {f"teacher MAP ({Path(teacher.name).name})": teacher.metrics["map"]} if teacher and "map" in teacher.metrics else {}
    if points:
        labelled_scatter(points, paths["png"], xlabel="p95 latency at batch 1 (ms)", ylabel="MAP", title=title,
                         hlines=lines)
    else:
        del paths["png"]
    logger.info(f"saved {', '.join(str(p) for p in paths.values())}")
    return paths
