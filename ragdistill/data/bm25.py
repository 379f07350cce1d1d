"""Okapi BM25, vectorised with sparse matrices: a first-stage retriever that needs no model.

score(q, d) = sum over query tokens t of  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))
idf(t)      = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))     (Lucene's form: never negative)

A query token that repeats counts once per occurrence, as in Lucene and rank_bm25. Defaults k1=0.9, b=0.4 are
Anserini's / Pyserini's BM25 settings, the usual baseline on BEIR.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import sparse

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (letters, digits, underscore; any script)."""
    return _TOKEN.findall(text.lower())


class BM25:
    """Index a corpus once, then score or search many queries at a time.

    The index is a documents x vocabulary sparse matrix holding each (document, term) pair's BM25 weight, so scoring
    a batch of queries is one sparse matrix product.
    """

    def __init__(self, documents: Sequence[str], k1: float = 0.9, b: float = 0.4):
        if not documents:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b = k1, b
        self.vocabulary: dict[str, int] = {}
        rows, cols, lengths = [], [], []
        for doc_id, text in enumerate(documents):
            tokens = tokenize(text)
            lengths.append(len(tokens))
            for token in tokens:
                cols.append(self.vocabulary.setdefault(token, len(self.vocabulary)))
            rows.extend([doc_id] * len(tokens))
        shape = (len(documents), max(len(self.vocabulary), 1))
        # Duplicate (row, col) entries are summed on conversion: term frequencies.
        tf = sparse.coo_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape).tocsr()
        tf.sum_duplicates()
        doc_lengths = np.asarray(lengths, dtype=np.float32)
        avgdl = float(doc_lengths.mean()) or 1.0
        df = np.bincount(tf.indices, minlength=shape[1]).astype(np.float32)
        n_docs = float(shape[0])
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        # Per-entry weight: idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl)).
        row_of_entry = np.repeat(np.arange(shape[0]), np.diff(tf.indptr))
        norm = k1 * (1.0 - b + b * doc_lengths[row_of_entry] / avgdl)
        weights = self.idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + norm)
        self.weights = sparse.csr_matrix((weights.astype(np.float32), tf.indices, tf.indptr), shape=shape)
        self.num_documents = shape[0]

    def idf_table(self) -> dict[str, float]:
        """term -> its idf, for every term of the corpus (what a term's rarity tells without the index)."""
        return {term: float(self.idf[column]) for term, column in self.vocabulary.items()}

    def _query_matrix(self, queries: Sequence[str]) -> sparse.csr_matrix:
        rows, cols = [], []
        for query_id, text in enumerate(queries):
            for token in tokenize(text):
                column = self.vocabulary.get(token)
                if column is not None:  # a word no document has adds nothing to any score
                    rows.append(query_id)
                    cols.append(column)
        shape = (len(queries), self.weights.shape[1])
        return sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), (rows, cols)), shape=shape)

    def weighted_scores(self, queries: Sequence[dict[str, float]]) -> np.ndarray:
        """Dense (queries x documents) scores of weighted queries, {token: weight} each (RM3's expanded queries):
        sum over tokens of weight x the token's BM25 term score."""
        rows, cols, values = [], [], []
        for query_id, terms in enumerate(queries):
            for token, weight in terms.items():
                column = self.vocabulary.get(token)
                if column is not None and weight:
                    rows.append(query_id)
                    cols.append(column)
                    values.append(weight)
        matrix = sparse.csr_matrix((np.asarray(values, dtype=np.float32), (rows, cols)),
                                   shape=(len(queries), self.weights.shape[1]))
        return np.asarray((matrix @ self.weights.T).todense(), dtype=np.float32)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """Dense (queries x documents) BM25 scores."""
        return np.asarray((self._query_matrix(queries) @ self.weights.T).todense(), dtype=np.float32)

    def search(self, queries: Sequence[str], k: int, batch_size: int | None = None) -> list[list[tuple[int, float]]]:
        """Top-k (document index, score) per query, best first; ties broken by lower document index.

        Documents sharing no word with the query (score 0) are never returned, so a list may hold fewer than k.
        Queries are scored in batches sized to keep the dense score block near 256 MB.
        """
        return self._search(self.scores, queries, k, batch_size)

    def search_weighted(self, queries: Sequence[dict[str, float]], k: int, batch_size: int | None = None
                        ) -> list[list[tuple[int, float]]]:
        """search() for weighted queries ({token: weight} each, as weighted_scores takes them)."""
        return self._search(self.weighted_scores, queries, k, batch_size)

    def _search(self, score, queries: Sequence, k: int, batch_size: int | None) -> list[list[tuple[int, float]]]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(k, self.num_documents)
        batch_size = batch_size or max(1, (1 << 26) // self.num_documents)
        results: list[list[tuple[int, float]]] = []
        for start in range(0, len(queries), batch_size):
            for row in score(queries[start:start + batch_size]):
                # The k-th best score in linear time; then everything above it and, among equals at the cut, the
                # lowest document indices: deterministic, unlike argpartition's choice among ties.
                kth = np.partition(row, self.num_documents - k)[self.num_documents - k]
                above = np.flatnonzero(row > kth)
                tied = np.flatnonzero(row == kth)[: k - len(above)]
                candidates = np.concatenate([above, tied])
                candidates = candidates[np.argsort(-row[candidates], kind="stable")]
                results.append([(int(i), float(row[i])) for i in candidates if row[i] > 0])
        return results
