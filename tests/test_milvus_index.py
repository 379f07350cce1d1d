"""Milvus-Optimization stage 1 on Milvus Lite for real, with the tiny BERT as embedder: resumable inserts, the
encoder record and the mismatch check, Matryoshka --dim, index types."""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

from ragdistill.core.cli import setup_logging
from ragdistill.core.errors import InputError
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
from ragdistill.retrieval.encoder import EmbedderArguments, load_document_encoder, load_query_encoder
from ragdistill.retrieval.index import (
    IndexArguments,
    MilvusArguments,
    check_index_type,
    connect,
    count_rows,
    create_collection,
    index_documents,
    open_collection,
    search,
)
from tests.conftest import REPO

NUM_QUERIES = 12


def load_stage(name: str):
    """A stage script of Milvus-Optimization as a module (its main runs in this process: no re-import cost)."""
    spec = importlib.util.spec_from_file_location(f"milvus_{name}", REPO / "Milvus-Optimization" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


def run_stage(name: str, argv: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *map(str, argv)])
    stage = load_stage(name)
    setup_logging(stage.__name__)  # as run_main does: progress to stdout, problems to stderr
    stage.main()


@pytest.fixture
def wikiqa_small(tmp_path):
    """The first questions of the bundled WikiQA test set (real data), as an MTEB file."""
    lines = gzip.open(REPO / "data/wikiqa/test.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:NUM_QUERIES]
    path = tmp_path / "wikiqa_small.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _encoder(model, **kwargs):
    return load_document_encoder(EmbedderArguments(embedder=str(model), dtype="float32", **kwargs))


def test_resumable_insert_after_a_partial_build(tmp_path, tiny_models, wikiqa_small, monkeypatch, capsys):
    uri = str(tmp_path / "milvus.db")
    corpus = load_retrieval_set(CorpusArguments(corpus=str(wikiqa_small)))
    half = dict(list(corpus.documents.items())[:70])

    # 1. a build that stops half way (as after a crash): 70 documents in, never marked complete
    encoder = _encoder(tiny_models["bert"])
    client = connect(MilvusArguments(milvus_uri=uri))
    create_collection(client, "docs", encoder.record, IndexArguments(), corpus.fingerprint(),
                      len(corpus.documents), uri)
    stats = index_documents(client, "docs", half, encoder, batch_size=32)
    assert (stats.inserted, stats.already_indexed) == (70, 0)
    with pytest.raises(InputError, match=r"collection 'docs' is incomplete: its build stopped after 70 of "
                                         rf"{len(corpus.documents)} documents\. Re-run build_index\.py"):
        open_collection(client, "docs", uri)

    # 2. the re-run embeds and inserts only the missing documents, then marks the collection complete
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "docs", "--insert_batch_size", "32",
                              "--output_dir", tmp_path], monkeypatch)
    summary = json.loads((tmp_path / "docs.build.json").read_text())
    assert summary["stats"]["already_indexed"] == 70
    assert summary["stats"]["inserted"] == len(corpus.documents) - 70
    assert count_rows(client, "docs") == len(corpus.documents)  # nothing twice
    info = open_collection(client, "docs", uri)
    assert info.num_vectors == len(corpus.documents) and info.record.dim == 64
    assert summary["index"]["vector_bytes"] == len(corpus.documents) * 64 * 4
    assert summary["index"]["disk_bytes"] > 0

    # 3. a third run finds everything there and embeds nothing
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "docs", "--output_dir", tmp_path], monkeypatch)
    summary = json.loads((tmp_path / "docs.build.json").read_text())
    assert summary["stats"]["inserted"] == 0 and summary["stats"]["already_indexed"] == len(corpus.documents)
    assert "already there" in capsys.readouterr().out

    # 4. each document's vector is its own nearest neighbour (what was inserted is what the encoder gives)
    doc_id, text = next(iter(corpus.documents.items()))
    hits = search(client, "docs", encoder.encode_documents([text])[0], 3, "COSINE", with_text=True)
    assert hits[0].doc_id == doc_id and hits[0].text == text and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_query_encoder_mismatch_is_refused(tmp_path, tiny_models, wikiqa_small, monkeypatch, capsys):
    uri = str(tmp_path / "milvus.db")
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "bert_docs"], monkeypatch)
    client = connect(MilvusArguments(milvus_uri=uri))
    record = open_collection(client, "bert_docs", uri).record
    assert record.model == str(tiny_models["bert"].resolve()) and record.normalize and record.dim == 64

    # another model with the same dimension: refused, and the message says which model the index holds
    other = tmp_path / "other-bert"
    from tests.builders import build_bert

    build_bert(other, seed=7)
    with pytest.raises(InputError, match=r"encoder mismatch: collection 'bert_docs' holds vectors of .*bert, 64 "
                                         r"dims, normalised; .*Search with the model the index was built with"):
        load_query_encoder(record, str(other), collection="bert_docs")
    # a model with fewer dimensions than the index: refused before anything else
    with pytest.raises(InputError, match="encoder mismatch: this model gives 64-dim vectors"):
        load_query_encoder(dataclasses.replace(record, dim=128), str(tiny_models["bert"]))
    # the same weights in another folder: accepted, with a note
    copy = tmp_path / "bert-copy"
    shutil.copytree(tiny_models["bert"], copy)
    encoder = load_query_encoder(record, str(copy), collection="bert_docs")
    assert "gives the same vectors" in capsys.readouterr().out
    assert encoder.encode_queries(["who wrote the novel?"]).shape == (1, 64)

    # the search stage itself refuses the mismatched encoder: one-line error, exit status 2
    from ragdistill.core.cli import run_main

    monkeypatch.setattr(sys, "argv", ["search.py", "--corpus", str(wikiqa_small), "--milvus_uri", uri,
                                      "--collection", "bert_docs", "--embedder", str(other),
                                      "--output_run", str(tmp_path / "run.trec")])
    with pytest.raises(SystemExit) as exit_info:
        run_main(load_stage("search").main)
    assert exit_info.value.code == 2
    assert "encoder mismatch" in capsys.readouterr().err
    assert not (tmp_path / "run.trec").exists()

    # building into the same collection with another model is refused too (no mixed vectors)
    with pytest.raises(InputError, match=r"collection 'bert_docs' exists with other settings: model .*--overwrite"):
        run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", other, "--milvus_uri", uri,
                                  "--collection", "bert_docs", "--dtype", "float32"], monkeypatch)


