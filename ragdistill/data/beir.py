"""A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) into reranking files: a first-stage retriever
(BM25, any SentenceTransformer, or several, their hits merged) takes the top candidates per query; qrels give the
positives, the other candidates become the negatives. Without qrels (a corpus and the queries users type, no labels)
the candidates are written as candidate lists, {"query", "candidates"}, for the teacher alone to rank."""

from __future__ import annotations

import csv
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.hashing import file_sha256
from ragdistill.core.jsonl import iter_jsonl
from ragdistill.core.mteb import MIN_CANDIDATES, RerankingSample
from ragdistill.data.datasets import SplitCounts, record_provenance, write_samples
from ragdistill.data.hub import short_name

logger = logging.getLogger(__name__)


def _beir_file(beir_dir: Path, stem: str) -> Path:
    for name in (f"{stem}.jsonl", f"{stem}.jsonl.gz"):
        if (beir_dir / name).exists():
            return beir_dir / name
    raise InputError(beir_dir / f"{stem}.jsonl", "file does not exist (a BEIR folder holds corpus.jsonl, "
                                                 "queries.jsonl and qrels/<split>.tsv)")


def _text_field(obj, key: str, path: Path, line: int, required: bool = True) -> str:
    value = obj.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str | int):
        raise InputError(path, f"wrong type: '{key}' must be a string, got {type(value).__name__}", line)
    value = str(value)
    if required and not value.strip():
        raise InputError(path, f"missing or empty '{key}'", line)
    return value


def read_beir_corpus(beir_dir: str | os.PathLike) -> tuple[list[str], list[str]]:
    """(document ids, document texts); a text is 'title text' (BEIR's usual way to feed a document to a model)."""
    path = _beir_file(Path(beir_dir), "corpus")
    ids, texts, seen = [], [], set()
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
        doc_id = _text_field(obj, "_id" if "_id" in obj else "id", path, line)
        if doc_id in seen:
            raise InputError(path, f"duplicate _id '{doc_id}'", line)
        title, text = _text_field(obj, "title", path, line, False), _text_field(obj, "text", path, line, False)
        joined = f"{title.strip()} {text.strip()}".strip()
        if not joined:
            raise InputError(path, f"document '{doc_id}' has neither title nor text", line)
        seen.add(doc_id)
        ids.append(doc_id)
        texts.append(joined)
    return ids, texts


def read_beir_queries(beir_dir: str | os.PathLike, path: str | os.PathLike | None = None) -> dict[str, str]:
    """query id -> text, from the folder's queries.jsonl (or `path`); lines {"_id" (or "id"), "text"}."""
    path = Path(path) if path else _beir_file(Path(beir_dir), "queries")
    if not path.is_file():
        raise InputError(path, "file does not exist")
    queries = {}
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise InputError(path, f"wrong type: expected a JSON object, got {type(obj).__name__}", line)
        query_id = _text_field(obj, "_id" if "_id" in obj else "id", path, line)
        if query_id in queries:
            raise InputError(path, f"duplicate _id '{query_id}'", line)
        queries[query_id] = _text_field(obj, "text", path, line)
    if not queries:
        raise InputError(path, "no queries in the file")
    return queries


def beir_splits(beir_dir: str | os.PathLike) -> list[str]:
    return sorted(path.stem for path in (Path(beir_dir) / "qrels").glob("*.tsv"))


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, tuple[int, int]]]:
    """query id -> {corpus id: (score, line)}; the header line (query-id, corpus-id, score) is skipped."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    qrels: dict[str, dict[str, tuple[int, int]]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for line, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) < 3:
                raise InputError(path, f"expected 3 tab-separated fields (query-id, corpus-id, score), got "
                                       f"{len(fields)}", line)
            query_id, doc_id, score = fields[0].strip(), fields[1].strip(), fields[2].strip()
            try:
                value = int(float(score))
            except ValueError:
                if line == 1:
                    continue  # the header
                raise InputError(path, f"score '{score}' is not a number", line) from None
            qrels.setdefault(query_id, {})[doc_id] = (value, line)
    if not qrels:
        raise InputError(path, "no judgements (expected lines: query-id<TAB>corpus-id<TAB>score)")
    return qrels


class BM25Retriever:
    """First stage by Okapi BM25 over the documents' words (ragdistill.data.bm25)."""

    name = "bm25"

    def __init__(self, documents: Sequence[str]):
        from ragdistill.data.bm25 import BM25

        self.index = BM25(documents)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        hits = []
        for start in tqdm(range(0, len(queries), 256), desc="bm25 search", unit=" batches", leave=False):
            hits += [[doc for doc, _ in row] for row in self.index.search(queries[start:start + 256], k)]
        return hits


