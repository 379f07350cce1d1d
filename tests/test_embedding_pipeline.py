"""Embedding-Distillation end to end: run_all.sh (stage 1 -> 2 -> 3) with the tiny models, the environment
overriding the wrappers' variables, the sentence-transformers teacher backend. The label-free path: the training
file comes from a corpus and queries without labels (prepare_data.sh mines the candidates with BM25), the
out-of-domain file holds candidate lists; the in-domain test file is labelled (both tables)."""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess

import pytest

from ragdistill.core.jsonl import read_json
from ragdistill.core.mteb import write_candidate_lists
from ragdistill.core.resumable import require_complete
from tests.conftest import REPO, write_corpus_and_queries


def _subset(source, target, count):
    rows = [json.loads(line) for line in gzip.open(REPO / source, "rt")][:count]
    target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return target


@pytest.mark.slow
def test_run_all_with_tiny_models(tmp_path, tiny_models):
    """With a student of the teacher's family: a tiny Qwen3 embedder of its own seed, LoRA adapters, gradient
    checkpointing (the Qwen3-Embedding-8B -> 0.6B run of the README, in miniature)."""
    from tests.builders import build_qwen3

    output = tmp_path / "output"
    student = build_qwen3(tmp_path / "student", embedder=True, seed=5)
    folder = write_corpus_and_queries(REPO / "data/wikiqa/train.jsonl.gz", tmp_path / "docs", 16)
    mined = subprocess.run(["bash", str(REPO / "scripts/prepare_data.sh"), "--beir_dir", str(folder),
                            "--candidates_per_query", "8"], env={**os.environ, "OUTPUT_DIR": str(tmp_path / "data")},
                           capture_output=True, text=True, timeout=600)
    assert mined.returncode == 0, mined.stdout[-3000:] + mined.stderr[-3000:]
    env = {
        **os.environ,
        "TEACHER_MODEL": str(tiny_models["qwen3_embedder"]), "STUDENT_MODEL": str(student),
        "LORA_R": "4", "GRADIENT_CHECKPOINTING": "true", "INSTRUCTION": "Find the passage that answers the question",
        "BACKEND": "torch", "TEACHER_DTYPE": "float32", "TEACHER_MAX_LENGTH": "128",
        "TRAIN_FILES": str(tmp_path / "data/docs/queries-candidates.jsonl"),
        "TEST_FILES": str(_subset("data/wikiqa/test.jsonl.gz", tmp_path / "wikiqa-test.jsonl", 8)),
        "OUT_OF_DOMAIN_FILES": str(write_candidate_lists(REPO / "data/trecqa/test.jsonl.gz",
                                                         tmp_path / "trecqa-test.jsonl", 6)),
        "OUTPUT_DIR": str(output), "NUM_NEGATIVES": "4", "BATCH_SIZE": "4", "EPOCHS": "2", "LEARNING_RATE": "1e-3",
        "LOGGING_STEPS": "1", "BF16": "false", "MAX_SEQ_LENGTH": "128", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    }
    run = subprocess.run(["bash", str(REPO / "Embedding-Distillation" / "run_all.sh")], env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    # stage 1: complete rows from the teacher alone; the test files were scored once, and stage 3 read them from the
    # cache
    meta = require_complete(output / "training_rows.jsonl")
    assert meta["format"] == "ntuple" and meta["counts"]["queries"] == 16 and meta["labelled"] is False
    assert "the input has no labels" in run.stdout + run.stderr
    assert run.stdout.count("loading teacher") == 1
    assert "cached in" in run.stdout and run.stdout.count("teacher scores for") == 4

    # stage 2: the trained student with its card, curve and history
    model_dir = output / "model"
    assert (model_dir / "model.safetensors").exists() and (model_dir / "README.md").exists()
    assert (model_dir / "loss_curve.png").exists() and read_json(model_dir / "log_history.json")
    summary = read_json(model_dir / "training_summary.json")
    assert summary["prompts"] == {"query": meta["query_prompt"]} and "LoRA r=4" in summary["lora"]
    assert "label_weight" not in summary["loss"]  # the label term is off by itself: the teacher alone
    assert "training on the teacher alone (no label term)" in run.stdout + run.stderr

    # stage 3: tables printed and saved, scatter plots, the out-of-domain change spelled out
    results = read_json(output / "evaluation" / "results.json")
    # both students evaluated at the training length (the untrained tiny student's own is 512)
    assert results["student_max_seq_length"] == {"before": 128, "after": 128}
    # both students' queries carry the teacher's instruction prompt (the untrained one has a default of its own)
    assert "Find the passage that answers the question" in meta["query_prompt"]
    assert results["student_query_prompt"] == {"before": meta["query_prompt"], "after": meta["query_prompt"]}
    # the labelled file gets both tables, the unlabelled one the agreement table alone
    titles = [table["title"] for table in results["tables"]]
    assert len(titles) == 4 and titles[3] == "Encode throughput (texts/s)"
    assert titles[0].endswith("wikiqa-test (in-domain)")
    assert titles[1].endswith("wikiqa-test (in-domain), agreement with the teacher")
    assert titles[2].endswith("trecqa-test (out-of-domain), agreement with the teacher")
    labelled, *agreements = results["tables"][:3]
    assert set(labelled["before"]) == set(labelled["after"]) == set(labelled["teacher"]) == {"map", "mrr@10", "ndcg@10"}
    for table in agreements:
        assert set(table["before"]) == set(table["after"]) == {
            "ndcg@10 vs teacher", "spearman vs teacher", "kendall vs teacher"}
        assert table["teacher"] == pytest.approx(dict.fromkeys(table["before"], 1.0))
    assert results["tables"][3]["before"]["texts/s"] > 0 and results["tables"][3]["teacher"]["texts/s"] > 0
    assert (output / "evaluation" / "results.md").read_text().count("| map |") == 1
    assert len(list((output / "evaluation").glob("scatter_*.png"))) == 2
    assert re.search(r"out-of-domain \(no-forgetting check\), \S*trecqa-test: ndcg@10 vs teacher", run.stdout)
    assert "relative" in run.stdout
    assert "gap closed" in run.stdout
