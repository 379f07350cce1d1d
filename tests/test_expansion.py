"""Query-Expansion-RL's pieces (groundwork of the module): rewards, pseudo-relevance feedback, RM3, and the
term-selection policy's GRPO-style training on a dense toy reward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragdistill.data.bm25 import BM25
from ragdistill.expansion.feedback import STOPWORDS, FeedbackTerms, feedback_terms, rm3_query
from ragdistill.expansion.reward import ndcg_at_k, recall_at_k, rewrite_problem, teacher_gains
from ragdistill.expansion.term_policy import TermPolicy, term_features, train_policy

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


def test_policy_learns_a_dense_toy_reward():
    """Twelve terms per query, a random third of them 'good' and told apart by one feature; reward: the share of
    good terms among those added, minus the share of bad ones. The untrained policy hits about a third; the last
    steps must gain clearly over the first."""
    rng = np.random.default_rng(0)
    queries = []
    for _ in range(40):
        good = rng.random(12) < 1 / 3
        terms = FeedbackTerms([f"t{i}" for i in range(12)], idf=np.where(good, 8.0, 2.0) + rng.normal(0, 1, 12),
                              frequency=rng.random(12), coverage=rng.random(12), first_rank=rng.random(12))

        def reward(mask, good=torch.tensor(good)):
            return float((mask & good).sum() / max(good.sum(), 1) - (mask & ~good).sum() / max((~good).sum(), 1))

        queries.append((term_features(terms), reward))
    torch.manual_seed(0)
    policy = TermPolicy(4)
    log = train_policy(policy, queries, steps=30, queries_per_step=8, group_size=6, learning_rate=0.05, seed=0,
                       progress=False)
    first, last = log.mean_reward(first=True, count=5), log.mean_reward(first=False, count=5)
    assert last > first + 0.3, (first, last)
    assert all(0.0 <= step["frac_reward_zero_std"] <= 1.0 for step in log.steps)