class DenseRetriever:
    """First stage by cosine similarity of SentenceTransformer embeddings (the model's query / document prompts
    apply when it defines them, as for Qwen3-Embedding)."""

    def __init__(self, model_path: str, documents: Sequence[str], batch_size: int = 64, device: str | None = None):
        from sentence_transformers import SentenceTransformer

        if model_path.startswith((".", "/", "~")) and not Path(model_path).expanduser().is_dir():
            raise InputError(model_path, "no such model folder (--retriever takes 'bm25' or a SentenceTransformer)")
        self.name = model_path
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(Path(model_path).expanduser()) if Path(model_path).expanduser().is_dir()
                                         else model_path, device=device)
        encode = getattr(self.model, "encode_document", self.model.encode)
        self.documents = encode(list(documents), batch_size=batch_size, convert_to_tensor=True,
                                normalize_embeddings=True, show_progress_bar=True)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        from sentence_transformers.util import dot_score, semantic_search

        encode = getattr(self.model, "encode_query", self.model.encode)
        embedded = encode(list(queries), batch_size=self.batch_size, convert_to_tensor=True,
                          normalize_embeddings=True, show_progress_bar=True)
        hits = semantic_search(embedded, self.documents, top_k=k, score_function=dot_score)
        return [[hit["corpus_id"] for hit in row] for row in hits]


class MergedRetriever:
    """Several first stages at once (e.g. BM25 and the student embedder): their hits taken in turn, best first,
    each document once, so each contributes its best candidates (lexical and semantic misses differ)."""

    def __init__(self, retrievers: Sequence):
        self.retrievers = list(retrievers)
        self.name = "+".join(retriever.name for retriever in self.retrievers)

    def search(self, queries: Sequence[str], k: int) -> list[list[int]]:
        per_retriever = [retriever.search(queries, k) for retriever in self.retrievers]
        merged = []
        for hits in zip(*per_retriever):
            ranked = [doc for rank in zip(*hits) for doc in rank]  # rank 1 of each, then rank 2 of each, ...
            merged.append(list(dict.fromkeys(ranked))[:k])
        return merged


def make_retriever(spec: str, documents: Sequence[str], batch_size: int = 64):
    """'bm25', a SentenceTransformer (local folder or model name), or several of them comma-separated (merged)."""
    parts = [part.strip() for part in spec.split(",") if part.strip()]
    if not parts:
        raise InputError(None, "--retriever is empty: give 'bm25' and/or a SentenceTransformer")
    retrievers = [BM25Retriever(documents) if part.lower() == "bm25" else
                  DenseRetriever(part, documents, batch_size=batch_size) for part in parts]
    return retrievers[0] if len(retrievers) == 1 else MergedRetriever(retrievers)


