"""The environment a query rewriter acts in, shared by its training and its evaluation: a corpus; a first stage
that retrieves from it (BM25, or the student embedder by exact search); each query's pseudo-relevance feedback (its
top BM25 documents); and the grading of a retrieved list:

- by the labels (qrels, the positives of reranking files) where the queries have them;
- label-free, by the teacher's scores of the retrieved documents against the ORIGINAL query (never the rewrite: a
  policy must not choose its own judge's question), scaled to [0, 1] over the pool of every list graded together
  (one query's group of rewrites, or one query's row of methods), so their NDCG@k compare;
- label-free, by the round trip: a pseudo-query made from a document (scripts/prepare_data.py --pseudo_queries)
  should find that document (gain 1, the rest 0).

Inputs: whatever Milvus-Optimization reads (ragdistill.retrieval.corpus: MTEB reranking files or candidate lists
pooled into a corpus, a BEIR folder), and a BEIR folder without qrels (a corpus and the queries users type).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError
from ragdistill.data.bm25 import BM25
from ragdistill.expansion.reward import MAX_REWRITE_WORDS, ndcg_at_k, recall_at_k, unit_scaled
from ragdistill.expansion.rewriters.base import Feedback, Rewrite
from ragdistill.retrieval.corpus import CorpusArguments, RetrievalSet, is_beir_folder, load_retrieval_set

logger = logging.getLogger(__name__)

FIRST_STAGES = ("bm25", "dense")
GRADINGS = ("auto", "labels", "round_trip", "teacher")


@dataclass
class EnvironmentArguments:
    """The first stage, the feedback and the grading (the same for training and evaluation)."""

    embedder: str | None = field(default=None, metadata={
        "help": "The student embedder (Embedding-Distillation's model): the dense first stage, the feedback "
                "documents' weights and a feature of each candidate term. Unset: BM25 only."})
    first_stage: str = field(default="bm25", metadata={
        "help": "The first stage whose retrieval rewards the rewriter: bm25 or dense (the embedder, exact search).",
        "choices": list(FIRST_STAGES)})
    feedback_documents: int = field(default=10, metadata={
        "help": "Top BM25 documents per query that offer expansion terms (RM3's and the term policy's feedback)."})
    reward_k: int = field(default=10, metadata={"help": "The reward is NDCG@k of the retrieved list."})
    grading: str = field(default="auto", metadata={
        "help": "labels (qrels / positives); round_trip (label-free: a pseudo-query's own source document, from "
                "candidate lists with 'source'); teacher (label-free: --teacher_model scores the retrieved documents "
                "against the original query); auto: labels where the queries have any, else round_trip where they "
                "name sources, else teacher.",
        "choices": list(GRADINGS)})
    max_rewrite_words: int = field(default=MAX_REWRITE_WORDS, metadata={
        "help": "A rewrite longer than this earns a counted zero."})
    max_queries: int = field(default=0, metadata={"help": "Use only the first N queries (0 = all)."})
    cache_dir: str = field(default="output/query_expansion/cache", metadata={
        "help": "Where the embedder's corpus vectors are cached (both stages read one cache; a retrained embedder "
                "in the same folder gets new ones)."})

    def __post_init__(self):
        check_choices(self)
        if self.first_stage == "dense" and not self.embedder:
            raise InputError(None, "--first_stage dense needs --embedder")
        for name in ("feedback_documents", "reward_k", "max_rewrite_words"):
            if getattr(self, name) < 1:
                raise InputError(None, f"--{name} must be at least 1, got {getattr(self, name)}")


def load_embedder(path: str):
    """A SentenceTransformer, on the GPU where there is one."""
    from sentence_transformers import SentenceTransformer

    from ragdistill.core.hardware import default_device

    return SentenceTransformer(path, device=default_device())


def load_queries(args: CorpusArguments) -> RetrievalSet:
    """The corpus and the queries `args` name: any retrieval set, or a BEIR folder without qrels/<split>.tsv (its
    every query, no judgements)."""
    qrels = Path(args.corpus) / "qrels" / f"{args.split}.tsv"
    if is_beir_folder(args.corpus) and not qrels.exists():
        from ragdistill.data.beir import read_beir_corpus, read_beir_queries

        ids, texts = read_beir_corpus(args.corpus)  # a repeated id is refused there, with its line
        queries = read_beir_queries(args.corpus)
        if not queries:
            raise InputError(Path(args.corpus) / "queries.jsonl", "no queries")
        return RetrievalSet(dict(zip(ids, texts)), dict(queries), {}, f"BEIR {args.corpus} (no qrels)")
    return load_retrieval_set(args)


def labelled(retrieval_set: RetrievalSet) -> list[str]:
    """The query ids with at least one relevant document."""
    return [qid for qid in retrieval_set.queries
            if any(rel > 0 for rel in retrieval_set.qrels.get(qid, {}).values())]


def gradable(retrieval_set: RetrievalSet, grading: str) -> list[str]:
    """The query ids a grading can grade: with a relevant document (labels), naming a source (round_trip), all."""
    if grading == "labels":
        return labelled(retrieval_set)
    if grading == "round_trip":
        return [qid for qid in retrieval_set.queries if qid in retrieval_set.sources]
    return list(retrieval_set.queries)


def resolve_grading(grading: str, retrieval_set: RetrievalSet, teacher_model: str | None) -> str:
    if grading == "auto":
        grading = ("labels" if labelled(retrieval_set) else "round_trip" if retrieval_set.sources else "teacher")
    if grading == "labels" and not labelled(retrieval_set):
        raise InputError(retrieval_set.source, "--grading labels: no query has a relevant document")
    if grading == "round_trip" and not retrieval_set.sources:
        raise InputError(retrieval_set.source, "--grading round_trip: no query names its source document "
                                               "(candidate lists with 'source', as prepare_data.py --pseudo_queries "
                                               "writes them)")
    if grading == "teacher" and not teacher_model:
        raise InputError(retrieval_set.source, "label-free grading needs --teacher_model (no query has a label)")
    return grading


def model_signature(model: str) -> str:
    """A model's identity for caches: for a local folder its path and every file's size and modification time (a
    model retrained into the same folder is another model), else its name."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "checkpoint-" not in str(p.relative_to(folder)))
    return "\n".join([str(folder.resolve())] + [f"{p.relative_to(folder)} {p.stat().st_size} {p.stat().st_mtime_ns}"
                                                  for p in files])


