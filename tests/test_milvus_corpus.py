"""Retrieval sets for Milvus-Optimization: MTEB reranking files pooled into a corpus, BEIR folders, qrels files."""

from __future__ import annotations

import json

import pytest

from ragdistill.core.errors import InputError
from ragdistill.retrieval.corpus import (
    CorpusArguments,
    load_beir,
    load_mteb,
    load_retrieval_set,
    passage_id,
    primary_key,
    read_qrels_file,
    write_trec_qrels,
)
from tests.conftest import REPO


def _rows(*rows):
    return [json.dumps(row) for row in rows]


def test_mteb_files_pool_and_deduplicate_passages(write_lines):
    first = write_lines("a.jsonl", _rows(
        {"query": "capital of France?", "positive": ["Paris is the capital."], "negative": ["Lyon is big.", "Nice."]},
        {"query": "largest city?", "positive": ["Tokyo is the largest."], "negative": ["Paris is the capital."]},
    ))
    second = write_lines("b.jsonl.gz", _rows(
        # the same query again: one query, positives merged; a passage listed both ways stays positive
        {"query": "capital of France?", "positive": ["France's capital is Paris."], "negative": ["Paris is the capital."]},
    ), gz=True)
    distractors = write_lines("d.jsonl", _rows(
        {"query": "unused", "positive": ["Extra passage one."], "negative": ["Lyon is big.", "Extra passage two."]},
    ))
    data = load_mteb([str(first), str(second)], [str(distractors)])

    texts = ["Paris is the capital.", "Lyon is big.", "Nice.", "Tokyo is the largest.", "France's capital is Paris.",
             "Extra passage one.", "Extra passage two."]
    assert list(data.documents.values()) == texts  # pooled, de-duplicated, in file order
    assert list(data.documents) == [passage_id(text) for text in texts]
    assert data.queries == {"q1": "capital of France?", "q2": "largest city?"}  # distractor queries are not added
    assert data.qrels["q1"] == {passage_id("Paris is the capital."): 1, passage_id("Lyon is big."): 0,
                                passage_id("Nice."): 0, passage_id("France's capital is Paris."): 1}
    assert data.qrels["q2"] == {passage_id("Tokyo is the largest."): 1, passage_id("Paris is the capital."): 0}
    assert data.details == {"rows": 3, "distractor documents": 2}
    # ids and fingerprint are stable: the same files give the same set
    again = load_mteb([str(first), str(second)], [str(distractors)])
    assert again.fingerprint() == data.fingerprint()
    assert primary_key("p1") == primary_key("p1") and 0 <= primary_key("p1") < 2 ** 63
    assert primary_key("p1") != primary_key("p2")


def test_bundled_wikiqa_test_pools_into_a_corpus():
    data = load_retrieval_set(CorpusArguments(corpus=str(REPO / "data/wikiqa/test.jsonl.gz")))
    assert len(data.queries) == 237
    assert len(data.documents) == 2299  # 2340 candidate passages, 41 repeated across questions
    assert sum(rel for judged in data.qrels.values() for rel in judged.values()) == 283


def test_mteb_errors_name_file_and_line(write_lines):
    bad = write_lines("bad.jsonl", _rows({"query": "q", "positive": ["p"], "negative": ["n"]},
                                         {"query": "q2", "positives": ["p"], "negative": ["n"]}))
    with pytest.raises(InputError, match=r"bad\.jsonl:2: missing key: 'positive'"):
        load_mteb([str(bad)])
    # --skip_invalid counts the bad row and keeps the rest
    data = load_mteb([str(bad)], skip_invalid=True)
    assert list(data.queries.values()) == ["q"]
    with pytest.raises(InputError, match="not a BEIR folder"):
        load_mteb([str(bad.parent)])


def _beir_folder(root, qrels_lines):
    folder = root / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"_id": "d1", "title": "Paris", "text": "Paris is the capital of France."},
        {"_id": "d2", "title": "", "text": "Tokyo is the largest city."},
        {"_id": "d3", "title": "Lyon", "text": "Lyon is in France."},
    ]) + "\n")
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in [
        {"_id": "q1", "text": "capital of France"}, {"_id": "q2", "text": "largest city"},
        {"_id": "q3", "text": "not judged"},
    ]) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels_lines) + "\n")
    return folder


def test_beir_folder(tmp_path, write_lines):
    folder = _beir_folder(tmp_path, ["q1\td1\t2", "q1\td3\t0", "q2\td2\t1"])
    data = load_retrieval_set(CorpusArguments(corpus=str(folder)))
    assert data.documents == {"d1": "Paris Paris is the capital of France.", "d2": "Tokyo is the largest city.",
                              "d3": "Lyon Lyon is in France."}
    assert data.queries == {"q1": "capital of France", "q2": "largest city"}  # q3 has no judgement
    assert data.qrels == {"q1": {"d1": 2, "d3": 0}, "q2": {"d2": 1}}
    # distractor passages from MTEB files join a BEIR corpus too
    extra = write_lines("extra.jsonl", _rows({"query": "x", "positive": ["Extra one."], "negative": ["Extra two."]}))
    bigger = load_beir(folder, distractor_files=[str(extra)])
    assert len(bigger.documents) == 5 and bigger.queries == data.queries
    # search needs the queries only: the corpus is not read
    queries_only = load_beir(folder, with_documents=False)
    assert queries_only.documents == {} and queries_only.qrels == data.qrels


def test_beir_errors(tmp_path):
    folder = _beir_folder(tmp_path, ["q1\td1\t1", "q2\tmissing\t1"])
    with pytest.raises(InputError, match=r"test\.tsv:3: corpus-id 'missing' is not in corpus\.jsonl"):
        load_beir(folder)
    assert load_beir(folder, skip_invalid=True).queries == {"q1": "capital of France"}
    with pytest.raises(InputError, match=r"dev\.tsv: file does not exist \(splits here: test\)"):
        load_beir(folder, split="dev")


def test_qrels_files(tmp_path):
    beir = tmp_path / "qrels.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td3\t2\n")
    trec = write_trec_qrels(tmp_path / "qrels.trec", read_qrels_file(beir))
    assert trec.read_text().splitlines() == ["q1 0 d1 1", "q1 0 d2 0", "q2 0 d3 2"]
    assert read_qrels_file(trec) == read_qrels_file(beir) == {"q1": {"d1": 1, "d2": 0}, "q2": {"d3": 2}}
    bad = tmp_path / "bad.tsv"
    bad.write_text("q1 0 d1 1\nq1 d2\n")
    with pytest.raises(InputError, match=r"bad\.tsv:2: expected 3 fields"):
        read_qrels_file(bad)