def mine_candidates(corpus_ids: Sequence[str], corpus_texts: Sequence[str],
                    queries: Sequence[tuple[str, str | None, str | None]], retriever, candidates_per_query: int
                    ) -> tuple[list[RerankingSample], int]:
    """Candidate lists without labels for (query text, the query's own document id or None, the document it was made
    from or None) triples: each query's top `candidates_per_query` documents by the first stage (never the one with
    the query's own id; a text found twice counts once); a source the first stage missed takes the last place (the
    round-trip filter needs it among what the teacher ranks). Nothing is judged here: the teacher ranks the candidates
    in stage 1. Returns the lists and the number of queries skipped with fewer than 2 candidates."""
    hits = retriever.search([text for text, _, _ in queries], candidates_per_query + 1)
    samples, too_few = [], 0
    for (text, own_id, source), found in zip(queries, hits):
        texts = [corpus_texts[doc] for doc in found if corpus_ids[doc] != own_id]
        candidates = list(dict.fromkeys(texts))[:candidates_per_query]
        if source is not None and source not in candidates:
            candidates = candidates[:candidates_per_query - 1] + [source]
        if len(candidates) < MIN_CANDIDATES:
            too_few += 1
            continue
        samples.append(RerankingSample(text, candidates, source=source))
    return samples, too_few


def beir_split_samples(corpus_ids: Sequence[str], corpus_texts: Sequence[str], queries: dict[str, str],
                       qrels_path: Path, retriever, candidates_per_query: int, counts: SplitCounts,
                       skip_invalid: bool = False) -> list[RerankingSample]:
    """MTEB rows for one qrels split: positives from the qrels (score > 0), negatives = the retriever's top
    `candidates_per_query` that are not positives.

    Skipped and counted: queries without a positive judgement, and queries whose candidates are all positives.
    A document with the query's own id is never a candidate (BEIR's rule for duplicate-question sets); a candidate
    whose text equals a positive's (duplicate documents) is dropped rather than labelled both ways.
    """
    skips = SkipCounter(skip_invalid)
    index_of = {doc_id: i for i, doc_id in enumerate(corpus_ids)}
    judged = read_qrels(qrels_path)
    wanted = []  # (query id, query text, positive document indices)
    no_positive = 0
    for query_id, docs in judged.items():
        first_line = min(line for _, line in docs.values())
        if query_id not in queries:
            skips.handle(InputError(qrels_path, f"query-id '{query_id}' is not in queries.jsonl", first_line))
            continue
        positives = []
        for doc_id, (score, line) in docs.items():
            if doc_id not in index_of:
                skips.handle(InputError(qrels_path, f"corpus-id '{doc_id}' is not in corpus.jsonl", line))
                continue
            if score > 0:
                positives.append(index_of[doc_id])
        if positives:
            wanted.append((query_id, queries[query_id], positives))
        else:
            no_positive += 1
    if not wanted:
        raise InputError(qrels_path, "no query has a positive judgement (score > 0) on a document of the corpus")

    # Ask for one more candidate than needed in case the query's own document is among them.
    hits = retriever.search([text for _, text, _ in wanted], candidates_per_query + 1)
    samples, no_negative, recall = [], 0, 0.0
    for (query_id, text, positives), found in zip(wanted, hits):
        candidates = [doc for doc in found if corpus_ids[doc] != query_id][:candidates_per_query]
        positive_set = set(positives)
        recall += len(positive_set.intersection(candidates)) / len(positive_set)
        positive_texts = [corpus_texts[doc] for doc in positives]
        seen = set(positive_texts)
        negatives = []
        for doc in candidates:
            if doc not in positive_set and corpus_texts[doc] not in seen:
                seen.add(corpus_texts[doc])
                negatives.append(corpus_texts[doc])
        if not negatives:
            no_negative += 1
            continue
        samples.append(RerankingSample.labelled(text, positive_texts, negatives))
    counts.skipped = no_positive + no_negative + skips.total
    counts.details.update({
        "queries_judged": len(judged), "skipped_no_positive": no_positive, "skipped_no_negative": no_negative,
        "skipped_invalid": skips.total, f"retriever_recall@{candidates_per_query}": recall / len(wanted),
    })
    if skips.total:
        logger.warning(skips.summary())
    return samples