class RetrievalEnvironment:
    """A corpus with its BM25 index and, given an embedder, its vectors (cached in `cache_dir`)."""

    def __init__(self, documents: dict[str, str], embedder=None, embedder_path: str | None = None,
                 cache_dir: str | os.PathLike | None = None):
        if not documents:
            raise InputError(None, "the corpus is empty")
        self.doc_ids = list(documents)
        self.texts = list(documents.values())
        self.bm25 = BM25(self.texts)
        self.idf = self.bm25.idf_table()
        self.embedder = embedder
        self.vectors = None
        if embedder is not None:
            self.vectors = self._corpus_vectors(embedder_path or "embedder", cache_dir)

    def _corpus_vectors(self, name: str, cache_dir) -> np.ndarray:
        """The documents' vectors, cached under a digest of the model and the corpus as a set (the training and the
        test stage pool the same passages in another order: they share one cache)."""
        order = sorted(range(len(self.doc_ids)), key=lambda i: self.doc_ids[i])
        digest = hashlib.sha256(model_signature(name).encode())
        for i in order:
            digest.update(self.doc_ids[i].encode() + b"\0" + self.texts[i].encode() + b"\1")
        cache = Path(cache_dir) / f"corpus-vectors-{digest.hexdigest()[:16]}.npy" if cache_dir else None
        if cache is not None and cache.exists():
            vectors = np.empty_like(stored := np.load(cache))
            vectors[order] = stored
            return vectors
        logger.info("embedding the corpus (%d documents) with %s", len(self.texts), name)
        vectors = np.asarray(self.embedder.encode_document(self.texts, batch_size=64, normalize_embeddings=True,
                                                           convert_to_numpy=True, show_progress_bar=True),
                             dtype=np.float32)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(cache.name + ".partial.npy")
            np.save(partial, vectors[order])
            os.replace(partial, cache)  # a crash leaves no cache that looks whole
        return vectors

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.embedder.encode_query(list(texts), batch_size=64, normalize_embeddings=True,
                                                     convert_to_numpy=True), dtype=np.float32)

    def search(self, rewrites: Sequence[Rewrite | str], k: int, first_stage: str = "bm25"
               ) -> list[list[tuple[int, float]]]:
        """Top-k (document index, score) per query; a Rewrite with a problem retrieves nothing."""
        rewrites = [r if isinstance(r, Rewrite) else Rewrite(r) for r in rewrites]
        usable = [i for i, r in enumerate(rewrites) if r.problem is None and r.text.strip()]
        results: list[list[tuple[int, float]]] = [[] for _ in rewrites]
        if not usable:
            return results
        if first_stage == "bm25":
            weighted = [i for i in usable if rewrites[i].weights is not None]
            plain = [i for i in usable if rewrites[i].weights is None]
            for indices, found in ((weighted, self.bm25.search_weighted([rewrites[i].weights for i in weighted], k)
                                    if weighted else []),
                                   (plain, self.bm25.search([rewrites[i].text for i in plain], k) if plain else [])):
                for i, hits in zip(indices, found):
                    results[i] = hits
            return results
        if self.vectors is None:
            raise InputError(None, "the dense first stage needs --embedder")
        scores = self.encode_queries([rewrites[i].text for i in usable]) @ self.vectors.T
        k = min(k, len(self.texts))
        for i, row in zip(usable, scores):
            top = np.argsort(-row, kind="stable")[:k]  # by score, ties (duplicate passages) by document index
            results[i] = [(int(d), float(row[d])) for d in top]
        return results

    def feedback(self, queries: Sequence[str], documents: int, query_vectors: np.ndarray | None = None
                 ) -> list[Feedback]:
        """Each query's top `documents` BM25 documents, with their vectors and the query's where embedded."""
        if query_vectors is None and self.vectors is not None:
            query_vectors = self.encode_queries(queries)
        out = []
        for i, hits in enumerate(self.bm25.search(list(queries), documents)):
            ids = [d for d, _ in hits]
            out.append(Feedback([self.texts[d] for d in ids], [s for _, s in hits],
                                None if self.vectors is None else self.vectors[ids],
                                None if query_vectors is None else query_vectors[i]))
        return out


