"""The label-free path's pieces: candidate lists read without labels (and never asked for them), the teacher's
rows without labels (pseudo-positive, false-negative filter), agreement with the teacher as the measure, and the
label term switched off by itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.metrics import AGREEMENT_NAMES, teacher_agreement
from ragdistill.core.mteb import LabelsMissing, all_labelled, read_samples, require_labels, write_candidate_lists
from ragdistill.embedding.rows import build_rows, split_candidates
from tests.conftest import REPO, write_corpus_and_queries


def test_candidate_lists_are_read_without_labels_and_refuse_to_give_any(tmp_path):
    path = write_candidate_lists(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "test.jsonl", 5)
    labelled = read_samples(REPO / "data/wikiqa/test.jsonl.gz")[:5]
    samples = read_samples(path)
    assert [s.query for s in samples] == [s.query for s in labelled]
    assert [sorted(s.candidates) for s in samples] == [sorted(s.candidates) for s in labelled]
    assert not all_labelled(samples) and all_labelled(labelled)
    for label in ("positive", "negative"):
        with pytest.raises(LabelsMissing):
            getattr(samples[0], label)
    assert samples[0].as_dict() == json.loads(path.read_text().splitlines()[0])
    with pytest.raises(InputError, match=r"test\.jsonl: has no labels .* needs them"):
        require_labels(path, samples, "this use")


@pytest.mark.parametrize(("lines", "line", "words"), [
    ([{"query": "q", "candidates": ["only one"]}], 1, "too few candidates: 1"),
    ([{"query": "q", "candidates": ["a", "b"]}, {"query": "q2", "candidates": []}], 2, "empty list: 'candidates'"),
    ([{"query": "q", "candidates": ["a", "b"]}, {"query": "q2", "candidates": ["a", " "]}], 2, "empty string"),
    ([{"query": "q", "candidates": ["a", "b"]}, {"query": "q2", "positive": ["a"], "negative": ["b"]}], 2,
     "mixed forms: this line is labelled, line 1 is a candidate list"),
    ([{"query": "q", "candidats": ["a", "b"]}], 1, "missing key"),
])
def test_bad_candidate_lists_name_file_and_line(tmp_path, lines, line, words):
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in lines))
    with pytest.raises(InputError) as info:
        read_samples(path)
    assert str(info.value).startswith(f"{path}:{line}: ") and words in str(info.value)
    if len(lines) > 1:  # where the run can go on, the bad line is a counted skip
        skips = SkipCounter(skip_invalid=True)
        assert len(read_samples(path, skips)) == 1 and skips.total == 1


def test_agreement_is_one_for_the_teacher_and_by_hand_otherwise():
    teacher = [[3.0, 1.0, 2.0, 0.0], [0.5, -0.5]]
    assert teacher_agreement(list(zip(teacher, teacher))) == pytest.approx(dict.fromkeys(AGREEMENT_NAMES, 1.0))
    reversed_scores = [[-x for x in scores] for scores in teacher]
    agreement = teacher_agreement(list(zip(reversed_scores, teacher)))
    assert agreement["spearman vs teacher"] == pytest.approx(-1.0) and agreement["kendall vs teacher"] == pytest.approx(-1.0)
    # by hand, one query: gains (teacher scaled to [0, 1]) 1, 1/3, 2/3, 0; the model ranks c0, c1, c2, c3
    model = [4.0, 3.0, 2.0, 1.0]
    dcg = 1 / np.log2(2) + (1 / 3) / np.log2(3) + (2 / 3) / np.log2(4)
    ideal = 1 / np.log2(2) + (2 / 3) / np.log2(3) + (1 / 3) / np.log2(4)
    by_hand = teacher_agreement([(model, teacher[0])])
    assert by_hand["ndcg@10 vs teacher"] == pytest.approx(dcg / ideal)
    assert by_hand["kendall vs teacher"] == pytest.approx((5 - 1) / 6)  # 5 concordant pairs, 1 discordant
    # a query whose scores are all equal on one side has no order to agree with: left out
    assert teacher_agreement([(model, teacher[0]), ([1.0, 1.0, 1.0, 1.0], teacher[0])]) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="no query"):
        teacher_agreement([([1.0, 1.0], [0.0, 1.0])])


def test_rows_without_labels_take_the_teachers_top_and_drop_near_ties(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"query": "q", "candidates": ["a", "b", "c", "d", "e"]}) + "\n"
                    + json.dumps({"query": "r", "candidates": ["x", "y", "z"]}) + "\n")
    samples = read_samples(path)
    sims = [np.array([0.50, 0.80, 0.78, 0.20, 0.74], dtype=np.float32),  # top b; c within 95% of it
            np.array([-0.40, -0.10, -0.104], dtype=np.float32)]          # top y; z within 5% of |y| below it
    assert split_candidates(samples[0], sims[0]) == ([1], [0, 3, 4], 1)
    assert split_candidates(samples[1], sims[1]) == ([1], [0], 1)
    rows, stats = build_rows(samples, sims, "ntuple", num_negatives=2)
    assert rows[0]["positive"] == "b" and [rows[0]["negative_1"], rows[0]["negative_2"]] == ["e", "a"]
    assert rows[0]["label"] == pytest.approx([0.80, 0.74, 0.50])
    assert rows[1]["positive"] == "y" and rows[1]["negative_1"] == rows[1]["negative_2"] == "x"  # padded
    assert stats["false_negatives_dropped"] == 2 and stats["queries_padded"] == 1
    triplets, _ = build_rows(samples, sims, "triplet", num_negatives=0)
    assert {(r["positive"], r["negative"]) for r in triplets} == {("b", "a"), ("b", "d"), ("b", "e"), ("y", "x")}
    scores, _ = build_rows(samples, sims, "scores", num_negatives=0)
    assert scores[0] == {"query": "q", "scores": pytest.approx(sims[0].tolist())}
    # labelled samples keep their own positives, however the teacher scores them
    labelled = read_samples(REPO / "data/wikiqa/test.jsonl.gz")[:1]
    flipped = np.linspace(0, 1, len(labelled[0].candidates))[::-1].copy()
    assert split_candidates(labelled[0], flipped)[0] == list(range(len(labelled[0].positive)))


def test_label_term_is_off_by_itself_for_rows_without_labels(tmp_path):
    from ragdistill.core.jsonl import write_json
    from ragdistill.core.resumable import meta_path
    from ragdistill.embedding.training import DEFAULT_LABEL_WEIGHT, default_label_weight

    def rows_file(name: str, labelled: bool | None) -> str:
        path = tmp_path / name
        path.write_text("{}\n")
        write_json(meta_path(path), {"complete": True, "format": "ntuple",
                                     **({} if labelled is None else {"labelled": labelled})})
        return str(path)

    with_labels, without, older = rows_file("a.jsonl", True), rows_file("b.jsonl", False), rows_file("c.jsonl", None)
    assert default_label_weight("kl", None, [with_labels, older]) == DEFAULT_LABEL_WEIGHT > 0
    assert default_label_weight("kl", None, [with_labels, without]) == 0.0
    assert default_label_weight("kl", 0.0, [without]) == 0.0
    with pytest.raises(InputError, match=r"b\.jsonl: its rows come from input without labels"):
        default_label_weight("kl", 0.5, [without])


def test_corpus_and_queries_become_candidate_lists_mined_by_the_first_stage(tmp_path, tiny_models, monkeypatch):
    from tests.test_prepare_data import run_script

    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 20)
    positives = {s.query: set(s.positive) for s in read_samples(REPO / "data/wikiqa/test.jsonl.gz")[:20]}
    run_script(monkeypatch, "--beir_dir", str(folder), "--candidates_per_query", "5", "--output_dir",
               str(tmp_path / "out"))
    mined = read_samples(tmp_path / "out/docs/queries-candidates.jsonl")
    assert not all_labelled(mined) and [s.query for s in mined] == list(positives)
    # up to 5 distinct passages each (BM25 returns only passages sharing a word with the query)
    assert all(2 <= len(s.candidates) == len(set(s.candidates)) <= 5 for s in mined)
    assert np.mean([len(s.candidates) for s in mined]) >= 4
    # BM25 finds each question's answer among its top 5 for most queries (labels read here to check, not used)
    found = np.mean([bool(positives[s.query] & set(s.candidates)) for s in mined])
    assert found >= 0.6, found
    # two first stages merged: BM25's and an embedder's hits rank by rank, each passage once
    run_script(monkeypatch, "--beir_dir", str(folder), "--candidates_per_query", "6", "--output_dir",
               str(tmp_path / "merged"), "--retriever", f"bm25,{tiny_models['bert']}")
    merged = read_samples(tmp_path / "merged/docs/queries-candidates.jsonl")
    assert all(len(s.candidates) == 6 for s in merged)  # the embedder ranks every passage
    # BM25's best hit leads each merged list, the embedder's best comes second (unless it is the same passage)
    assert all(m.candidates[0] == b.candidates[0] for m, b in zip(merged, mined))


@pytest.mark.parametrize(("corpus", "queries", "where", "words"), [
    (['{"id": "a", "text": "x y"}', '{"id": "a", "text": "z"}'], ['{"id": "q", "text": "x"}'], "corpus.jsonl:2",
     "duplicate _id 'a'"),
    (['{"id": "a", "text": "x y"}'], [], "queries.jsonl", "file is empty"),
    (['{"id": "a", "text": "x y"}'], ['{"id": "q", "text": ""}'], "queries.jsonl:1", "missing or empty 'text'"),
])
def test_bad_corpus_or_queries_name_file_and_line(tmp_path, write_lines, corpus, queries, where, words):
    from ragdistill.data.beir import prepare_beir

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in corpus))
    (folder / "queries.jsonl").write_text("".join(line + "\n" for line in queries))
    with pytest.raises(InputError) as info:
        prepare_beir(folder, tmp_path / "out")
    assert f"{where}: " in str(info.value) and words in str(info.value)
    assert not (tmp_path / "out").exists()


def test_queries_without_two_candidates_are_skipped_and_counted(tmp_path):
    from ragdistill.data.beir import prepare_beir

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "corpus.jsonl").write_text('{"id": "a", "text": "red apples"}\n{"id": "b", "text": "red cars"}\n'
                                         '{"id": "c", "text": "blue sky"}\n')
    (folder / "queries.jsonl").write_text('{"id": "q1", "text": "red"}\n{"id": "b", "text": "cars"}\n')
    counts = prepare_beir(folder, tmp_path / "out", candidates_per_query=2)[0]
    # q1 finds a and b; query "b" may not get its own document, and BM25 finds nothing else with a word of it
    assert counts.queries == 1 and counts.skipped == 1 and counts.details["skipped_too_few_candidates"] == 1
    assert read_samples(tmp_path / "out/docs/queries-candidates.jsonl")[0].candidates == ["red apples", "red cars"]


def test_cropped_queries_are_spans_of_their_documents():
    from ragdistill.data.pseudo_queries import cropped_queries, dedupe

    documents = ["one two three four five six seven eight nine ten eleven twelve thirteen", "too short", "a b c d e"]
    queries = cropped_queries(documents, per_document=3, seed=1, min_words=4, max_words=6)
    assert queries == cropped_queries(documents, per_document=3, seed=1, min_words=4, max_words=6)  # seeded
    assert {index for index, _ in queries} == {0, 2}  # "too short" has fewer than 4 words
    for index, text in queries:
        assert text in documents[index] and 4 <= len(text.split()) <= 6
    assert dedupe([(0, "A query"), (1, "a  query"), (1, "another")]) == [(0, "A query"), (1, "another")]


def test_round_trip_keeps_a_query_whose_source_the_teacher_ranks_near_the_top():
    from ragdistill.data.pseudo_queries import round_trip_keep

    scores = [0.9, 0.1, 0.5, 0.7, 0.3]
    assert round_trip_keep(scores, 0, top=1) and round_trip_keep(scores, 2, top=3)
    assert not round_trip_keep(scores, 4, top=3)
    assert not round_trip_keep([0.5, 0.5, 0.1], 1, top=1)  # a tie with the top candidate does not rank above it


def test_a_corpus_alone_gives_pseudo_queries_that_the_teacher_filters(tmp_path, tiny_models, monkeypatch):
    """Crops of WikiQA passages as queries (no model), candidates by BM25 with the source among them; the
    embedding stage 1 keeps the queries whose source the tiny teacher ranks in its top 3, and says how many."""
    from ragdistill.core.resumable import require_complete
    from tests.builders import stage_main
    from tests.test_prepare_data import run_script

    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 10)
    (folder / "queries.jsonl").unlink()  # the corpus alone
    run_script(monkeypatch, "--beir_dir", str(folder), "--pseudo_queries", "crop", "--max_documents", "12",
               "--candidates_per_query", "8", "--output_dir", str(tmp_path / "out"))
    made = tmp_path / "out/docs/pseudo-queries-candidates.jsonl"
    samples = read_samples(made)
    assert len(samples) == 12 and not all_labelled(samples)
    assert all(s.source in s.candidates and s.query in " ".join(s.source.split()) for s in samples)
    assert all(2 <= len(s.candidates) <= 8 for s in samples)
    rows = tmp_path / "rows.jsonl"
    stage_main("Embedding-Distillation", "score")([
        "--train_files", str(made), "--output_file", str(rows), "--teacher_model", str(tiny_models["qwen3_embedder"]),
        "--backend", "torch", "--teacher_dtype", "float32", "--num_negatives", "2"])
    round_trip = require_complete(rows)["round_trip"]
    assert round_trip["checked"] == 12 and 0 < round_trip["kept"] <= 12 and round_trip["top"] == 3
    assert require_complete(rows)["counts"]["rows"] == round_trip["kept"]


def test_reranker_rows_apply_the_round_trip_filter(tmp_path):
    from ragdistill.core.hashing import file_digest
    from ragdistill.core.jsonl import write_json, write_jsonl
    from ragdistill.core.resumable import meta_path
    from ragdistill.reranker.rows import RowSettings, build_rows

    made = tmp_path / "made.jsonl"
    write_jsonl(made, [{"query": "q1", "candidates": ["a", "b", "c"], "source": "a"},
                       {"query": "q2", "candidates": ["a", "b", "c"], "source": "c"},
                       {"query": "q3", "candidates": ["a", "b", "c"]}])
    scores = tmp_path / "made.scores.jsonl"
    write_jsonl(scores, [{"query": q, "passage": p, "score": s} for q in ("q1", "q2", "q3")
                         for p, s in zip("abc", (3.0, 2.0, 1.0))])
    write_json(meta_path(scores), {"complete": True, "input": str(made), "input_digest": file_digest(made)})
    stats = build_rows([scores], tmp_path / "rows.jsonl", RowSettings(format="listwise", round_trip_top=1))
    assert (stats.round_trip_checked, stats.round_trip_dropped, stats.rows) == (2, 1, 2)  # q2's source ranks last
    assert [json.loads(line)["query"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == ["q1", "q3"]


@pytest.mark.vllm
def test_an_llm_writes_queries_for_a_corpus_on_vllm(tmp_path, tiny_models, monkeypatch):
    """The generator route with a tiny random Qwen3 causal LM (it writes gibberish): generations that come back empty
    or too long are counted, the rest become candidate lists naming their source."""
    from ragdistill.core.jsonl import read_json
    from tests.test_prepare_data import run_script

    folder = write_corpus_and_queries(REPO / "data/wikiqa/test.jsonl.gz", tmp_path / "docs", 3)
    (folder / "queries.jsonl").unlink()
    run_script(monkeypatch, "--beir_dir", str(folder), "--pseudo_queries", str(tiny_models["qwen3_reranker"]),
               "--queries_per_document", "4", "--candidates_per_query", "5", "--output_dir", str(tmp_path / "out"),
               "--enforce_eager", "true", "--kv_cache_gb", "0.25")
    record = read_json(tmp_path / "out/docs/prepare_data.json")["splits"]["pseudo-queries-candidates"]
    documents = len((folder / "corpus.jsonl").read_text().splitlines())
    made = read_samples(tmp_path / "out/docs/pseudo-queries-candidates.jsonl")
    assert record["details"]["queries_made"] + record["details"]["generations_dropped"] <= 4 * documents
    assert len(made) == record["queries"] > 0 and all(s.source in s.candidates for s in made)