def prepare_beir(beir_dir: str | os.PathLike, output_dir: str | os.PathLike, retriever: str = "bm25",
                 candidates_per_query: int = 30, splits: Sequence[str] | None = None, name: str | None = None,
                 batch_size: int = 64, skip_invalid: bool = False, labels: bool = True,
                 queries_file: str | os.PathLike | None = None) -> list[SplitCounts]:
    """Convert a BEIR folder into `<output_dir>/<name>/<split>.jsonl` (one file per qrels split), or, without qrels
    (or with `labels` False), into candidate lists `<output_dir>/<name>/<queries file's name>-candidates.jsonl`
    for the queries of `queries_file` (default: the folder's queries.jsonl)."""
    beir_dir = Path(beir_dir)
    if not beir_dir.is_dir():
        raise InputError(beir_dir, "--beir_dir is not a folder")
    if candidates_per_query < 1:
        raise InputError(None, f"--candidates_per_query must be at least 1, got {candidates_per_query}")
    if not labels or not beir_splits(beir_dir):
        if labels:
            logger.info(f"{beir_dir}: no qrels/<split>.tsv: writing candidate lists without labels")
        return _prepare_candidate_lists(beir_dir, output_dir, retriever, candidates_per_query, name, batch_size,
                                        queries_file)
    available = beir_splits(beir_dir)
    wanted = list(splits) if splits else available
    missing = [split for split in wanted if split not in available]
    if missing or not wanted:
        raise InputError(beir_dir / "qrels", f"no qrels file for split(s) {', '.join(missing) or '(any)'} "
                                             f"(found: {', '.join(available) or 'none'})")
    name = name or beir_dir.resolve().name
    corpus_ids, corpus_texts = read_beir_corpus(beir_dir)
    queries = read_beir_queries(beir_dir)
    logger.info(f"{name}: {len(corpus_ids):,} documents, {len(queries):,} queries; indexing with {retriever}")
    first_stage = make_retriever(retriever, corpus_texts, batch_size=batch_size)
    target = Path(output_dir) / short_name(name)
    results = []
    for split in wanted:
        qrels_path = beir_dir / "qrels" / f"{split}.tsv"
        counts = SplitCounts(dataset=short_name(name), split=split, path=str(target / f"{split}.jsonl"),
                             sources=[{"file": str(p), "sha256": file_sha256(p)}
                                      for p in (qrels_path, _beir_file(beir_dir, "corpus"),
                                                _beir_file(beir_dir, "queries"))])
        samples = beir_split_samples(corpus_ids, corpus_texts, queries, qrels_path, first_stage,
                                     candidates_per_query, counts, skip_invalid)
        write_samples(samples, target / f"{split}.jsonl", counts, qrels_path)
        results.append(counts)
    record_provenance(target, results, {"source": "BEIR folder", "folder": str(beir_dir), "retriever": retriever,
                                        "candidates_per_query": candidates_per_query})
    return results


def _prepare_candidate_lists(beir_dir: Path, output_dir: str | os.PathLike, retriever: str, candidates_per_query: int,
                             name: str | None, batch_size: int, queries_file: str | os.PathLike | None
                             ) -> list[SplitCounts]:
    """A corpus and queries without judgements -> candidate lists mined by the first stage (mine_candidates)."""
    name = short_name(name or beir_dir.resolve().name)
    queries_path = Path(queries_file) if queries_file else _beir_file(beir_dir, "queries")
    corpus_ids, corpus_texts = read_beir_corpus(beir_dir)
    queries = read_beir_queries(beir_dir, queries_path)
    logger.info(f"{name}: {len(corpus_ids):,} documents, {len(queries):,} queries; indexing with {retriever}")
    first_stage = make_retriever(retriever, corpus_texts, batch_size=batch_size)
    stem = queries_path.name.split(".jsonl")[0]
    target = Path(output_dir) / name / f"{stem}-candidates.jsonl"
    counts = SplitCounts(dataset=name, split=f"{stem}-candidates", path=str(target),
                         sources=[{"file": str(p), "sha256": file_sha256(p)}
                                  for p in (_beir_file(beir_dir, "corpus"), queries_path)])
    triples = [(text, query_id, None) for query_id, text in queries.items()]
    samples, too_few = mine_candidates(corpus_ids, corpus_texts, triples, first_stage, candidates_per_query)
    counts.skipped = too_few
    counts.details.update({"queries_read": len(queries), "skipped_too_few_candidates": too_few})
    write_samples(samples, target, counts, queries_path)
    record_provenance(target.parent, [counts], {"source": "BEIR folder without labels", "folder": str(beir_dir),
                                                "retriever": retriever, "candidates_per_query": candidates_per_query})
    return [counts]


