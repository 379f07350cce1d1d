"""Retrieval chains side by side: quality from qrels, latency per query, and what the index costs.

Quality, per query then averaged over the judged queries (a judged query missing from a run scores 0):
- Recall@k: relevant documents in the top k / relevant documents (relevance > 0).
- NDCG@10: sum of rel_i / log2(i + 1) over the top 10, over the same for the ideal order (trec_eval's linear gain).
- MRR@10: 1 / rank of the first relevant document in the top 10, else 0.
A document whose id equals the query id is ignored (BEIR's rule for duplicate-question sets such as Quora).

Latency: percentiles (p50, p95) of the per-query `total_ms` and of its parts from the chain's latency file.
Index: vectors x dim x 4 bytes (float32), and the Milvus Lite folder size when the index was local.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.report import format_number, to_markdown, to_text

logger = logging.getLogger(__name__)

METRIC_NAMES = ("recall@10", "recall@100", "ndcg@10", "mrr@10")
LATENCY_PARTS = ("total", "retrieve", "embed", "search", "rerank")


def query_metrics(ranked: Sequence[str], judged: dict[str, int]) -> dict[str, float]:
    """Recall@10, Recall@100, NDCG@10 and MRR@10 of one ranked list of document ids against its judgements."""
    relevant = {doc for doc, rel in judged.items() if rel > 0}
    if not relevant:
        raise ValueError("a query without relevant documents has no recall")
    gains = [max(judged.get(doc, 0), 0) for doc in ranked]
    dcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains[:10]))
    ideal = sorted((rel for rel in judged.values() if rel > 0), reverse=True)[:10]
    idcg = sum(gain / math.log2(rank + 2) for rank, gain in enumerate(ideal))
    first = next((rank for rank, doc in enumerate(ranked[:10]) if doc in relevant), None)
    return {
        "recall@10": len(relevant.intersection(ranked[:10])) / len(relevant),
        "recall@100": len(relevant.intersection(ranked[:100])) / len(relevant),
        "ndcg@10": dcg / idcg,
        "mrr@10": 0.0 if first is None else 1.0 / (first + 1),
    }


def evaluate_run(run: dict[str, list[tuple[str, float]]], qrels: dict[str, dict[str, int]],
                 ignore_identical_ids: bool = True) -> tuple[dict[str, float], dict]:
    """Mean metrics over the queries with a relevant judgement; details count missing and unjudged queries."""
    judged_queries = [qid for qid, judged in qrels.items() if any(rel > 0 for rel in judged.values())]
    if not judged_queries:
        raise InputError(None, "the qrels judge no document relevant (relevance > 0)")
    per_query = []
    missing = 0
    for qid in judged_queries:
        ranked = [doc for doc, _ in run.get(qid, []) if not (ignore_identical_ids and doc == qid)]
        missing += qid not in run
        per_query.append(query_metrics(ranked, qrels[qid]))
    means = {name: float(np.mean([m[name] for m in per_query])) for name in METRIC_NAMES}
    details = {"queries": len(judged_queries), "missing_from_run": missing,
               "run_queries_without_qrels": len(set(run) - set(judged_queries)),
               "depth": max((len(hits) for hits in run.values()), default=0)}
    return means, details


def latency_summary(rows: Sequence[dict]) -> dict[str, float]:
    """p50 / p95 / mean of each timed part (ms) over the queries."""
    if not rows:
        raise InputError(None, "no latency rows")
    summary = {"queries": len(rows)}
    for part in LATENCY_PARTS:
        values = [float(row[f"{part}_ms"]) for row in rows if isinstance(row.get(f"{part}_ms"), int | float)]
        if values:
            summary[f"{part}_p50_ms"] = float(np.percentile(values, 50))
            summary[f"{part}_p95_ms"] = float(np.percentile(values, 95))
            summary[f"{part}_mean_ms"] = float(np.mean(values))
    return summary


@dataclass
class ChainResult:
    name: str
    run: str
    metrics: dict[str, float]
    details: dict
    latency: dict[str, float]
    chain: dict = field(default_factory=dict)

    @property
    def index(self) -> dict:
        return self.chain.get("index") or {}

    def to_json(self) -> dict:
        return {"name": self.name, "run": self.run, "metrics": self.metrics, "details": self.details,
                "latency": self.latency, "chain": self.chain}


def parse_chains(spec: str | Sequence[str]) -> list[tuple[str, str]]:
    """'student=runs/student.trec,teacher=runs/teacher.trec' -> [(name, path)]; a bare path is named by its stem."""
    from ragdistill.core.cli import split_paths
    from ragdistill.retrieval.chain import run_stem

    chains = []
    for item in split_paths(spec if isinstance(spec, list) else [spec]):
        name, sep, path = item.partition("=")
        if not sep:
            name, path = run_stem(item).name, item
        if not name.strip() or not path.strip():
            raise InputError(None, f"--chains entry '{item}' must be name=path/to/run.trec")
        chains.append((name.strip(), path.strip()))
    names = [name for name, _ in chains]
    if len(set(names)) != len(names):
        raise InputError(None, f"--chains names must be unique, got {', '.join(names)}")
    if not chains:
        raise InputError(None, "--chains names no run")
    return chains


def evaluate_chain(name: str, run_path: str | os.PathLike, qrels: dict[str, dict[str, int]],
                   latency_file: str | os.PathLike | None = None) -> ChainResult:
    """Metrics of one chain from its run, its latency lines and its metadata (written by search.py)."""
    from ragdistill.core.jsonl import read_json
    from ragdistill.core.resumable import is_complete, meta_path, parts_dir
    from ragdistill.retrieval.chain import latency_path, read_latencies, read_trec_run

    run_path = Path(run_path)
    chain = {}
    if meta_path(run_path).exists():
        if not is_complete(run_path):
            raise InputError(run_path, "incomplete: search.py has not finished it; re-run it with the same "
                                       "arguments to resume")
        chain = read_json(meta_path(run_path))
    elif parts_dir(run_path).exists():
        raise InputError(run_path, "incomplete: search.py stopped before finishing; re-run it to resume")
    run = read_trec_run(run_path)
    metrics, details = evaluate_run(run, qrels)
    latency_file = Path(latency_file) if latency_file else latency_path(run_path)
    latency = latency_summary(read_latencies(latency_file)) if latency_file.exists() else {}
    if not latency:
        logger.info(f"no latency file for chain '{name}' ({latency_file}); its latency columns stay empty")
    return ChainResult(name=name, run=str(run_path), metrics=metrics, details=details, latency=latency, chain=chain)


# ----------------------------------------------------------------------------------------------------------------
# Table, files, picture
# ----------------------------------------------------------------------------------------------------------------
def _short_model(path: str | None) -> str:
    """The last part of a model path or id; with its folder when that part is generic (output/embedding/model)."""
    if not path:
        return "-"
    parts = Path(path.rstrip("/")).parts
    if len(parts) > 1 and (parts[-1] in ("model", "final", "best", "student", "teacher")
                           or parts[-1].startswith("checkpoint-")):
        return "/".join(parts[-2:])
    return parts[-1] if parts else path


def _backend_label(backend: str | None) -> str:
    """' [onnx int8]' for a model the chain ran from an export (its file named), '' for PyTorch."""
    if not backend or ":" not in backend:
        return ""
    name, _, file = backend.partition(":")
    precision = "int8" if "qint8" in Path(file).name else "fp32"
    return f" [{name} {precision}]"


def _mb(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


TEXT_COLUMNS = 4  # chain, embedder, dim, reranker
HEADERS = ["chain", "embedder", "dim", "reranker", "Recall@10", "Recall@100", "NDCG@10", "MRR@10", "p50 ms",
           "p95 ms", "vectors", "vector MB", "disk MB"]


def table_rows(results: Sequence[ChainResult], reference: str | None = None) -> tuple[list[str], list[list[str]]]:
    """Header and cells; with a reference chain, also NDCG@10 relative to it and its p95 over each chain's."""
    ref = next((r for r in results if r.name == reference), None)
    if reference and ref is None:
        raise InputError(None, f"--reference '{reference}' is not one of the chains ({', '.join(r.name for r in results)})")
    headers = HEADERS + (["NDCG@10 vs ref", "p95 speed-up"] if ref else [])
    rows = []
    for result in results:
        chain, index, latency = result.chain, result.index, result.latency
        rerank = _short_model(chain.get("reranker")) if chain.get("reranker") else "-"
        if chain.get("reranker") and chain.get("rerank_top_k"):
            rerank += f" (top {chain['rerank_top_k']})"
        rerank += _backend_label(chain.get("reranker_backend")) if chain.get("reranker") else ""
        embedder = _short_model(chain.get("embedder")) + _backend_label(chain.get("query_encoder_backend"))
        row = [result.name, embedder, str(chain.get("dim", "-")), rerank,
               *(format_number(result.metrics[name]) for name in METRIC_NAMES),
               format_number(latency.get("total_p50_ms"), 1), format_number(latency.get("total_p95_ms"), 1),
               f"{index['vectors']:,}" if index.get("vectors") is not None else "-",
               _mb(index.get("vector_bytes")), _mb(index.get("disk_bytes"))]
        if ref:
            ratio = result.metrics["ndcg@10"] / ref.metrics["ndcg@10"] if ref.metrics["ndcg@10"] else None
            mine, theirs = latency.get("total_p95_ms"), ref.latency.get("total_p95_ms")
            row += ["-" if ratio is None else f"{ratio:.1%}",
                    f"{theirs / mine:.2f}x" if mine and theirs else "-"]
        rows.append(row)
    return headers, rows


