"""A retrieval test set: the corpus to index, the queries to run, and the qrels saying which documents answer which.

Two sources, told apart by what `--corpus` names:
- a BEIR folder: corpus.jsonl ({"_id", "title", "text"}), queries.jsonl ({"_id", "text"}), qrels/<split>.tsv
  (query-id, corpus-id, score; header optional). A document's text is "title text". Only queries judged in the
  split are kept.
- MTEB reranking files ({"query", "positive", "negative"}, comma-separated): every passage of every file is pooled
  into one corpus, de-duplicated by exact text. Each query's positives become its qrels (relevance 1); its
  negatives stay in the corpus as hard distractors. A query seen twice (same text) is one query, positives merged.
  `--distractor_files` add the passages of more MTEB files to the corpus, without their queries (a bigger haystack).

Ids are stable across runs: a BEIR document keeps its own id; a pooled passage gets "p" + 16 hex digits of the
SHA-256 of its text; pooled queries are numbered q1, q2, ... in file order. Every document id also maps to a fixed
63-bit integer, its Milvus primary key, so a re-run knows which documents an index already holds.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.cli import split_paths
from ragdistill.core.errors import InputError, SkipCounter
from ragdistill.core.mteb import iter_samples

logger = logging.getLogger(__name__)

MAX_DOC_ID_BYTES = 512  # Milvus VARCHAR field for the document id


@dataclass
class CorpusArguments:
    """Where the corpus, queries and relevance judgements come from (the same for all three stages)."""

    corpus: str = field(default="data/wikiqa/test.jsonl.gz", metadata={
        "help": "A BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), or MTEB reranking files "
                "(comma-separated) whose passages are pooled into one corpus and whose positives become the qrels."})
    split: str = field(default="test", metadata={"help": "BEIR folders: the qrels split (qrels/<split>.tsv)."})
    distractor_files: str | None = field(default=None, metadata={
        "help": "MTEB reranking files (comma-separated) whose passages are added to the corpus, without their "
                "queries: more documents to retrieve from. Also with a BEIR folder."})
    skip_invalid: bool = field(default=False, metadata={
        "help": "Skip invalid rows (counted and reported) instead of stopping at the first one."})


@dataclass
class RetrievalSet:
    documents: dict[str, str]  # doc_id -> text to embed, in corpus order
    queries: dict[str, str]  # qid -> query text; only queries with at least one relevant document
    qrels: dict[str, dict[str, int]]  # qid -> {doc_id: relevance}; relevance > 0 means relevant
    source: str
    details: dict = field(default_factory=dict)
    # qid -> the document a pseudo-query was made from (candidate lists with "source"): a label-free target
    sources: dict[str, str] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """A digest of the documents (ids and texts): two indexes of the same corpus have the same one."""
        digest = hashlib.sha256()
        for doc_id, text in self.documents.items():
            digest.update(doc_id.encode("utf-8") + b"\x00" + text.encode("utf-8") + b"\x01")
        return digest.hexdigest()[:16]

    def summary(self) -> str:
        judgements = sum(sum(1 for rel in docs.values() if rel > 0) for docs in self.qrels.values())
        extra = "".join(f", {key} {value}" for key, value in self.details.items())
        return (f"{self.source}: {len(self.documents):,} documents, {len(self.queries):,} queries, "
                f"{judgements:,} relevant judgements{extra}")


def passage_id(text: str) -> str:
    """The id of a pooled passage: its content, hashed (the same passage gets the same id in every file)."""
    return "p" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def primary_key(doc_id: str) -> int:
    """A fixed non-negative 63-bit integer for a document id (Milvus INT64 primary key)."""
    return int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big") >> 1


def check_primary_keys(doc_ids: Sequence[str], source: str) -> None:
    """Two documents may not share a primary key (a 63-bit hash collision: astronomically rare, but checked)."""
    seen: dict[int, str] = {}
    for doc_id in doc_ids:
        if len(doc_id.encode("utf-8")) > MAX_DOC_ID_BYTES:
            raise InputError(source, f"document id '{doc_id[:40]}...' is longer than {MAX_DOC_ID_BYTES} bytes")
        key = primary_key(doc_id)
        if key in seen and seen[key] != doc_id:
            raise InputError(source, f"document ids '{seen[key]}' and '{doc_id}' hash to the same primary key; "
                                     "rename one of them")
        seen[key] = doc_id


def is_beir_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in ("corpus.jsonl", "corpus.jsonl.gz"))


def _add_distractors(documents: dict[str, str], files: Sequence[str], skips: SkipCounter) -> int:
    added = 0
    for path in files:
        for sample in iter_samples(path, skips):
            for text in sample.candidates:
                doc_id = passage_id(text)
                if doc_id not in documents:
                    documents[doc_id] = text
                    added += 1
    return added


def load_mteb(files: Sequence[str], distractor_files: Sequence[str] = (), skip_invalid: bool = False) -> RetrievalSet:
    """Pool MTEB reranking files into a corpus; positives are the qrels (see the module docstring)."""
    if not files:
        raise InputError(None, "--corpus names no file")
    skips = SkipCounter(skip_invalid)
    documents: dict[str, str] = {}
    queries: dict[str, str] = {}
    qid_of: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    sources: dict[str, str] = {}
    rows = 0
    for path in files:
        if Path(path).is_dir():
            raise InputError(path, "is a folder but not a BEIR folder (no corpus.jsonl in it)")
        for sample in iter_samples(path, skips):
            rows += 1
            qid = qid_of.setdefault(sample.query, f"q{len(qid_of) + 1}")
            queries[qid] = sample.query
            judged = qrels.setdefault(qid, {})
            if not sample.has_labels:  # a candidate list: its passages join the corpus, nothing is judged
                for text in sample.candidates:
                    documents.setdefault(passage_id(text), text)
                if sample.source:
                    sources[qid] = passage_id(sample.source)
                continue
            for text in sample.positive:
                doc_id = passage_id(text)
                documents.setdefault(doc_id, text)
                judged[doc_id] = 1
            for text in sample.negative:
                documents.setdefault(doc_id := passage_id(text), text)
                judged.setdefault(doc_id, 0)  # a passage listed both ways stays a positive
    distractors = _add_distractors(documents, split_paths(list(distractor_files)), skips)
    if skips.total:
        logger.warning(skips.summary())
    source = ",".join(str(path) for path in files)
    check_primary_keys(list(documents), source)
    details = {"rows": rows}
    if distractors:
        details["distractor documents"] = distractors
    return RetrievalSet(documents, queries, qrels, f"MTEB {source}", details, sources)


def load_beir(folder: str | os.PathLike, split: str = "test", distractor_files: Sequence[str] = (),
              skip_invalid: bool = False, with_documents: bool = True) -> RetrievalSet:
    """A BEIR folder's corpus, and the queries judged in qrels/<split>.tsv with their judgements."""
    from ragdistill.data.beir import beir_splits, read_beir_corpus, read_beir_queries, read_qrels

    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.exists():
        raise InputError(qrels_path, f"file does not exist (splits here: {', '.join(beir_splits(folder)) or 'none'})")
    skips = SkipCounter(skip_invalid)
    documents: dict[str, str] = {}
    if with_documents:
        ids, texts = read_beir_corpus(folder)
        documents = dict(zip(ids, texts))
    all_queries = read_beir_queries(folder)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for qid, judged in read_qrels(qrels_path).items():
        first_line = min(line for _, line in judged.values())
        if qid not in all_queries:
            skips.handle(InputError(qrels_path, f"query-id '{qid}' is not in queries.jsonl", first_line))
            continue
        kept = {}
        for doc_id, (relevance, line) in judged.items():
            if with_documents and doc_id not in documents:
                skips.handle(InputError(qrels_path, f"corpus-id '{doc_id}' is not in corpus.jsonl", line))
                continue
            kept[doc_id] = relevance
        if any(relevance > 0 for relevance in kept.values()):
            queries[qid], qrels[qid] = all_queries[qid], kept
    if not queries:
        raise InputError(qrels_path, "no query has a relevant document (score > 0)")
    details = {}
    if with_documents:
        added = _add_distractors(documents, split_paths(list(distractor_files)), skips)
        if added:
            details["distractor documents"] = added
        check_primary_keys(list(documents), str(folder))
    if skips.total:
        logger.warning(skips.summary())
    return RetrievalSet(documents, queries, qrels, f"BEIR {folder} ({split})", details)


