"""The whole chain as users run it: `bash Reranker-Distillation/run_all.sh` with the tiny teacher and student
(transformers backend), environment overrides only, trained on candidate lists without labels (the label-free path)
and evaluated on a labelled test file (both tables), then on the same test file without labels (agreement alone);
every stage script answers --help."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.mteb import write_candidate_lists
from ragdistill.core.resumable import is_complete
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
MODULE = REPO / "Reranker-Distillation"


@pytest.mark.slow
def test_run_all_end_to_end(tiny_models, tmp_path):
    """With a student of the teacher's family: a tiny Qwen3 reranker of its own seed, LoRA adapters, gradient
    checkpointing (the Qwen3-Reranker-8B -> 0.6B run of the README, in miniature)."""
    from tests.builders import build_qwen3

    output = tmp_path / "out"
    student = build_qwen3(tmp_path / "student", seed=7)
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "TEACHER_MODEL": str(tiny_models["qwen3_reranker"]), "STUDENT_MODEL": str(student),
        "LORA_R": "4", "GRADIENT_CHECKPOINTING": "true",
        "TRAIN_FILES": str(write_candidate_lists(REPO / "data/wikiqa/train.jsonl.gz", tmp_path / "train.jsonl", 4)),
        "TEST_FILES": str(REPO / "data/wikiqa/test.jsonl.gz"),
        "OUTPUT_DIR": str(output), "BACKEND": "torch", "TEACHER_DTYPE": "float32", "MAX_QUERIES": "4",
        "BATCH_SIZE": "4", "MAX_STEPS": "2", "LOGGING_STEPS": "1", "LEARNING_RATE": "5e-5",
    }
    result = subprocess.run(["bash", str(MODULE / "run_all.sh")], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    # Stage outputs where the wrappers put them.
    assert is_complete(output / "teacher_scores/train.scores.jsonl")
    assert is_complete(output / "teacher_scores/test.scores.jsonl")
    assert is_complete(output / "training_rows.jsonl")
    assert (output / "model/model.safetensors").exists() and (output / "model/loss_curve.png").exists()
    assert not (output / "model/adapter_config.json").exists()  # the LoRA adapters were merged
    card = (output / "model/README.md").read_text()
    assert "Instruction: Given a web search query" in card and "LoRA r=4" in card
    # The printed table, and the same numbers saved.
    assert "metric" in result.stdout and "gap closed" in result.stdout and "NDCG@10" in result.stdout
    assert "has no labels: the rows carry the teacher's judgement alone" in result.stdout + result.stderr
    saved = json.loads((output / "evaluation/results.json").read_text())
    assert_tables(saved["tables"], {"MAP", "MRR@10", "NDCG@10", "pairs/s"})
    assert saved["num_queries"] == 4 and saved["labelled"] is True
    assert (output / "evaluation/results.md").read_text().count("|") > 20
    assert (output / "evaluation/score_scatter.png").exists()

    # The same test queries without labels: agreement with the teacher alone (its stage-1 scores are of the same
    # pairs), and a clear error without them.
    unlabelled = write_candidate_lists(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "test.jsonl", 4)
    argv = ["--test_files", str(unlabelled), "--student_model", str(student), "--trained_model",
            str(output / "model"), "--max_queries", "4", "--student_dtype", "float32", "--speed_pairs", "8"]
    stage_main("evaluation")([*argv, "--teacher_scores", str(output / "teacher_scores/test.scores.jsonl"),
                              "--output_dir", str(tmp_path / "label-free")])
    saved = json.loads((tmp_path / "label-free/results.json").read_text())
    assert_tables(saved["tables"], {"pairs/s"}) and saved["labelled"] is False
    with pytest.raises(InputError, match=r"test\.jsonl: has no labels, so the students are measured against"):
        stage_main("evaluation")([*argv, "--teacher_scores", "", "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused").exists()


def assert_tables(tables: list[dict], first_rows: set[str]) -> bool:
    """The first table has `first_rows`, finite before / after / teacher; the second is the agreement table."""
    rows = {row["metric"]: row for row in tables[0]["rows"]}
    assert set(rows) == first_rows
    for row in rows.values():
        for column in ("before", "after", "teacher"):
            assert isinstance(row[column], float) and math.isfinite(row[column])
    agreement = tables[1]
    assert agreement["title"].endswith("agreement with the teacher")
    assert set(agreement["before"]) == {"ndcg@10 vs teacher", "spearman vs teacher", "kendall vs teacher"}
    assert agreement["teacher"] == pytest.approx(dict.fromkeys(agreement["before"], 1.0))
    assert all(-1.0 <= value <= 1.0 for value in [*agreement["before"].values(), *agreement["after"].values()])
    return True


def stage_main(name: str):
    """main(argv) of a Reranker-Distillation stage script, run in this process."""
    return script_main("Reranker-Distillation", name)


@pytest.mark.parametrize("script", ["score", "rows", "train", "evaluation", "export"])
def test_every_stage_has_help(script, capsys):
    with pytest.raises(SystemExit) as exit_info:
        stage_main(script)(["--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
