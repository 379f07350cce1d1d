"""Milvus-Optimization stage 2 on Milvus Lite with the tiny BERT: retrieval, CrossEncoder reranking, TREC runs and
latency lines, resuming after a crash."""

from __future__ import annotations

import json

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.resumable import is_complete, parts_dir
from ragdistill.retrieval.chain import (
    ChainArguments,
    Reranker,
    RetrievalChain,
    chain_description,
    latency_path,
    read_latencies,
    read_trec_run,
    rerank,
    run_queries,
)
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
from ragdistill.retrieval.encoder import load_query_encoder
from ragdistill.retrieval.index import MilvusArguments, connect, open_collection, search
from tests.test_milvus_index import run_stage, wikiqa_small  # noqa: F401  (fixture)


@pytest.fixture
def built_index(tmp_path, tiny_models, wikiqa_small, monkeypatch):  # noqa: F811
    uri = str(tmp_path / "milvus.db")
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "docs", "--index_type", "FLAT"], monkeypatch)
    return uri


def test_search_and_rerank_write_trec_runs(tmp_path, tiny_models, wikiqa_small, built_index, monkeypatch):  # noqa: F811
    uri = built_index
    corpus = load_retrieval_set(CorpusArguments(corpus=str(wikiqa_small)))

    # 1. retrieval only: the run holds top_k hits per query, ranked by the Milvus score
    run = tmp_path / "runs" / "student.trec"
    run_stage("search", ["--corpus", wikiqa_small, "--milvus_uri", uri, "--collection", "docs", "--top_k", 20,
                         "--output_run", run, "--warmup", 1], monkeypatch)
    lines = run.read_text().splitlines()
    assert len(lines) == 20 * len(corpus.queries)
    qid, q0, doc_id, rank, score, tag = lines[0].split()
    assert (qid, q0, rank, tag) == ("q1", "Q0", "1", "student") and doc_id in corpus.documents
    hits = read_trec_run(run)
    assert set(hits) == set(corpus.queries)
    client = connect(MilvusArguments(milvus_uri=uri))
    info = open_collection(client, "docs", uri)
    encoder = load_query_encoder(info.record)
    direct = search(client, "docs", encoder.encode_queries([corpus.queries["q3"]])[0], 20, info.metric)
    assert [doc for doc, _ in hits["q3"]] == [hit.doc_id for hit in direct]  # the run is exactly Milvus's answer
    latencies = read_latencies(latency_path(run))
    assert [row["qid"] for row in latencies] == list(corpus.queries)
    for row in latencies:
        assert row["total_ms"] >= row["retrieve_ms"] >= row["search_ms"] > 0 and row["embed_ms"] > 0
        assert row["rerank_ms"] < 1  # no reranker
    meta = json.loads((tmp_path / "runs" / "student.trec.meta.json").read_text())
    assert meta["complete"] and meta["reranker"] is None and meta["num_queries"] == len(corpus.queries)
    assert meta["index"]["vectors"] == len(corpus.documents) and meta["index"]["dim"] == 64

    # 2. with a reranker (a CrossEncoder saved with its one-label head, as a trained one is): the top rerank_top_k
    #    are re-scored and re-ordered, the rest keep their retrieval order below them
    from sentence_transformers import CrossEncoder

    reranker_dir = tmp_path / "reranker"
    CrossEncoder(str(tiny_models["bert"]), num_labels=1).save_pretrained(str(reranker_dir))
    run_rr = tmp_path / "runs" / "student_rr.trec"
    run_stage("search", ["--corpus", wikiqa_small, "--milvus_uri", uri, "--collection", "docs", "--top_k", 20,
                         "--reranker", reranker_dir, "--rerank_top_k", 8, "--output_run", run_rr,
                         "--tag", "rr", "--warmup", 1], monkeypatch)
    reranked = read_trec_run(run_rr)
    reranker = Reranker(str(reranker_dir))
    texts = corpus.documents
    for qid in ("q1", "q7"):
        retrieved = [doc for doc, _ in hits[qid]]
        expected_scores = reranker.score(corpus.queries[qid], [texts[doc] for doc in retrieved[:8]])
        head = sorted(zip(retrieved[:8], expected_scores), key=lambda pair: -pair[1])
        assert [doc for doc, _ in reranked[qid][:8]] == [doc for doc, _ in head]
        assert [s for _, s in reranked[qid][:8]] == pytest.approx([s for _, s in head], abs=1e-3)
        assert [doc for doc, _ in reranked[qid][8:]] == retrieved[8:]
        scores = [s for _, s in reranked[qid]]
        assert scores == sorted(scores, reverse=True)
    assert run_rr.read_text().split("\n")[0].endswith(" rr")
    assert all(row["rerank_ms"] > 0 for row in read_latencies(latency_path(run_rr)))
    meta = json.loads((tmp_path / "runs" / "student_rr.trec.meta.json").read_text())
    assert meta["reranker"] == str(reranker_dir) and meta["rerank_top_k"] == 8