def test_matryoshka_dim_truncates_and_renormalises(tmp_path, tiny_models, wikiqa_small, monkeypatch):
    uri = str(tmp_path / "milvus.db")
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "dim16", "--dim", "16", "--index_type", "FLAT",
                              "--output_dir", tmp_path], monkeypatch)
    client = connect(MilvusArguments(milvus_uri=uri))
    info = open_collection(client, "dim16", uri)
    assert (info.record.dim, info.record.model_dim, info.index_type) == (16, 64, "FLAT")
    vector_field = next(f for f in client.describe_collection("dim16")["fields"] if f["name"] == "vector")
    assert vector_field["params"]["dim"] == 16
    summary = json.loads((tmp_path / "dim16.build.json").read_text())
    assert summary["index"]["vector_bytes"] == info.num_vectors * 16 * 4

    # stored vectors = the full embedding's first 16 components, re-normalised
    corpus = load_retrieval_set(CorpusArguments(corpus=str(wikiqa_small)))
    doc_id, text = list(corpus.documents.items())[5]
    full = _encoder(tiny_models["bert"]).encode_documents([text])[0]
    expected = full[:16] / np.linalg.norm(full[:16])
    stored = client.query("dim16", filter=f"doc_id == '{doc_id}'", output_fields=["vector"])[0]["vector"]
    np.testing.assert_allclose(np.asarray(stored, dtype=np.float32), expected, atol=1e-5)
    assert np.linalg.norm(stored) == pytest.approx(1.0, abs=1e-5)

    # the query encoder reads the dimension from the collection: queries come out truncated the same way
    encoder = load_query_encoder(info.record, collection="dim16")
    query = encoder.encode_queries([text])[0]
    assert query.shape == (16,)
    assert search(client, "dim16", query, 1, info.metric)[0].doc_id == doc_id
    with pytest.raises(InputError, match="--dim 65 is larger than the model's 64 dimensions"):
        _encoder(tiny_models["bert"], dim=65)


def test_index_types_lite_builds_and_refuses(tmp_path, tiny_models, wikiqa_small, monkeypatch):
    uri = str(tmp_path / "milvus.db")
    with pytest.raises(InputError, match=r"index type DISKANN \(needs a Milvus server"):
        check_index_type("DISKANN", uri)
    with pytest.raises(InputError, match="index type NOT_AN_INDEX is not built by Milvus Lite"):
        check_index_type("NOT_AN_INDEX", uri)
    check_index_type("DISKANN", "http://milvus.example.com:19530")  # a server decides itself
    with pytest.raises(InputError, match="--metric must be one of COSINE, IP, L2"):
        IndexArguments(metric="hamming")
    with pytest.raises(InputError, match="--index_params is not valid JSON"):
        IndexArguments(index_params="{nlist: 4}")

    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "ivf", "--index_type", "ivf_flat",
                              "--index_params", '{"nlist": 8}', "--metric", "IP"], monkeypatch)
    client = connect(MilvusArguments(milvus_uri=uri))
    info = open_collection(client, "ivf", uri)
    assert (info.index_type, info.metric) == ("IVF_FLAT", "IP")
    # another metric on the same collection is refused; --overwrite rebuilds it
    with pytest.raises(InputError, match=r"exists with other settings: metric IP \(now L2\)"):
        run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                                  "--milvus_uri", uri, "--collection", "ivf", "--metric", "L2"], monkeypatch)
    run_stage("build_index", ["--corpus", wikiqa_small, "--embedder", tiny_models["bert"], "--dtype", "float32",
                              "--milvus_uri", uri, "--collection", "ivf", "--metric", "L2", "--overwrite"],
              monkeypatch)
    info = open_collection(client, "ivf", uri)
    assert (info.index_type, info.metric) == ("AUTOINDEX", "L2")
    # L2 distances come back negated: higher is better in every run
    record_encoder = load_query_encoder(info.record, collection="ivf")
    hits = search(client, "ivf", record_encoder.encode_queries(["what is a cross encoder?"])[0], 5, "L2")
    assert all(hit.score <= 0 for hit in hits) and [h.score for h in hits] == sorted([h.score for h in hits],
                                                                                      reverse=True)
    with pytest.raises(InputError, match=r"no collection 'missing' here \(collections: ivf\)"):
        open_collection(client, "missing", uri)
