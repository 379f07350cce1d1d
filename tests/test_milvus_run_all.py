"""Milvus-Optimization end to end: run_all.sh on a slice of the bundled WikiQA test set, with the tiny models as
student and teacher embedders and rerankers (the teacher reranker is the tiny Qwen3 yes/no LLM), on Milvus Lite."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragdistill.core.cli import run_main
from tests.conftest import REPO
from tests.test_milvus_index import load_stage, wikiqa_small  # noqa: F401  (fixture)

CHAINS = ["student", "student+student_reranker", "teacher", "teacher+teacher_reranker"]


@pytest.mark.slow
def test_run_all_end_to_end(tmp_path, tiny_models, wikiqa_small):  # noqa: F811
    out = tmp_path / "milvus"
    env = {**os.environ, "STUDENT_EMBEDDER": str(tiny_models["bert"]),
           "TEACHER_EMBEDDER": str(tiny_models["qwen3_embedder"]), "STUDENT_RERANKER": str(tiny_models["bert"]),
           "TEACHER_RERANKER": str(tiny_models["qwen3_reranker"]), "CORPUS": str(wikiqa_small),
           "OUTPUT_DIR": str(out), "DTYPE": "float32", "TOP_K": "20", "RERANK_TOP_K": "5",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(["bash", str(REPO / "Milvus-Optimization" / "run_all.sh")], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # the side-by-side table is printed, one row per chain, the teacher's full chain as reference
    table = result.stdout[result.stdout.index("Retrieval chains on Milvus"):]
    for chain in CHAINS:
        assert f"\n{chain} " in table
    assert "NDCG@10 vs ref" in table and "qwen3-reranker (top 5)" in table

    saved = json.loads((out / "retrieval_chains.json").read_text())
    assert [c["name"] for c in saved["chains"]] == CHAINS and saved["reference"] == "teacher+teacher_reranker"
    by_name = {c["name"]: c for c in saved["chains"]}
    for chain in saved["chains"]:
        assert all(0.0 <= value <= 1.0 for value in chain["metrics"].values())
        assert chain["details"]["queries"] == 12 and chain["details"]["missing_from_run"] == 0
        assert chain["latency"]["queries"] == 12 and chain["latency"]["total_p95_ms"] > 0
    # two collections, two encoders: dimensions and index sizes differ; rerankers do not change Recall@20's pool
    assert by_name["student"]["chain"]["dim"] == 64 and by_name["teacher"]["chain"]["dim"] == 128
    assert by_name["teacher"]["chain"]["index"]["vector_bytes"] == 2 * by_name["student"]["chain"]["index"]["vector_bytes"]
    assert by_name["student"]["chain"]["index"]["disk_bytes"] > 0
    for embedder in ("student", "teacher"):
        reranked = by_name[f"{embedder}+{embedder}_reranker"]
        assert reranked["metrics"]["recall@100"] == pytest.approx(by_name[embedder]["metrics"]["recall@100"])
        assert reranked["latency"]["rerank_p50_ms"] > 0 and by_name[embedder]["latency"]["rerank_p50_ms"] < 1
    assert (out / "retrieval_chains.md").read_text().startswith("### Retrieval chains on Milvus")
    assert (out / "retrieval_chains.png").stat().st_size > 1000
    assert (out / "student.build.json").exists() and (out / "teacher.build.json").exists()


def test_stage_scripts_help_and_bad_input(tmp_path, monkeypatch, capsys):
    for name in ("build_index", "search", "evaluation"):
        monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])
        with pytest.raises(SystemExit) as exit_info:
            load_stage(name).main()
        assert exit_info.value.code == 0 and "--corpus" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": ["p"], "negative": ["n"]}\n{"query": "q2", "positive": "p"}\n')
    monkeypatch.setattr(sys, "argv", ["build_index.py", "--corpus", str(bad), "--milvus_uri",
                                      str(tmp_path / "m.db")])
    with pytest.raises(SystemExit) as exit_info:
        run_main(load_stage("build_index").main)
    assert exit_info.value.code == 2
    assert "bad.jsonl:2: missing key: 'negative'" in capsys.readouterr().err
    assert not (tmp_path / "m.db").exists()  # nothing was created
    monkeypatch.setattr(sys, "argv", ["build_index.py", "--corpus", str(bad), "--index_type", "DISKANN",
                                      "--milvus_uri", str(tmp_path / "m.db")])
    with pytest.raises(SystemExit):
        run_main(load_stage("build_index").main)
    assert "needs a Milvus server" in capsys.readouterr().err
