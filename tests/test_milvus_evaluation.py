"""Milvus-Optimization stage 3: retrieval metrics on hand-made qrels and runs with known values, latency
percentiles, and the side-by-side table saved as JSON, Markdown and PNG."""

from __future__ import annotations

import json
import math

import pytest

from ragdistill.core.errors import InputError
from ragdistill.retrieval.evaluation import evaluate_run, latency_summary, parse_chains, query_metrics
from tests.test_milvus_index import run_stage

QRELS = {"q1": {"d1": 1, "d2": 2, "d7": 0}, "q2": {"d5": 1}, "q3": {"d9": 1}, "q4": {"d8": 0}}
RUN = {
    "q1": [("d3", 0.9), ("d1", 0.8), ("d4", 0.7), ("d2", 0.6)],  # relevant at ranks 2 (rel 1) and 4 (rel 2)
    "q2": [("q2", 1.0)] + [(f"x{i}", 0.5 - i / 100) for i in range(10)] + [("d5", 0.1)],  # own id ignored; rank 11
    # q3 is judged but missing from the run; q4 has no relevant document and is not counted
}


def test_metrics_known_values():
    q1 = query_metrics([doc for doc, _ in RUN["q1"]], QRELS["q1"])
    ndcg_q1 = (1 / math.log2(3) + 2 / math.log2(5)) / (2 / math.log2(2) + 1 / math.log2(3))
    assert q1 == pytest.approx({"recall@10": 1.0, "recall@100": 1.0, "ndcg@10": ndcg_q1, "mrr@10": 0.5})
    assert ndcg_q1 == pytest.approx(0.567207, abs=1e-6)

    means, details = evaluate_run(RUN, QRELS)
    assert means == pytest.approx({"recall@10": 1 / 3, "recall@100": 2 / 3, "ndcg@10": ndcg_q1 / 3,
                                   "mrr@10": 0.5 / 3})
    assert details == {"queries": 3, "missing_from_run": 1, "run_queries_without_qrels": 0, "depth": 12}
    # without BEIR's identical-id rule the query's own id takes a slot: d5 drops to rank 12, still in the top 100
    assert evaluate_run(RUN, QRELS, ignore_identical_ids=False)[0]["recall@100"] == pytest.approx(2 / 3)

    # a perfect run scores 1 everywhere; graded relevance puts the rel-2 document first in the ideal order
    perfect = {"q1": [("d2", 2.0), ("d1", 1.0)], "q2": [("d5", 1.0)], "q3": [("d9", 1.0)]}
    assert evaluate_run(perfect, QRELS)[0] == pytest.approx(dict.fromkeys(means, 1.0))
    swapped = query_metrics(["d1", "d2"], QRELS["q1"])["ndcg@10"]
    assert swapped == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    with pytest.raises(InputError, match="judge no document relevant"):
        evaluate_run(RUN, {"q4": {"d8": 0}})


def test_latency_percentiles():
    rows = [{"total_ms": float(ms), "retrieve_ms": ms / 2, "rerank_ms": ms / 2} for ms in range(1, 101)]
    summary = latency_summary(rows)
    assert summary["total_p50_ms"] == pytest.approx(50.5) and summary["total_p95_ms"] == pytest.approx(95.05)
    assert summary["retrieve_p95_ms"] == pytest.approx(47.525) and summary["queries"] == 100
    assert "embed_p50_ms" not in summary  # parts a file lacks are left out


def _write_chain(folder, name, run, total_ms, meta=None):
    run_path = folder / f"{name}.trec"
    run_path.write_text("".join(f"{qid} Q0 {doc} {rank} {score} {name}\n" for qid, hits in run.items()
                                for rank, (doc, score) in enumerate(hits, start=1)))
    (folder / f"{name}.latency.jsonl").write_text("".join(json.dumps({"qid": f"q{i}", "total_ms": ms}) + "\n"
                                                         for i, ms in enumerate(total_ms)))
    if meta is not None:
        (folder / f"{name}.trec.meta.json").write_text(json.dumps({**meta, "complete": True}))
    return run_path


