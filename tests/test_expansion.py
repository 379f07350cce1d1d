"""Query-Expansion-RL's pieces: rewards, pseudo-relevance feedback, RM3, the term-selection policy's GRPO-style
training on a dense toy reward, and the environment's search and grading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragdistill.data.bm25 import BM25
from ragdistill.expansion.feedback import (
    STOPWORDS,
    FeedbackTerms,
    document_weights,
    expanded_query,
    feedback_terms,
    relevance_model,
    rm3_query,
)
from ragdistill.expansion.reward import ndcg_at_k, recall_at_k, rewrite_problem, unit_scaled
from ragdistill.expansion.term_policy import BASE_FEATURES, TermPolicy, selected_query, term_features, train_policy

DOCUMENTS = ["the cat sat on the mat with another cat", "dogs chase cats in the garden", "stock markets fell today",
             "a cat is a small domesticated carnivorous mammal", "the garden has roses and tulips"]


def test_ndcg_and_recall_by_hand():
    gains = {"a": 1.0, "b": 0.5}
    assert ndcg_at_k(["a", "b", "c"], gains) == pytest.approx(1.0)
    expected = (0.5 / np.log2(2) + 1.0 / np.log2(4)) / (1.0 / np.log2(2) + 0.5 / np.log2(3))
    assert ndcg_at_k(["b", "c", "a"], gains) == pytest.approx(expected)
    assert ndcg_at_k(["c"], {}) == 0.0 and recall_at_k(["a", "c"], gains, 1) == 0.5


def test_teacher_scores_become_gains_in_zero_to_one():
    assert unit_scaled([3.0, 1.0, 2.0]).tolist() == [1.0, 0.0, 0.5]
    assert unit_scaled([2.0, 2.0]).tolist() == [1.0, 1.0] and unit_scaled([]).tolist() == []


@pytest.mark.parametrize(("rewrite", "problem"), [("", "empty"), ("  ", "empty"), ("What IS  x", "copies"),
                                                  ("word " * 65, "too_long"), ("what is x about", None)])
def test_rewrites_that_earn_nothing_are_named(rewrite, problem):
    assert rewrite_problem("what is x", rewrite) == problem


def test_feedback_terms_and_rm3():
    bm25 = BM25(DOCUMENTS)
    hits = bm25.search(["cat"], 3)[0]
    documents, scores = [DOCUMENTS[d] for d, _ in hits], [s for _, s in hits]
    terms = feedback_terms("cat", documents, bm25.idf_table(), max_terms=5)
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
    terms = feedback_terms("do cats bark", documents, bm25.idf_table(), weights=[0.25, 0.75])
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

        def rewards(masks, good=torch.tensor(good)):
            return [float((m & good).sum() / max(good.sum(), 1) - (m & ~good).sum() / max((~good).sum(), 1))
                    for m in masks]

        queries.append((term_features(terms), rewards))
    torch.manual_seed(0)
    policy = TermPolicy(len(BASE_FEATURES))
    log = train_policy(policy, queries, steps=30, queries_per_step=8, group_size=6, learning_rate=0.05, seed=0,
                       progress=False)
    first, last = log.mean_reward(first=True, count=5), log.mean_reward(first=False, count=5)
    assert last > first + 0.3, (first, last)
    assert all(0.0 <= step["frac_reward_zero_std"] <= 1.0 for step in log.steps)


def test_the_grader_asks_the_teacher_about_the_original_query_on_one_pool():
    """Label-free grading: the teacher scores (original query, document) pairs, each pair once; one query's lists are
    graded on the pool of their top documents, scaled to [0, 1] there; the labels are never read."""
    from ragdistill.expansion.environment import Grader, RetrievalEnvironment
    from ragdistill.retrieval.corpus import RetrievalSet

    class Teacher:
        def __init__(self):
            self.pairs = []

        def score(self, pairs):
            from types import SimpleNamespace

            self.pairs += pairs
            return SimpleNamespace(scores=[float(len(passage)) for _, passage in pairs])

    documents = {f"d{i}": text for i, text in enumerate(DOCUMENTS)}
    labels = {"q": {"d1": 1}}  # present, and never read
    retrieval_set = RetrievalSet(documents, {"q": "the cat"}, labels, "test")
    environment = RetrievalEnvironment(documents)
    teacher = Teacher()
    grader = Grader(environment, retrieval_set, "teacher", teacher)
    lists = [[3, 0], [2]]
    scores = grader.ndcg("q", lists, k=10)
    assert {query for query, _ in teacher.pairs} == {"the cat"} and len(teacher.pairs) == 3
    # gains: the teacher's scores (lengths) scaled over the pool {d0, d2, d3}: d3 (longest) 1, d2 (shortest) 0
    gain0 = (len(DOCUMENTS[0]) - len(DOCUMENTS[2])) / (len(DOCUMENTS[3]) - len(DOCUMENTS[2]))
    ideal = 1.0 + gain0 / np.log2(3)
    assert scores == pytest.approx([(1.0 + gain0 / np.log2(3)) / ideal, 0.0])
    grader.ndcg("q", [[3]], k=10)
    assert len(teacher.pairs) == 3  # cached: no pair is scored twice
    assert grader.recall("q", [3], 10) is None  # the teacher judges only what was retrieved


def test_rewrites_that_earn_nothing_retrieve_nothing():
    from ragdistill.expansion.environment import Grader, RetrievalEnvironment
    from ragdistill.expansion.rewriters import Rewrite
    from ragdistill.retrieval.corpus import RetrievalSet

    documents = {f"d{i}": text for i, text in enumerate(DOCUMENTS)}
    environment = RetrievalEnvironment(documents)
    found = environment.search([Rewrite("cat"), Rewrite("", problem="empty"), Rewrite("zebra unicorn"),
                                Rewrite("cat garden", {"garden": 1.0})], 3)
    assert found[0] and found[1] == [] and found[2] == []  # no document shares a word with the third: no results
    assert [d for d, _ in found[3]] == [d for d, _ in environment.bm25.search(["garden"], 3)[0]]  # weights win
    grader = Grader(environment, RetrievalSet(documents, {"q": "cat"}, {"q": {"d0": 1}}, "test"), "labels")
    assert grader.ndcg("q", [[d for d, _ in hits] for hits in found], 10)[1:3] == [0.0, 0.0]


def test_a_rewrite_that_finds_nothing_is_a_counted_zero():
    from collections import Counter

    from ragdistill.expansion.environment import Grader, RetrievalEnvironment
    from ragdistill.expansion.evaluation import evaluate
    from ragdistill.expansion.rewriters import Rewrite
    from ragdistill.retrieval.corpus import RetrievalSet

    documents = {f"d{i}": text for i, text in enumerate(DOCUMENTS)}
    environment = RetrievalEnvironment(documents)
    retrieval_set = RetrievalSet(documents, {"q1": "cat", "q2": "garden"}, {"q1": {"d0": 1}, "q2": {"d4": 1}}, "t")
    methods = [("original query", [Rewrite("cat"), Rewrite("garden")], 0.0, Counter()),
               ("rewriter", [Rewrite("zebra"), Rewrite("", problem="empty")], 0.001, Counter({"empty": 1}))]
    rows = evaluate(environment, Grader(environment, retrieval_set, "labels"), ["q1", "q2"], methods, "bm25")
    assert rows[0]["zero_reward_rewrites"] == 0 and rows[0]["ndcg@10"] > 0
    assert rows[1]["problems"] == {"empty": 1, "no_results": 1} and rows[1]["ndcg@10"] == 0.0
