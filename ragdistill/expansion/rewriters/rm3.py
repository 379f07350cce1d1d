"""RM3, the classic untrained expansion: the query's first-stage feedback documents, weighted by their BM25 scores,
give a relevance model whose heaviest terms join the query (ragdistill.expansion.feedback.rm3_query)."""

from __future__ import annotations

from collections.abc import Sequence

from ragdistill.expansion.feedback import rm3_query
from ragdistill.expansion.rewriters.base import Feedback, Rewrite, Rewriter

# Anserini's RM3 defaults: 10 feedback documents (the environment's feedback_documents), 10 terms, 0.5.
RM3_TERMS, RM3_ORIGINAL_WEIGHT = 10, 0.5


class RM3Rewriter(Rewriter):
    kind = "rm3"
    uses_feedback = True

    def __init__(self, fb_terms: int = RM3_TERMS, original_weight: float = RM3_ORIGINAL_WEIGHT):
        self.fb_terms, self.original_weight = fb_terms, original_weight

    def describe(self) -> str:
        return f"RM3 ({self.fb_terms} terms, {self.original_weight})"

    def rewrite(self, queries: Sequence[str], feedback: Sequence[Feedback] | None = None) -> list[Rewrite]:
        rewrites = []
        for query, fb in zip(queries, self._check_feedback(queries, feedback)):
            weights = rm3_query(query, fb.documents, fb.scores, self.fb_terms, self.original_weight)
            rewrites.append(Rewrite(" ".join(weights), weights))
        return rewrites