def test_evaluation_table_files(tmp_path, monkeypatch, capsys):
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{r}\n" for q, docs in QRELS.items()
                                                                for d, r in docs.items()))
    perfect = {"q1": [("d2", 2.0), ("d1", 1.0)], "q2": [("d5", 1.0)], "q3": [("d9", 1.0)]}
    student = _write_chain(tmp_path, "student", RUN, [10, 20, 30], {
        "embedder": "/models/student-embedder", "dim": 256, "reranker": None,
        "index": {"vectors": 1000, "dim": 256, "vector_bytes": 1_024_000, "disk_bytes": 3_000_000}})
    teacher = _write_chain(tmp_path, "teacher", perfect, [100, 200, 300], {
        "embedder": "/models/teacher-embedder", "dim": 1024, "reranker": "/models/teacher-reranker",
        "rerank_top_k": 50, "index": {"vectors": 1000, "dim": 1024, "vector_bytes": 4_096_000, "disk_bytes": None}})
    out = tmp_path / "eval"
    run_stage("evaluation", ["--qrels", qrels, "--chains", f"student={student},teacher+rr={teacher}",
                             "--reference", "teacher+rr", "--output_dir", out, "--title", "Test chains"], monkeypatch)
    printed = capsys.readouterr().out
    assert "Test chains" in printed and "student-embedder" in printed and "teacher-reranker (top 50)" in printed

    saved = json.loads((out / "retrieval_chains.json").read_text())
    assert [c["name"] for c in saved["chains"]] == ["student", "teacher+rr"]
    assert saved["chains"][0]["metrics"]["mrr@10"] == pytest.approx(0.5 / 3)
    assert saved["chains"][1]["metrics"]["ndcg@10"] == pytest.approx(1.0)
    assert saved["chains"][0]["latency"]["total_p50_ms"] == pytest.approx(20.0)
    headers, rows = saved["table"]["headers"], saved["table"]["rows"]
    row = dict(zip(headers, rows[0]))
    assert row["NDCG@10"] == f"{(1 / math.log2(3) + 2 / math.log2(5)) / (2 + 1 / math.log2(3)) / 3:.4f}"
    assert (row["dim"], row["vectors"], row["vector MB"], row["disk MB"]) == ("256", "1,000", "1.02", "3.00")
    assert row["p95 speed-up"] == f"{290 / 29:.2f}x"  # p95 of 100/200/300 over p95 of 10/20/30
    assert row["NDCG@10 vs ref"] == f"{saved['chains'][0]['metrics']['ndcg@10']:.1%}"
    assert dict(zip(headers, rows[1]))["disk MB"] == "-"
    markdown = (out / "retrieval_chains.md").read_text()
    assert markdown.startswith("### Test chains") and "| student | student-embedder | 256 | - |" in markdown
    assert (out / "retrieval_chains.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluation_refuses_bad_input(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="names must be unique"):
        parse_chains("a=x.trec,a=y.trec")
    assert parse_chains("runs/student.trec") == [("student", "runs/student.trec")]
    qrels = tmp_path / "qrels.tsv"
    qrels.write_text("q1\td1\t1\n")
    run = _write_chain(tmp_path, "half", {"q1": [("d1", 1.0)]}, [5.0])
    (tmp_path / "half.trec.parts").mkdir()  # search.py stopped before finishing
    with pytest.raises(InputError, match="incomplete: search.py stopped before finishing"):
        run_stage("evaluation", ["--qrels", qrels, "--chains", run, "--output_dir", tmp_path], monkeypatch)
    with pytest.raises(InputError, match="--reference 'teacher' is not one of the chains"):
        run_stage("evaluation", ["--qrels", qrels, "--chains", f"x={_write_chain(tmp_path, 'x', {'q1': [('d1', 1.0)]}, [1])}",
                                 "--reference", "teacher", "--output_dir", tmp_path], monkeypatch)