def open_environment(corpus_args: CorpusArguments, env_args: EnvironmentArguments, check=None) -> tuple[RetrievalSet, RetrievalEnvironment]:
    """The retrieval set `corpus_args` name and its environment (the embedder's corpus vectors cached in
    --cache_dir), as both stages open them; `check(retrieval_set)` runs before the corpus is embedded (a stage
    refuses bad input before minutes of work)."""
    retrieval_set = load_queries(corpus_args)
    if check is not None:
        check(retrieval_set)
    embedder = load_embedder(env_args.embedder) if env_args.embedder else None
    environment = RetrievalEnvironment(retrieval_set.documents, embedder, env_args.embedder,
                                       cache_dir=env_args.cache_dir)
    return retrieval_set, environment


class Grader:
    """NDCG@k (and, with labels, Recall@k) of retrieved lists of document indices, for one query at a time."""

    def __init__(self, environment: RetrievalEnvironment, retrieval_set: RetrievalSet, grading: str, teacher=None):
        if grading == "teacher" and teacher is None:
            raise ValueError("teacher grading needs a teacher")
        self.environment, self.retrieval_set, self.grading, self.teacher = environment, retrieval_set, grading, teacher
        self.position = {doc_id: i for i, doc_id in enumerate(environment.doc_ids)}
        self.teacher_scores: dict[tuple[str, int], float] = {}  # (qid, document index) -> raw teacher score

    def gains(self, qid: str, pool: Sequence[int]) -> dict[int, float]:
        """Document index -> gain: its label, or its teacher score scaled to [0, 1] over `pool`."""
        if self.grading == "labels":
            return {self.position[d]: float(rel) for d, rel in self.retrieval_set.qrels.get(qid, {}).items()
                    if rel > 0 and d in self.position}
        if self.grading == "round_trip":
            source = self.retrieval_set.sources.get(qid)
            return {self.position[source]: 1.0} if source in self.position else {}
        pool = sorted(set(pool))
        missing = [d for d in pool if (qid, d) not in self.teacher_scores]
        if missing:
            query = self.retrieval_set.queries[qid]
            scored = self.teacher.score([(query, self.environment.texts[d]) for d in missing]).scores
            self.teacher_scores.update({(qid, d): float(s) for d, s in zip(missing, scored)})
        if not pool:
            return {}
        return dict(zip(pool, unit_scaled([self.teacher_scores[(qid, d)] for d in pool]).tolist()))

    def ndcg(self, qid: str, lists: Sequence[Sequence[int]], k: int) -> list[float]:
        """NDCG@k of each list of document indices, all graded on one pool (their top k documents together)."""
        gains = self.gains(qid, [d for ranked in lists for d in ranked[:k]])
        named = {str(d): g for d, g in gains.items()}
        return [ndcg_at_k([str(d) for d in ranked], named, k) for ranked in lists]

    def recall(self, qid: str, ranked: Sequence[int], k: int) -> float | None:
        """Recall@k by the labels or the source (None when grading is by the teacher: it judges only what was
        retrieved)."""
        if self.grading == "teacher":
            return None
        return recall_at_k([str(d) for d in ranked], {str(d): g for d, g in self.gains(qid, []).items()}, k)