def prepare_pseudo_queries(beir_dir: str | os.PathLike, output_dir: str | os.PathLike, pseudo_queries: str,
                           retriever: str = "bm25", candidates_per_query: int = 30, name: str | None = None,
                           batch_size: int = 64, queries_per_document: int = 1, max_documents: int = 0,
                           seed: int = 0, engine=None) -> list[SplitCounts]:
    """A corpus alone -> queries made from its documents (`pseudo_queries`: 'crop', or the path or name of an
    instruct LLM run on vLLM with `engine`, ragdistill.core.vllm_engine.VLLMArguments) -> candidate lists mined by
    the first stage, each naming its source document (one of its candidates), at
    `<output_dir>/<name>/pseudo-queries-candidates.jsonl`. `max_documents` > 0: queries from a seeded sample of that
    many documents (the whole corpus is still searched)."""
    from ragdistill.data.pseudo_queries import cropped_queries, generated_queries

    beir_dir = Path(beir_dir)
    if not beir_dir.is_dir():
        raise InputError(beir_dir, "--beir_dir is not a folder")
    if candidates_per_query < MIN_CANDIDATES or queries_per_document < 1:
        raise InputError(None, f"--candidates_per_query must be at least {MIN_CANDIDATES} and "
                               f"--queries_per_document at least 1")
    name = short_name(name or beir_dir.resolve().name)
    corpus_ids, corpus_texts = read_beir_corpus(beir_dir)
    chosen = sorted(random.Random(seed).sample(range(len(corpus_texts)), max_documents)) \
        if 0 < max_documents < len(corpus_texts) else list(range(len(corpus_texts)))
    documents = [corpus_texts[i] for i in chosen]
    dropped = 0
    if pseudo_queries == "crop":
        made = cropped_queries(documents, queries_per_document, seed)
    else:
        from ragdistill.core.vllm_engine import VLLMArguments, start_engine, stop_engine

        llm = start_engine(pseudo_queries, engine or VLLMArguments(), runner="generate", seed=seed)
        try:
            made, dropped = generated_queries(llm, documents, queries_per_document)
        finally:
            stop_engine(llm)
    if not made:
        raise InputError(beir_dir, f"no query could be made from its {len(documents)} documents ({pseudo_queries})")
    logger.info(f"{name}: {len(made):,} queries made from {len(documents):,} documents ({pseudo_queries}; "
                f"{dropped} generations dropped); indexing {len(corpus_texts):,} documents with {retriever}")
    first_stage = make_retriever(retriever, corpus_texts, batch_size=batch_size)
    triples = [(text, None, documents[index]) for index, text in made]
    samples, too_few = mine_candidates(corpus_ids, corpus_texts, triples, first_stage, candidates_per_query)
    target = Path(output_dir) / name / "pseudo-queries-candidates.jsonl"
    counts = SplitCounts(dataset=name, split="pseudo-queries-candidates", path=str(target),
                         sources=[{"file": str(_beir_file(beir_dir, "corpus")),
                                   "sha256": file_sha256(_beir_file(beir_dir, "corpus"))}])
    counts.skipped = too_few + dropped
    counts.details.update({"documents_used": len(documents), "queries_made": len(made),
                           "generations_dropped": dropped})
    write_samples(samples, target, counts, beir_dir)
    record_provenance(target.parent, [counts], {"source": "corpus alone, pseudo-queries", "folder": str(beir_dir),
                                                "pseudo_queries": pseudo_queries, "retriever": retriever,
                                                "candidates_per_query": candidates_per_query, "seed": seed})
    return [counts]