def plot_quality_latency(results: Sequence[ChainResult], path: str | os.PathLike,
                         title: str = "Retrieval chains: quality against latency") -> Path | None:
    """NDCG@10 against p95 query latency, one labelled point per chain (matplotlib, Agg backend)."""
    from ragdistill.core.plots import labelled_scatter

    points = [(r.latency.get("total_p95_ms"), r.metrics["ndcg@10"], r.name) for r in results]
    points = [p for p in points if p[0] is not None]
    if not points:
        return None
    return labelled_scatter(points, path, xlabel="p95 latency per query (ms): embed + search + rerank",
                            ylabel="NDCG@10", title=title)


def save_results(results: Sequence[ChainResult], output_dir: str | os.PathLike, title: str,
                 reference: str | None = None, extra: dict | None = None, name: str = "retrieval_chains") -> dict:
    """Print the table; save <name>.json, <name>.md and <name>.png in output_dir; return their paths."""
    from ragdistill.core.jsonl import atomic_open, write_json

    output_dir = Path(output_dir)
    headers, rows = table_rows(results, reference)
    notes = ["Latency is per query, one query at a time: query embedding + Milvus search + reranking.",
             "vector MB = vectors x dim x 4 bytes (float32); disk MB = the Milvus Lite collection folder "
             "(vectors, ids, texts, index)."]
    shallow = [r.name for r in results if r.details.get("depth", 100) < 100]
    if shallow:
        notes.append(f"Runs with fewer than 100 hits per query ({', '.join(shallow)}): Recall@100 counts what they hold.")
    missing = {r.name: r.details["missing_from_run"] for r in results if r.details.get("missing_from_run")}
    if missing:
        notes.append("Judged queries missing from a run score 0: " + ", ".join(f"{k} {v}" for k, v in missing.items()))
    print("\n" + to_text(headers, rows, title, TEXT_COLUMNS, notes))
    paths = {"json": output_dir / f"{name}.json", "markdown": output_dir / f"{name}.md",
             "png": output_dir / f"{name}.png"}
    write_json(paths["json"], {"title": title, "reference": reference, "chains": [r.to_json() for r in results],
                               "table": {"headers": headers, "rows": rows}, "notes": notes, **(extra or {})})
    with atomic_open(paths["markdown"]) as handle:
        handle.write(to_markdown(headers, rows, title, notes, TEXT_COLUMNS))
    if plot_quality_latency(results, paths["png"]) is None:
        del paths["png"]
    logger.info(f"saved {', '.join(str(p) for p in paths.values())}")
    return paths