def test_search_resumes_after_a_crash(tmp_path, wikiqa_small, built_index, monkeypatch):  # noqa: F811
    uri = built_index
    corpus = load_retrieval_set(CorpusArguments(corpus=str(wikiqa_small)))
    client = connect(MilvusArguments(milvus_uri=uri))
    info = open_collection(client, "docs", uri)
    encoder = load_query_encoder(info.record)
    args = ChainArguments(top_k=10, warmup=0)
    chain = RetrievalChain(client, info, encoder, args)
    description = chain_description(info, args, encoder, uri)
    run = tmp_path / "run.trec"

    calls = []
    original = chain.run

    def crash_after_seven(query):
        if len(calls) == 7:
            raise RuntimeError("simulated crash")
        calls.append(query)
        return original(query)

    chain.run = crash_after_seven
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_queries(chain, corpus.queries, run, "t", description, warmup=0, chunk_size=3)
    assert not run.exists() and not is_complete(run)  # nothing half-written looks finished
    assert len(list(parts_dir(run).glob("chunk-*"))) == 2  # two finished chunks of 3 queries survive

    # the re-run runs only the queries of the unfinished chunks
    calls.clear()
    chain.run = lambda query: (calls.append(query), original(query))[1]
    run_queries(chain, corpus.queries, run, "t", description, warmup=0, chunk_size=3)
    assert len(calls) == len(corpus.queries) - 6
    assert is_complete(run) and not parts_dir(run).exists()
    assert list(read_trec_run(run)) == list(corpus.queries)
    assert len(read_latencies(latency_path(run))) == len(corpus.queries)

    # a re-run that crashes leaves the old run marked unfinished: it no longer passes for the chain's result
    chain.run = crash_after_seven
    calls.clear()
    with pytest.raises(RuntimeError):
        run_queries(chain, corpus.queries, run, "t", description, warmup=0, chunk_size=3)
    assert not is_complete(run)

    # a partial run from another chain is not mixed in
    calls.clear()
    with pytest.raises(RuntimeError):
        run_queries(chain, corpus.queries, tmp_path / "other.trec", "t", description, warmup=0, chunk_size=3)
    with pytest.raises(InputError, match="a partial output from a different run is here"):
        run_queries(chain, corpus.queries, tmp_path / "other.trec", "t", {**description, "top_k": 5}, chunk_size=3)


def test_rerank_order_and_trec_run_errors(tmp_path):
    from ragdistill.retrieval.index import Hit

    hits = [Hit("a", 0.9), Hit("b", 0.8), Hit("c", 0.7), Hit("d", 0.6)]
    assert [(h.doc_id, h.score) for h in rerank(hits, [1.0, 3.0])] == [("b", 3.0), ("a", 1.0), ("c", 0.0),
                                                                      ("d", -1.0)]
    bad = tmp_path / "bad.trec"
    bad.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d2 2 0.4\n")
    with pytest.raises(InputError, match=r"bad\.trec:2: expected 6 fields"):
        read_trec_run(bad)
    bad.write_text("q1 Q0 d1 1 0.5 t\nq1 Q0 d1 2 0.4 t\n")
    with pytest.raises(InputError, match=r"bad\.trec:2: document 'd1' listed twice for query 'q1'"):
        read_trec_run(bad)
    bad.write_text("q1 Q0 d1 one 0.5 t\n")
    with pytest.raises(InputError, match=r"bad\.trec:1: rank 'one' must be an integer"):
        read_trec_run(bad)
    # ranked by score, whatever the line order
    good = tmp_path / "good.trec"
    good.write_text("q1 Q0 d2 2 0.4 t\nq1 Q0 d1 1 0.5 t\nq2 Q0 d3 1 1.0 t\n")
    assert read_trec_run(good) == {"q1": [("d1", 0.5), ("d2", 0.4)], "q2": [("d3", 1.0)]}
    with pytest.raises(InputError, match="--top_k must be between 1 and 16384"):
        ChainArguments(top_k=0)


def test_llm_reranker_scores_like_the_teacher(tiny_models):
    """A yes/no LLM reranker (the tiny Qwen3) in the chain gives logit(yes) - logit(no) after the model-card prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragdistill.reranker.prompt import format_prompt, yes_no_token_ids

    path = str(tiny_models["qwen3_reranker"])
    reranker = Reranker(path, max_length=512)
    query, passages = "What is the capital of France?", ["Paris is the capital of France.", "The war ended in 1945."]
    scores = reranker.score(query, passages)

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    yes, no = yes_no_token_ids(tokenizer)
    expected = []
    for passage in passages:
        ids = tokenizer(format_prompt(query, passage), return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            logits = model(**ids).logits[0, -1]
        expected.append(float(logits[yes] - logits[no]))
    assert scores == pytest.approx(expected, abs=1e-4)
    assert scores[0] != pytest.approx(scores[1])


def test_trained_llm_student_reranks_with_the_instruction_it_was_saved_with(tiny_models, tmp_path):
    """A yes/no LLM student's folder holds its prompt (chat_template.jinja): unless told otherwise, the chain uses
    that instruction, not the default one."""
    import shutil

    from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, chat_template

    student = tmp_path / "student"
    shutil.copytree(tiny_models["qwen3_reranker"], student)
    (student / "chat_template.jinja").write_text(chat_template("Retrieve duplicate questions"), encoding="utf-8")
    assert Reranker(str(student)).llm_reranker.settings.instruction == "Retrieve duplicate questions"
    told = Reranker(str(student), instruction="Find the answer").llm_reranker.settings.instruction
    assert told == "Find the answer"
    assert Reranker(str(tiny_models["qwen3_reranker"])).llm_reranker.settings.instruction == DEFAULT_INSTRUCTION
