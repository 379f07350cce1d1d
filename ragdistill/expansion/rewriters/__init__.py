"""Query rewriters, one per file behind one base class (base.Rewriter), and one factory for saved ones:

- rm3.RM3Rewriter: RM3 pseudo-relevance feedback (untrained baseline);
- term.TermRewriter: the term-selection policy (CPU path; without a policy: the relevance model, every term);
- llm.LLMRewriter: an instruct LLM, trained by GRPO (GPU path), or prompted query2doc-style (untrained).
"""

from __future__ import annotations

import os

from ragdistill.core.errors import InputError
from ragdistill.expansion.rewriters.base import Feedback, Rewrite, Rewriter, read_record

KINDS = ("term", "llm")


def load_rewriter(folder: str | os.PathLike, untrained: bool = False, embedder=None,
                  embedder_path: str | None = None) -> Rewriter:
    """The rewriter saved in `folder` by Query-Expansion-RL/train.py (`untrained`: as it was before training;
    `embedder`, loaded from `embedder_path`: reused where the rewriter was trained with that model)."""
    kind = read_record(folder)["kind"]
    if kind == "term":
        from ragdistill.expansion.rewriters.term import load_term_rewriter

        return load_term_rewriter(folder, embedder, untrained, embedder_path)
    if kind == "llm":
        from ragdistill.expansion.rewriters.llm import load_llm_rewriter

        return load_llm_rewriter(folder, untrained)
    raise InputError(folder, f"unknown rewriter kind '{kind}' (expected one of {', '.join(KINDS)})")


__all__ = ["Feedback", "KINDS", "Rewrite", "Rewriter", "load_rewriter"]
