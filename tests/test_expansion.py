"""Query-Expansion-RL's pieces (groundwork of the module): rewards, pseudo-relevance feedback, RM3, and the
term-selection policy's GRPO-style training on a dense toy reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragdistill.data.bm25 import BM25
from ragdistill.expansion.feedback import (
    DENSE_TEMPERATURE,
    STOPWORDS,
    FeedbackTerms,
    document_weights,
    expanded_query,
    feedback_terms,
    relevance_model,
    rm3_query,
)
from ragdistill.expansion.reward import ndcg_at_k, recall_at_k, rewrite_problem, teacher_gains
from ragdistill.expansion.term_policy import BASE_FEATURES, TermPolicy, selected_query, term_features, train_policy

DOCUMENTS = ["the cat sat on the mat with another cat", "dogs chase cats in the garden", "stock markets fell today",
             "a cat is a small domesticated carnivorous mammal", "the garden has roses and tulips"]


def test_ndcg_and_recall_by_hand():
    gains = {"a": 1.0, "b": 0.5}
    assert ndcg_at_k(["a", "b", "c"], gains) == pytest.approx(1.0)
    expected = (0.5 / np.log2(2) + 1.0 / np.log2(4)) / (1.0 / np.log2(2) + 0.5 / np.log2(3))
    assert ndcg_at_k(["b", "c", "a"], gains) == pytest.approx(expected)
    assert ndcg_at_k(["c"], {}) == 0.0 and recall_at_k(["a", "c"], gains, 1) == 0.5


def test_label_free_gains_grade_against_the_original_query():
    asked = []

    def score(query, texts):
        asked.append(query)
        return [len(text) for text in texts]

    gains = teacher_gains("original query", ["x", "y"], {"x": "short", "y": "much longer"}, score)
    assert asked == ["original query"] and gains == {"x": 0.0, "y": 1.0}
    assert teacher_gains("q", [], {}, score) == {}


@pytest.mark.parametrize(("rewrite", "problem"), [("", "empty"), ("  ", "empty"), ("What IS  x", "copies"),
                                                  ("word " * 65, "too_long"), ("what is x about", None)])
def test_rewrites_that_earn_nothing_are_named(rewrite, problem):
    assert rewrite_problem("what is x", rewrite) == problem


def test_feedback_terms_and_rm3():
    bm25 = BM25(DOCUMENTS)
    hits = bm25.search(["cat"], 3)[0]
    documents, scores = [DOCUMENTS[d] for d, _ in hits], [s for _, s in hits]
    terms = feedback_terms("cat", documents, bm25, max_terms=5)
    assert terms.terms and not set(terms.terms) & (STOPWORDS | {"cat"})
    assert all(0 < c <= 1 for c in terms.coverage) and all(0 < r <= 1 for r in terms.first_rank)
    expanded = rm3_query("cat", documents, scores, fb_terms=4)
    assert expanded["cat"] >= 0.5 and sum(expanded.values()) == pytest.approx(1.0)
    # unit weights score as the plain query does
    np.testing.assert_allclose(bm25.weighted_scores([{"cat": 1.0, "garden": 1.0}]), bm25.scores(["cat garden"]))
    assert bm25.search_weighted([{"cat": 1.0}], 2) == bm25.search(["cat"], 2)


def test_relevance_model_and_selection_by_hand():
    documents = ["cats purr cats", "dogs bark"]
    # exp-normalised shares: scores 0 and log 3 give 1/4 and 3/4; a sharp temperature gives the best nearly all
    np.testing.assert_allclose(document_weights([0.0, np.log(3.0)]), [0.25, 0.75])
    assert document_weights([0.50, 0.45], temperature=0.05)[0] == pytest.approx(1 / (1 + np.exp(-1.0)))
    model = relevance_model(documents, [0.25, 0.75])
    assert model == pytest.approx({"cats": 0.25 * 2 / 3, "purr": 0.25 / 3, "dogs": 0.375, "bark": 0.375})
    bm25 = BM25(documents + ["a cat in a garden"])
    terms = feedback_terms("do cats bark", documents, bm25, weights=[0.25, 0.75])
    assert terms.terms == ["dogs", "purr"] and terms.weight == pytest.approx([0.375, 0.25 / 3])  # no query term
    # the query's own distribution at original_weight, the chosen terms' weights renormalised beside it
    assert selected_query("do cats bark", terms, [True, False]) == pytest.approx(
        {"do": 0.5 / 3, "cats": 0.5 / 3, "bark": 0.5 / 3, "dogs": 0.5})
    assert selected_query("do cats bark", terms, [False, False]) == pytest.approx(expanded_query("do cats bark", {}))
    assert expanded_query("do cats bark", {}) == pytest.approx({"do": 1 / 3, "cats": 1 / 3, "bark": 1 / 3})
    assert term_features(terms).shape == (2, len(BASE_FEATURES))


def test_policy_learns_a_dense_toy_reward():
    """Twelve terms per query, a random third of them 'good' and told apart by one feature; reward: the share of
    good terms among those added, minus the share of bad ones. The untrained policy hits about a third; the last
    steps must gain clearly over the first."""
    rng = np.random.default_rng(0)
    queries = []
    for _ in range(40):
        good = rng.random(12) < 1 / 3
        terms = FeedbackTerms([f"t{i}" for i in range(12)], idf=np.where(good, 8.0, 2.0) + rng.normal(0, 1, 12),
                              frequency=rng.random(12), coverage=rng.random(12), first_rank=rng.random(12),
                              weight=rng.random(12))

        def reward(mask, good=torch.tensor(good)):
            return float((mask & good).sum() / max(good.sum(), 1) - (mask & ~good).sum() / max((~good).sum(), 1))

        queries.append((term_features(terms), reward))
    torch.manual_seed(0)
    policy = TermPolicy(len(BASE_FEATURES))
    log = train_policy(policy, queries, steps=30, queries_per_step=8, group_size=6, learning_rate=0.05, seed=0,
                       progress=False)
    first, last = log.mean_reward(first=True, count=5), log.mean_reward(first=False, count=5)
    assert last > first + 0.3, (first, last)
    assert all(0.0 <= step["frac_reward_zero_std"] <= 1.0 for step in log.steps)


def test_the_benchmark_measures_every_method_on_a_small_slice(tmp_path, tiny_models):
    """benchmarks/query_expansion.py end to end on the first WikiQA questions of each split, the tiny BERT as the
    embedder: one row per method, and the original query's row is BM25's own ranking, measured by hand."""
    import gzip
    import json
    import runpy

    from tests.conftest import REPO

    data = tmp_path / "wikiqa"
    data.mkdir()
    for split in ("train", "dev", "test"):
        lines = gzip.open(REPO / f"data/wikiqa/{split}.jsonl.gz", "rt", encoding="utf-8").read().splitlines()[:25]
        (data / f"{split}.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    main = runpy.run_path(str(REPO / "benchmarks/query_expansion.py"), run_name="query_expansion")["main"]
    main(["--data_dir", str(data), "--embedder", str(tiny_models["bert"]), "--steps", "3",
          "--output_dir", str(tmp_path / "out")])
    saved = json.loads((tmp_path / "out/query_expansion.json").read_text())
    assert [r["method"].split(" (")[0].split(",")[0] for r in saved["results"]] == [
        "original query", "RM3", "relevance model", "term policy", "term policy"]
    assert all(0.0 <= r[m] <= 1.0 for r in saved["results"] for m in ("ndcg@10", "recall@10", "recall@100", "mrr@10"))
    assert len(saved["training"]) == 3 and (tmp_path / "out/query_expansion.md").exists()
    rows = [json.loads(line) for line in gzip.open(data / "test.jsonl.gz", "rt")]
    passages = sorted({p for split in ("train", "dev", "test") for r in
                       (json.loads(line) for line in gzip.open(data / f"{split}.jsonl.gz", "rt"))
                       for p in r["positive"] + r["negative"]})
    bm25 = BM25(passages)
    tested = [r for r in rows if r["positive"]]
    hits = bm25.search([r["query"] for r in tested], 10)
    by_hand = np.mean([ndcg_at_k([passages[d] for d, _ in h], {p: 1.0 for p in r["positive"]})
                       for h, r in zip(hits, tested)])
    assert saved["results"][0]["ndcg@10"] == pytest.approx(by_hand, abs=1e-4)
    # RM3's row and the dense relevance model's row, by hand from the library's pieces
    from sentence_transformers import SentenceTransformer

    embedder = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    corpus = embedder.encode(passages, batch_size=64, normalize_embeddings=True)
    texts = [r["query"] for r in tested]
    vectors = embedder.encode(texts, batch_size=64, normalize_embeddings=True)
    feedback = bm25.search(texts, 10)

    def ndcg_of(expanded):
        return np.mean([ndcg_at_k([passages[d] for d, _ in h], {p: 1.0 for p in r["positive"]})
                        for h, r in zip(bm25.search_weighted(expanded, 100), tested)])

    rm3 = [rm3_query(q, [passages[d] for d, _ in h], [score for _, score in h]) for q, h in zip(texts, feedback)]
    dense = []
    for q, v, h in zip(texts, vectors, feedback):
        docs = [d for d, _ in h]
        terms = feedback_terms(q, [passages[d] for d in docs], bm25, 20,
                               document_weights(corpus[docs] @ v, DENSE_TEMPERATURE))
        dense.append(selected_query(q, terms, np.ones(len(terms.terms))))
    assert saved["results"][1]["ndcg@10"] == pytest.approx(ndcg_of(rm3), abs=1e-4)
    assert saved["results"][2]["ndcg@10"] == pytest.approx(ndcg_of(dense), abs=1e-4)
    assert rm3 != [expanded_query(q, {}) for q in texts]  # the expansions add terms
