"""Shared fixtures: the tiny real models (built once per machine, cached in the temp dir) and the bundled data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# vLLM engines run in the test's own process (and in each stage script's), not in engine-core and worker processes
# that import vLLM and torch again: a tiny engine starts in ~15 s instead of ~60 s here
# (docs/benchmarks/test-suite.md). Users keep vLLM's default; the stage scripts' __main__ guards are checked apart.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

# scripts/test.sh runs the suite on two pytest-xdist workers, one per core of the build machine: each worker's torch
# (and what it starts) then computes on one thread instead of two workers' threads contending for both cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _stage_logging_removed():
    """A stage run in this process (run_main) adds logging handlers bound to the test's captured streams: they go
    with the test, so that later tests never log to a closed stream."""
    yield
    from ragdistill.core.cli import remove_stage_logging

    remove_stage_logging()


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    from tests.builders import tiny_models as build

    return build()


@pytest.fixture(scope="session")
def embedding_rows_file(tmp_path_factory, tiny_models) -> Path:
    """Stage-1 ntuple rows (1 positive + 3 negatives) from 8 WikiQA dev queries, tiny Qwen3 teacher; its scores
    file beside them (scores.jsonl)."""
    import gzip
    import json

    from ragdistill.embedding.scoring import LazyTeacher, SoftLabelJob
    from ragdistill.embedding.teachers import TeacherArguments, load_teacher

    folder = tmp_path_factory.mktemp("stage1")
    samples = [json.loads(line) for line in gzip.open(REPO / "data/wikiqa/dev.jsonl.gz", "rt")][:8]
    source = folder / "train.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in samples))
    args = TeacherArguments(teacher_model=str(tiny_models["qwen3_embedder"]), backend="torch",
                            teacher_dtype="float32", teacher_max_length=96)
    teacher = LazyTeacher(args, lambda: load_teacher(args))
    SoftLabelJob(files=[str(source)], output=str(folder / "rows.jsonl"), teacher=teacher, num_negatives=3).run()
    SoftLabelJob(files=[str(source)], output=str(folder / "scores.jsonl"), teacher=teacher, fmt="scores").run()
    teacher.close()
    return folder / "rows.jsonl"


@pytest.fixture
def write_lines(tmp_path):
    """Write raw text lines (or bytes) to a file under tmp_path; returns its path."""

    def write(name: str, lines, gz: bool = False) -> Path:
        import gzip

        path = tmp_path / name
        data = lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode("utf-8")
        path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
        return path

    return write


def write_corpus_and_queries(source: Path, folder: Path, count: int) -> Path:
    """A folder without qrels (a corpus and queries, no labels) from the first `count` queries of a labelled
    reranking file: every passage a document ({"id", "text"} lines, corpus.jsonl), the queries ({"_id", "text"},
    queries.jsonl)."""
    from ragdistill.core.jsonl import write_jsonl
    from ragdistill.core.mteb import first_queries, iter_samples

    samples = first_queries(iter_samples(source), count)
    passages = list(dict.fromkeys(text for s in samples for text in s.candidates))
    folder.mkdir(parents=True)
    write_jsonl(folder / "corpus.jsonl", ({"id": f"d{i}", "text": text} for i, text in enumerate(passages)))
    write_jsonl(folder / "queries.jsonl", ({"_id": f"q{i}", "text": s.query} for i, s in enumerate(samples)))
    return folder
