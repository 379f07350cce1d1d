"""Query-Expansion-RL's stages end to end on slices of the bundled WikiQA (real data) with the tiny BERT as the
embedder: the term policy trained and evaluated with labels; the label-free route from a corpus and queries without
qrels, graded by a teacher; a trained rewriter in front of the Milvus chain."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from ragdistill.core.jsonl import read_json
from ragdistill.data.bm25 import BM25
from ragdistill.expansion.reward import ndcg_at_k
from tests.builders import stage_main
from tests.conftest import REPO, write_corpus_and_queries


@pytest.fixture(scope="module")
def wikiqa_slices(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wikiqa")
    for split, count in (("train", 60), ("dev", 20), ("test", 30)):
        lines = gzip.open(REPO / f"data/wikiqa/{split}.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:count]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained_term_policy(tmp_path_factory, wikiqa_slices, tiny_models):
    out = tmp_path_factory.mktemp("qe")
    d = wikiqa_slices
    stage_main("Query-Expansion-RL", "train")([
        "--corpus", str(d / "train.jsonl"), "--distractor_files", f"{d / 'dev.jsonl'},{d / 'test.jsonl'}",
        "--embedder", str(tiny_models["bert"]), "--steps", "4", "--queries_per_step", "4", "--group_size", "4",
        "--output_dir", str(out / "rewriter"), "--cache_dir", str(out / "cache")])
    return out


def test_term_policy_trains_and_every_method_is_measured(trained_term_policy, wikiqa_slices, tiny_models):
    out, d = trained_term_policy, wikiqa_slices
    record = read_json(out / "rewriter/rewriter.json")
    assert record["kind"] == "term" and record["grading"] == "labels" and record["feedback_weights"] == "dense"
    training = read_json(out / "rewriter/training.json")
    assert len(training["steps"]) == 4 and all(0 <= s["reward"] <= 1 for s in training["steps"])
    assert list(out.glob("cache/corpus-vectors-*.npy"))

    stage_main("Query-Expansion-RL", "evaluation")([
        "--corpus", str(d / "test.jsonl"), "--distractor_files", f"{d / 'train.jsonl'},{d / 'dev.jsonl'}",
        "--embedder", str(tiny_models["bert"]), "--rewriter", str(out / "rewriter"),
        "--output_dir", str(out / "eval"), "--cache_dir", str(out / "cache")])
    results = read_json(out / "eval/query_expansion.json")["results"]
    assert [(r["first_stage"], r["method"]) for r in results] == [
        (stage, method) for stage in ("bm25", "dense") for method in (
            "original query", "RM3 (10 terms, 0.5)", "relevance model, dense feedback, all 20 terms",
            "term policy, untrained", "term policy, trained")]
    assert all(0 <= r[m] <= 1 for r in results for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
    assert (out / "eval/query_expansion.md").read_text().count("first stage") == 2
    # the original query's BM25 row, by hand: the pooled corpus, BM25, NDCG@10 of each labelled test question
    rows = [json.loads(line) for split in ("test", "train", "dev") for line in (d / f"{split}.jsonl").open()]
    passages = list(dict.fromkeys(p for r in rows for p in r["positive"] + r["negative"]))
    tested = [json.loads(line) for line in (d / "test.jsonl").open()]
    tested = list({r["query"]: r for r in tested if r["positive"]}.values())
    hits = BM25(passages).search([r["query"] for r in tested], 10)
    by_hand = np.mean([ndcg_at_k([passages[i] for i, _ in h], {p: 1.0 for p in r["positive"]})
                       for h, r in zip(hits, tested)])
    assert results[0]["ndcg@10"] == pytest.approx(by_hand, abs=1e-4)


def test_label_free_route_reads_no_label(tmp_path, tiny_models):
    """A corpus and queries without qrels: the teacher (the tiny Qwen3 embedder as a bi-encoder) grades both stages; the files
    carry no label, so none can be read."""
    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 12)
    teacher = ["--teacher_model", str(tiny_models["qwen3_embedder"]), "--backend", "bi-encoder"]
    stage_main("Query-Expansion-RL", "train")([
        "--corpus", str(folder), "--steps", "3", "--queries_per_step", "4", "--group_size", "4",
        "--output_dir", str(tmp_path / "rewriter"), *teacher])
    assert read_json(tmp_path / "rewriter/rewriter.json")["grading"] == "teacher"
    assert read_json(tmp_path / "rewriter/rewriter.json")["feedback_weights"] == "bm25"  # no embedder given
    stage_main("Query-Expansion-RL", "evaluation")([
        "--corpus", str(folder), "--rewriter", str(tmp_path / "rewriter"), "--output_dir", str(tmp_path / "eval"),
        *teacher])
    results = read_json(tmp_path / "eval/query_expansion.json")["results"]
    assert {r["grading"] for r in results} == {"teacher"} and len(results) == 5
    assert all(set(r) >= {"ndcg@10"} and "recall@10" not in r and 0 <= r["ndcg@10"] <= 1 for r in results)

    from ragdistill.core.errors import InputError

    with pytest.raises(InputError, match="no query has a label or a source document: give --teacher_model"):
        stage_main("Query-Expansion-RL", "evaluation")(["--corpus", str(folder), "--output_dir", str(tmp_path / "x")])


def chain_runs(corpus: str, rewriter, embedder, folder, monkeypatch, *search_args) -> dict:
    """The corpus indexed in Milvus Lite with `embedder`, then search.py's TREC runs without and with `--rewriter`:
    {"plain": path, "rewritten": path}."""
    from tests.test_milvus_index import run_stage

    uri = str(folder / "milvus.db")
    run_stage("build_index", ["--corpus", corpus, "--embedder", embedder, "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "docs", "--index_type", "FLAT"], monkeypatch)
    runs = {}
    for name, extra in (("plain", []), ("rewritten", ["--rewriter", rewriter])):
        runs[name] = folder / f"{name}.trec"
        run_stage("search", ["--corpus", corpus, "--milvus_uri", uri, "--collection", "docs", *search_args,
                             "--output_run", runs[name], "--warmup", 0, *extra], monkeypatch)
    return runs


def test_a_trained_rewriter_in_front_of_the_milvus_chain(trained_term_policy, wikiqa_slices, tiny_models, tmp_path,
                                                         monkeypatch):
    """search.py --rewriter: every query rewritten (from the top hits of the query as typed) before it is embedded,
    timed in the latency lines, named in the run's metadata."""
    from ragdistill.retrieval.chain import latency_path, read_latencies, read_trec_run

    runs = chain_runs(str(wikiqa_slices / "test.jsonl"), trained_term_policy / "rewriter", tiny_models["bert"],
                      tmp_path, monkeypatch, "--top_k", 10)
    latencies = read_latencies(latency_path(runs["rewritten"]))
    assert all(row["rewrite_ms"] > 0 and row["total_ms"] >= row["retrieve_ms"] >= row["rewrite_ms"]
               for row in latencies)
    assert all(row["rewrite_ms"] < 1 for row in read_latencies(latency_path(runs["plain"])))
    meta = json.loads((tmp_path / "rewritten.trec.meta.json").read_text())
    assert meta["rewriter"] == str(trained_term_policy / "rewriter")
    assert set(read_trec_run(runs["rewritten"])) == set(read_trec_run(runs["plain"]))


