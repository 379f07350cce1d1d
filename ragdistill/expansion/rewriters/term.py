"""The term-selection rewriter (Nogueira & Cho, 2017): the candidate terms of the query's pseudo-relevance feedback,
each added or not by a small policy network (ragdistill.expansion.term_policy), at its relevance-model weight.

Without a policy it keeps every candidate term: the relevance model of the feedback, the untrained expansion the
policy starts from. Feedback documents are weighted by the embedder's cosine with the query (`feedback_weights`
'dense'; DENSE_TEMPERATURE) or by their BM25 scores ('bm25', as RM3). Saved as rewriter.json (settings), policy.pt
(the network's weights) and idf.json (the training corpus's idf of every term: a term the corpus lacks is never
offered, and a term's rarity is one of the policy's features).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json, write_json
from ragdistill.expansion.feedback import DENSE_TEMPERATURE, FeedbackTerms, document_weights, feedback_terms
from ragdistill.expansion.rewriters.base import Feedback, Rewrite, Rewriter, read_record, write_record
from ragdistill.expansion.term_policy import BASE_FEATURES, TermPolicy, new_policy, selected_query, term_features

FEEDBACK_WEIGHTS = ("dense", "bm25")


class TermRewriter(Rewriter):
    kind = "term"
    uses_feedback = True

    def __init__(self, idf: Mapping[str, float], embedder=None, embedder_path: str | None = None,
                 feedback_weights: str = "dense", candidate_terms: int = 20, original_weight: float = 0.5,
                 policy: TermPolicy | None = None, name: str | None = None):
        if feedback_weights not in FEEDBACK_WEIGHTS:
            raise ValueError(f"feedback_weights must be one of {FEEDBACK_WEIGHTS}, got '{feedback_weights}'")
        if feedback_weights == "dense" and embedder is None:
            raise ValueError("dense feedback weights need an embedder")
        self.idf, self.embedder, self.embedder_path = idf, embedder, embedder_path
        self.feedback_weights, self.candidate_terms, self.original_weight = (feedback_weights, candidate_terms,
                                                                             original_weight)
        self.policy = policy
        self.name = name

    @property
    def num_features(self) -> int:
        return len(BASE_FEATURES) + (self.embedder is not None)

    def describe(self) -> str:
        return self.name or ("term policy" if self.policy is not None else
                             f"relevance model, {self.feedback_weights} feedback, all {self.candidate_terms} terms")

    # -- what the policy reads and what it acts on -----------------------------------------------------------
    def candidates(self, queries: Sequence[str], feedback: Sequence[Feedback]
                   ) -> list[tuple[FeedbackTerms, torch.Tensor]]:
        """Each query's candidate terms and their features (terms x features; without a policy, the similarity
        column is left out: nothing reads it)."""
        feedback = self._check_feedback(queries, feedback)
        query_vectors = self._query_vectors(queries, feedback)
        out = []
        for query, fb, vector in zip(queries, feedback, query_vectors):
            if self.feedback_weights == "dense":
                documents = fb.vectors if fb.vectors is not None else self._encode(fb.documents, False)
                weights = document_weights(documents @ vector, DENSE_TEMPERATURE) if len(fb.documents) else []
            else:
                weights = document_weights(fb.scores)
            terms = feedback_terms(query, fb.documents, self.idf, self.candidate_terms, weights)
            similarity = None
            if self.embedder is not None and self.policy is not None:  # a feature: only a policy reads it
                similarity = (self._encode(terms.terms, False) @ vector if terms.terms
                              else np.zeros(0, dtype=np.float32))
            out.append((terms, term_features(terms, similarity)))
        return out

    def apply(self, query: str, terms: FeedbackTerms, mask) -> Rewrite:
        weights = selected_query(query, terms, mask, self.original_weight)
        chosen = [t for t, keep in zip(terms.terms, np.asarray(mask, dtype=bool)) if keep]
        return Rewrite(" ".join([query, *chosen]), weights)

    def choose(self, features: torch.Tensor) -> torch.Tensor:
        if self.policy is None or not len(features):
            return torch.ones(len(features), dtype=torch.bool)
        return self.policy.choose(features)

    def rewrite(self, queries: Sequence[str], feedback: Sequence[Feedback] | None = None) -> list[Rewrite]:
        return [self.apply(query, terms, self.choose(features))
                for query, (terms, features) in zip(queries, self.candidates(queries, feedback))]

    # -- embedding -----------------------------------------------------------------------------------------------
    def _encode(self, texts: Sequence[str], query: bool) -> np.ndarray:
        encode = self.embedder.encode_query if query else self.embedder.encode_document
        return np.asarray(encode(list(texts), normalize_embeddings=True, convert_to_numpy=True), dtype=np.float32)

    def _query_vectors(self, queries: Sequence[str], feedback: Sequence[Feedback]) -> list[np.ndarray | None]:
        if self.embedder is None:
            return [None] * len(queries)
        missing = [i for i, fb in enumerate(feedback) if fb.query_vector is None]
        encoded = dict(zip(missing, self._encode([queries[i] for i in missing], True))) if missing else {}
        return [encoded.get(i, fb.query_vector) for i, fb in enumerate(feedback)]

    # -- files ---------------------------------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike, extra: dict | None = None) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.policy is None:
            raise ValueError("only a trained term policy is saved")
        torch.save(self.policy.state_dict(), folder / "policy.pt")
        write_json(folder / "idf.json", self.idf)
        embedder = self.embedder_path
        if embedder and Path(embedder).is_dir():
            embedder = str(Path(embedder).resolve())  # a local folder stays found from any working directory
        return write_record(folder, {"kind": self.kind, "embedder": embedder,
                                     "feedback_weights": self.feedback_weights,
                                     "candidate_terms": self.candidate_terms,
                                     "original_weight": self.original_weight,
                                     "num_features": self.num_features, "hidden": self.policy.hidden,
                                     **(extra or {})})


def same_model(path: str | None, recorded: str | None) -> bool:
    if not path or not recorded:
        return False
    return (Path(path).resolve() == Path(recorded).resolve() if Path(path).is_dir() and Path(recorded).is_dir()
            else path == recorded)


def load_term_rewriter(folder: str | os.PathLike, embedder=None, untrained: bool = False,
                       embedder_path: str | None = None) -> TermRewriter:
    """A saved term policy (`untrained`: the same network at its seeded start, before training). Its features read
    the embedder it was trained with: `embedder` (loaded from `embedder_path`) is used when it is that model, else
    the recorded one is loaded."""
    folder = Path(folder)
    record = read_record(folder)
    missing = [key for key in ("embedder", "feedback_weights", "candidate_terms", "original_weight", "num_features",
                               "hidden", "seed") if key not in record]
    if missing:
        raise InputError(folder / "rewriter.json", f"a term rewriter's record lacks {', '.join(missing)}")
    if embedder is not None and not same_model(embedder_path, record["embedder"]):
        embedder = None  # the policy reads the embedder it was trained with, not the caller's
    if embedder is None and record["embedder"]:
        from ragdistill.expansion.environment import load_embedder

        embedder = load_embedder(record["embedder"])
    policy = new_policy(record["num_features"], record["hidden"], record["seed"])
    if not untrained:
        policy.load_state_dict(torch.load(folder / "policy.pt", map_location="cpu", weights_only=True))
    return TermRewriter(read_json(folder / "idf.json"), embedder, record["embedder"], record["feedback_weights"],
                        record["candidate_terms"], record["original_weight"], policy.eval(),
                        name=f"term policy, {'untrained' if untrained else 'trained'}")
