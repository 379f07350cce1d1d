"""Pseudo-relevance feedback: the expansion terms a query's first-stage results offer, and RM3, the classic
untrained expansion (Lavrenko & Croft's relevance model, RM3 as Anserini runs it).

The relevance model: the top feedback documents' term distributions, each document weighted by its share of the
exp-normalised scores (`document_weights`), summed. RM3 takes its `fb_terms` heaviest terms, renormalised, and
interpolates them with the query's own term distribution, `original_weight` x query + (1 - original_weight) x
feedback (`expanded_query`). Defaults are Anserini's (10 documents, 10 terms, 0.5), with the documents weighted by
their BM25 scores. Dense feedback weights the same documents by the student embedder's cosine with the query at a
sharp temperature instead (`DENSE_TEMPERATURE`): the documents that mean what the query means, not only those that
share its words, choose the terms.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragdistill.data.bm25 import tokenize

# Words that carry no topic: never offered as expansion terms (a short English list; queries keep theirs).
STOPWORDS = frozenset(["a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any", "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "you", "your", "yours", "yourself", "yourselves", "also", "one", "two", "may", "many", "much", "would", "could"])


DENSE_TEMPERATURE = 0.05  # cosines of one query's feedback documents differ by hundredths: a sharp softmax


@dataclass
class FeedbackTerms:
    """A query's candidate expansion terms, from its top feedback documents, with what describes each."""

    terms: list[str]
    idf: np.ndarray          # the term's BM25 idf in the corpus
    frequency: np.ndarray    # log(1 + occurrences in the feedback documents)
    coverage: np.ndarray     # share of the feedback documents holding it
    first_rank: np.ndarray   # 1 / (1 + rank of the first feedback document holding it)
    weight: np.ndarray       # its relevance-model weight (the documents' weighted term distributions, summed)


def document_weights(scores: Sequence[float], temperature: float = 1.0) -> np.ndarray:
    """Each feedback document's share of exp(score / temperature): BM25 scores as RM3 takes them (temperature 1),
    or embedder cosines (DENSE_TEMPERATURE)."""
    values = np.asarray(scores, dtype=np.float64) / temperature
    weights = np.exp(values - values.max()) if len(values) else values
    return weights / weights.sum() if len(weights) else weights


def relevance_model(documents: Sequence[str], weights: Sequence[float]) -> Counter:
    """term -> sum over `documents` of the document's weight x the term's share of its words (stopwords and single
    characters left out)."""
    model: Counter = Counter()
    for document, weight in zip(documents, weights):
        tokens = [t for t in tokenize(document) if t not in STOPWORDS and len(t) > 1]
        for token, count in Counter(tokens).items():
            model[token] += weight * count / len(tokens)
    return model


def feedback_terms(query: str, documents: Sequence[str], idf: Mapping[str, float], max_terms: int = 20,
                   weights: Sequence[float] | None = None) -> FeedbackTerms:
    """The `max_terms` heaviest terms of the relevance model of `documents` (best first; `weights`: the documents'
    weights, equal by default) that are not in the query and are known to the corpus (`idf`: term -> idf, as
    BM25.idf_table gives)."""
    weights = np.full(len(documents), 1.0 / max(len(documents), 1)) if weights is None else weights
    if len(weights) != len(documents):
        raise ValueError(f"{len(weights)} weights for {len(documents)} feedback documents")
    model = relevance_model(documents, weights)
    query_tokens = set(tokenize(query))
    terms = [term for term, _ in sorted(model.items(), key=lambda item: (-item[1], item[0]))
             if term not in query_tokens and term in idf][:max_terms]
    counts: Counter = Counter()
    holders: dict[str, list[int]] = {}
    for rank, document in enumerate(documents):
        tokens = tokenize(document)
        counts.update(tokens)
        for token in set(tokens):
            holders.setdefault(token, []).append(rank)
    n = max(len(documents), 1)
    return FeedbackTerms(
        terms=terms,
        idf=np.array([idf[t] for t in terms], dtype=np.float32),
        frequency=np.array([math.log1p(counts[t]) for t in terms], dtype=np.float32),
        coverage=np.array([len(holders[t]) / n for t in terms], dtype=np.float32),
        first_rank=np.array([1.0 / (1 + holders[t][0]) for t in terms], dtype=np.float32),
        weight=np.array([model[t] for t in terms], dtype=np.float32),
    )


def expanded_query(query: str, feedback: dict[str, float], original_weight: float = 0.5) -> dict[str, float]:
    """`original_weight` x the query's term distribution + (1 - original_weight) x `feedback` renormalised (term ->
    weight; an empty feedback leaves the query as it is), for BM25.search_weighted."""
    original = Counter(tokenize(query))
    total = sum(original.values()) or 1
    norm = sum(feedback.values())
    if norm <= 0:
        return {token: count / total for token, count in original.items()}
    expanded = {token: original_weight * count / total for token, count in original.items()}
    for token, value in feedback.items():
        expanded[token] = expanded.get(token, 0.0) + (1.0 - original_weight) * value / norm
    return expanded


def rm3_query(query: str, documents: Sequence[str], scores: Sequence[float], fb_terms: int = 10,
              original_weight: float = 0.5) -> dict[str, float]:
    """The RM3 expansion of `query` as weighted terms (for BM25.search_weighted), from its top feedback
    `documents` and their retrieval `scores`."""
    top = dict(relevance_model(documents, document_weights(scores)).most_common(fb_terms))
    return expanded_query(query, top, original_weight)
