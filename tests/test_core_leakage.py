"""Stage 1 warns when test queries also appear in the training files, and says how many."""

from __future__ import annotations

import json
import logging

from ragdistill.core.leakage import leaked_test_queries
from tests.builders import stage_main


def _sample(query: str) -> str:
    return json.dumps({"query": query, "positive": ["p"], "negative": ["n"]})


def test_leaked_queries_are_counted_per_test_file(write_lines, caplog):
    train = write_lines("train.jsonl", [_sample("Who wrote Hamlet?"), _sample("how tall is everest")])
    other_train = write_lines("train2.jsonl.gz", [_sample("what is a quark")], gz=True)
    # case and spacing differ, still the same query
    leaky = write_lines("test.jsonl", [_sample("who  wrote hamlet?"), _sample("new question"),
                                       _sample("What is a quark"), "not json"])
    clean = write_lines("clean.jsonl", [_sample("another question")])
    with caplog.at_level(logging.WARNING, logger="ragdistill.core.leakage"):
        counts = leaked_test_queries([str(train), str(other_train)],
                                     [str(leaky), str(clean), str(train), str(leaky.parent / "missing.jsonl")])
    assert counts == {str(leaky): (2, 3), str(clean): (0, 1)}  # a training file listed as a test file is skipped
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert f"2 of the 3 queries of test file {leaky} also appear in the training files" in warnings[0]
    assert "missing.jsonl" in warnings[1] and "not found" in warnings[1]


def test_embedding_stage_1_warns(tmp_path, write_lines, tiny_models, caplog):
    train = write_lines("train.jsonl", [_sample("q1"), _sample("q2")])
    test = write_lines("test.jsonl", [_sample("q2"), _sample("q3")])
    with caplog.at_level(logging.WARNING, logger="ragdistill.core.leakage"):
        stage_main("Embedding-Distillation", "score")([
            "--teacher_model", str(tiny_models["qwen3_embedder"]), "--backend", "torch", "--teacher_dtype", "float32",
            "--train_files", str(train), "--test_files", str(test), "--num_negatives", "1",
            "--output_file", str(tmp_path / "rows.jsonl"), "--teacher_scores_dir", str(tmp_path / "cache")])
    assert (tmp_path / "rows.jsonl").exists()  # a warning, not a refusal
    assert f"1 of the 2 queries of test file {test} also appear in the training files" in caplog.text


def test_reranker_stage_1_warns(tmp_path, write_lines, tiny_models, caplog):
    train = write_lines("train.jsonl", [_sample("q1"), _sample("q2")])
    test = write_lines("test.jsonl", [_sample("q2"), _sample("q3")])
    with caplog.at_level(logging.WARNING, logger="ragdistill.core.leakage"):
        stage_main("Reranker-Distillation", "score")([
            "--teacher_model", str(tiny_models["qwen3_embedder"]), "--backend", "bi-encoder", "--teacher_dtype",
            "float32", "--train_files", str(train), "--test_files", str(test), "--output_dir", str(tmp_path / "scores")])
    assert (tmp_path / "scores" / "train.scores.jsonl").exists()  # a warning, not a refusal
    assert f"1 of the 2 queries of test file {test} also appear in the training files" in caplog.text