def test_bad_input_is_refused_before_any_work(tmp_path, tiny_models):
    """No labels and no teacher: refused before the corpus is embedded; a folder without rewriter.json is no
    rewriter; labels asked for where there are none, and an empty queries file: refused, naming the input."""
    from ragdistill.core.errors import InputError
    from ragdistill.expansion.rewriters import load_rewriter

    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 4)
    with pytest.raises(InputError, match="label-free grading needs --teacher_model"):
        stage_main("Query-Expansion-RL", "train")(["--corpus", str(folder), "--embedder", str(tiny_models["bert"]),
                                                  "--output_dir", str(tmp_path / "out")])
    assert not (tmp_path / "out/cache").exists()  # nothing was embedded
    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="not a rewriter folder"):
        load_rewriter(tmp_path / "out")
    with pytest.raises(InputError, match="no query has a relevant document"):
        stage_main("Query-Expansion-RL", "train")(["--corpus", str(folder), "--grading", "labels",
                                                  "--output_dir", str(tmp_path / "out")])
    (folder / "queries.jsonl").write_text("")
    with pytest.raises(InputError, match="queries.jsonl"):
        stage_main("Query-Expansion-RL", "evaluation")(["--corpus", str(folder), "--output_dir", str(tmp_path / "e")])


def test_the_rewriter_reads_its_own_embedder_and_caches_follow_the_model(trained_term_policy, wikiqa_slices,
                                                                        tiny_models, tmp_path):
    """Evaluated without --embedder, a term policy trained with one still reads it (BM25 table only); a model
    retrained into the same folder is another model to the corpus-vector cache."""
    import os
    import shutil

    from ragdistill.expansion.environment import model_signature

    d = wikiqa_slices
    stage_main("Query-Expansion-RL", "evaluation")([
        "--corpus", str(d / "test.jsonl"), "--distractor_files", str(d / "train.jsonl"),
        "--rewriter", str(trained_term_policy / "rewriter"), "--output_dir", str(tmp_path / "eval")])
    results = read_json(tmp_path / "eval/query_expansion.json")["results"]
    assert {r["first_stage"] for r in results} == {"bm25"} and len(results) == 5
    model = shutil.copytree(tiny_models["bert"], tmp_path / "model")
    before = model_signature(str(model))
    os.utime(model / "config.json", ns=(1, 1))
    assert model_signature(str(model)) != before and model_signature("org/name") == "org/name"


