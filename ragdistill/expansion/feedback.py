"""Pseudo-relevance feedback: the expansion terms a query's first-stage results offer, and RM3, the classic
untrained expansion (Lavrenko & Croft's relevance model, RM3 as Anserini runs it).

RM3: the top `fb_docs` documents' term distributions, weighted by each document's share of their (exp-normalised)
retrieval scores, give a feedback model; its `fb_terms` heaviest terms, renormalised, are interpolated with the
query's own term distribution, `original_weight` x query + (1 - original_weight) x feedback. Defaults are
Anserini's (10 documents, 10 terms, 0.5).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ragdistill.data.bm25 import BM25, tokenize

# Words that carry no topic: never offered as expansion terms (a short English list; queries keep theirs).
STOPWORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "you", "your", "yours", "yourself", "yourselves", "also", "one", "two", "may", "many", "much", "would", "could"])


@dataclass
class FeedbackTerms:
    """A query's candidate expansion terms, from its top feedback documents, with what describes each."""

    terms: list[str]
    idf: np.ndarray          # the term's BM25 idf in the corpus
    frequency: np.ndarray    # log(1 + occurrences in the feedback documents)
    coverage: np.ndarray     # share of the feedback documents holding it
    first_rank: np.ndarray   # 1 / (1 + rank of the first feedback document holding it)


def feedback_terms(query: str, documents: Sequence[str], bm25: BM25, max_terms: int = 20) -> FeedbackTerms:
    """The `max_terms` most frequent words of `documents` (best first) that are neither stopwords, nor single
    characters, nor in the query, nor unknown to the corpus."""
    query_tokens = set(tokenize(query))
    counts: Counter = Counter()
    holders: dict[str, list[int]] = {}
    for rank, document in enumerate(documents):
        tokens = [t for t in tokenize(document) if t not in STOPWORDS and len(t) > 1 and t not in query_tokens
                  and t in bm25.vocabulary]
        counts.update(tokens)
        for token in set(tokens):
            holders.setdefault(token, []).append(rank)
    terms = [term for term, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_terms]]
    n = max(len(documents), 1)
    return FeedbackTerms(
        terms=terms,
        idf=np.array([bm25.idf[bm25.vocabulary[t]] for t in terms], dtype=np.float32),
        frequency=np.array([math.log1p(counts[t]) for t in terms], dtype=np.float32),
        coverage=np.array([len(holders[t]) / n for t in terms], dtype=np.float32),
        first_rank=np.array([1.0 / (1 + holders[t][0]) for t in terms], dtype=np.float32),
    )


def rm3_query(query: str, documents: Sequence[str], scores: Sequence[float], fb_terms: int = 10,
              original_weight: float = 0.5) -> dict[str, float]:
    """The RM3 expansion of `query` as weighted terms (for BM25.search_weighted), from its top feedback
    `documents` and their retrieval `scores`."""
    original = Counter(tokenize(query))
    total = sum(original.values()) or 1
    weights = np.exp(np.asarray(scores, dtype=np.float64) - max(scores, default=0.0))
    weights = weights / weights.sum() if len(weights) else weights
    feedback: Counter = Counter()
    for document, weight in zip(documents, weights):
        tokens = [t for t in tokenize(document) if t not in STOPWORDS and len(t) > 1]
        for token, count in Counter(tokens).items():
            feedback[token] += weight * count / len(tokens)
    top = dict(feedback.most_common(fb_terms))
    norm = sum(top.values()) or 1.0
    expanded = {token: original_weight * count / total for token, count in original.items()}
    for token, value in top.items():
        expanded[token] = expanded.get(token, 0.0) + (1.0 - original_weight) * value / norm
    return expanded
