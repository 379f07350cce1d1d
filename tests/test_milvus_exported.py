"""Milvus-Optimization's search stage serving exported students: the query encoder and the CrossEncoder reranker
run from their ONNX Runtime int8 exports (ragdistill.export.variants), recorded in the run's metadata and the table."""

from __future__ import annotations

import json
import shutil

import pytest

from ragdistill.core.errors import InputError
from ragdistill.embedding.pipeline import EmbeddingPipeline
from ragdistill.export import variants as export
from ragdistill.reranker.pipeline import RerankerPipeline
from ragdistill.retrieval.chain import ChainArguments, Reranker, read_trec_run
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
from ragdistill.retrieval.evaluation import evaluate_chain, table_rows
from tests.test_milvus_index import run_stage, wikiqa_small  # noqa: F401  (fixture)

PIPELINES = {"embedder": EmbeddingPipeline(), "reranker": RerankerPipeline()}


def test_search_with_exported_encoder_and_reranker(tmp_path, tiny_models, wikiqa_small, monkeypatch):  # noqa: F811
    # the student embedder (a copy of the tiny BERT) indexes the corpus, then is exported to ONNX int8
    embedder = tmp_path / "embedder"
    shutil.copytree(tiny_models["bert"], embedder)
    reranker = tmp_path / "reranker"
    export.load_torch_model(PIPELINES["reranker"], tiny_models["bert"], device="cpu").save_pretrained(str(reranker))
    for kind, path in (("embedder", embedder), ("reranker", reranker)):
        assert export.export_variants(PIPELINES[kind], path, ["onnx-int8"]) == {}
    uri = str(tmp_path / "milvus.db")
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", embedder, "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "docs", "--index_type", "FLAT"], monkeypatch)
    common = ["--corpus", wikiqa_small, "--milvus_uri", uri, "--collection", "docs", "--top_k", 20, "--warmup", 1,
              "--reranker", reranker, "--rerank_top_k", 5]
    runs = {name: tmp_path / "runs" / f"{name}.trec" for name in ("torch", "int8")}
    run_stage("search", [*common, "--output_run", runs["torch"]], monkeypatch)
    # int8 query vectors pass the collection's probe check (same model, cosine >= 0.99) and retrieve nearly alike
    run_stage("search", [*common, "--encoder_backend", "onnx", "--reranker_backend", "onnx", "--output_run",
                         runs["int8"]], monkeypatch)
    torch_run, int8_run = read_trec_run(runs["torch"]), read_trec_run(runs["int8"])
    assert set(torch_run) == set(int8_run)
    overlap = [len({d for d, _ in torch_run[q][:20]} & {d for d, _ in int8_run[q][:20]}) / 20 for q in torch_run]
    assert sum(overlap) / len(overlap) >= 0.9
    int8_file = export.variant_file("onnx-int8")
    meta = json.loads(runs["int8"].with_name("int8.trec.meta.json").read_text())
    assert meta["query_encoder_backend"] == f"onnx:{int8_file}" and meta["reranker_backend"] == f"onnx:{int8_file}"
    assert json.loads(runs["torch"].with_name("torch.trec.meta.json").read_text())["query_encoder_backend"] == "torch"

    # the reranker's int8 scores follow its torch scores; the side-by-side table names the backend
    query = "how are glacier caves formed?"
    passages = ["A glacier cave is a cave formed within the ice of a glacier.", "The city has two million people."]
    scores = Reranker(str(reranker), backend="onnx").score(query, passages)
    assert scores == pytest.approx(Reranker(str(reranker)).score(query, passages), abs=0.05)
    qrels = load_retrieval_set(CorpusArguments(corpus=str(wikiqa_small)), with_documents=False).qrels
    _, rows = table_rows([evaluate_chain(name, path, qrels) for name, path in runs.items()])
    assert "[onnx int8]" in rows[1][1] and "[onnx int8]" in rows[1][3] and "[onnx" not in rows[0][1]


def test_exported_backend_errors(tmp_path, tiny_models):
    with pytest.raises(InputError, match="no exported onnx model here"):
        Reranker(str(tiny_models["bert"]), backend="onnx")  # nothing exported in this folder
    with pytest.raises(InputError, match="runs exported CrossEncoders"):
        Reranker(str(tiny_models["qwen3_reranker"]), backend="openvino")
    with pytest.raises(InputError, match="--encoder_backend"):
        ChainArguments(encoder_backend="tensorrt")