def test_an_llm_step_needs_a_full_step_of_queries(tmp_path):
    from ragdistill.core.errors import InputError
    from ragdistill.expansion.training import PolicyArguments, train_llm_rewriter

    with pytest.raises(InputError, match="fewer than --queries_per_step 16"):
        train_llm_rewriter(None, None, {"q1": "a question"}, None, PolicyArguments(policy="llm"))


def test_round_trip_route_from_a_corpus_alone(tmp_path, monkeypatch):
    """A corpus alone: pseudo-queries cut from its documents (prepare_data.py --pseudo_queries crop) train and grade
    the rewriter by the round trip (each query's own source document), with no teacher and no label."""
    from tests.test_prepare_data import run_script

    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 10)
    (folder / "queries.jsonl").unlink()
    run_script(monkeypatch, "--beir_dir", str(folder), "--pseudo_queries", "crop", "--max_documents", "24",
               "--candidates_per_query", "8", "--output_dir", str(tmp_path / "out"))
    made = str(tmp_path / "out/docs/pseudo-queries-candidates.jsonl")
    stage_main("Query-Expansion-RL", "train")(["--corpus", made, "--steps", "3", "--queries_per_step", "4",
                                               "--group_size", "4", "--output_dir", str(tmp_path / "rewriter")])
    assert read_json(tmp_path / "rewriter/rewriter.json")["grading"] == "round_trip"
    stage_main("Query-Expansion-RL", "evaluation")(["--corpus", made, "--rewriter", str(tmp_path / "rewriter"),
                                                    "--output_dir", str(tmp_path / "eval")])
    results = read_json(tmp_path / "eval/query_expansion.json")["results"]
    assert {r["grading"] for r in results} == {"round_trip"} and len(results) == 5
    # the original query is a span of its source: BM25 finds the source among the top 100 for nearly every query
    assert results[0]["recall@100"] >= 0.9 and all(0 <= r["mrr@10"] <= 1 for r in results)