def load_retrieval_set(args: CorpusArguments, with_documents: bool = True) -> RetrievalSet:
    """The set `args.corpus` names. `with_documents=False` skips reading a BEIR corpus (search needs queries only)."""
    if is_beir_folder(args.corpus):
        return load_beir(args.corpus, args.split, split_paths(args.distractor_files), args.skip_invalid,
                         with_documents)
    return load_mteb(split_paths(args.corpus), split_paths(args.distractor_files), args.skip_invalid)


def iter_fields(path: str | os.PathLike) -> Iterator[tuple[int, list[str]]]:
    """(line number, whitespace-separated fields) of each non-blank line of a TREC-style text file (qrels, runs);
    a missing file raises InputError."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if fields := line.split():
                yield line_number, fields


def read_qrels_file(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """Qrels from a BEIR tsv (query-id, corpus-id, score) or a TREC qrels file (qid 0 docid relevance)."""
    qrels: dict[str, dict[str, int]] = {}
    for line_number, fields in iter_fields(path):
        if len(fields) not in (3, 4):
            raise InputError(path, f"expected 3 fields (query-id corpus-id score) or 4 (qid 0 docid relevance), "
                                   f"got {len(fields)}", line_number)
        qid, doc_id, relevance = (fields[0], fields[1], fields[2]) if len(fields) == 3 else \
            (fields[0], fields[2], fields[3])
        try:
            value = int(float(relevance))
        except ValueError:
            if line_number == 1:
                continue  # a header line
            raise InputError(path, f"relevance '{relevance}' is not a number", line_number) from None
        qrels.setdefault(qid, {})[doc_id] = value
    if not qrels:
        raise InputError(path, "no judgements in this file")
    return qrels


def write_trec_qrels(path: str | os.PathLike, qrels: dict[str, dict[str, int]]) -> Path:
    """TREC qrels (qid 0 docid relevance), atomically: for trec_eval or any other tool."""
    from ragdistill.core.jsonl import atomic_open

    with atomic_open(path) as handle:
        for qid, judged in qrels.items():
            for doc_id, relevance in judged.items():
                handle.write(f"{qid} 0 {doc_id} {relevance}\n")
    return Path(path)
