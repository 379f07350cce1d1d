"""Prepare reranking data in the MTEB reranking format ({"query", "positive": [...], "negative": [...]} per line).

Two modes:

1. MTEB reranking sets by name (default: stackoverflowdupquestions-reranking and scidocs-reranking, the sets the
   reference results use; any other, e.g. askubuntudupquestions-reranking, by name). Downloads from ModelScope
   (`MTEB/<name>`, default) or the Hugging Face hub (`--source hf`, `mteb/<name>`), reads the `<split>.jsonl.gz`
   files (or parquet files with columns query/positive/negative, as in converted revisions), validates every row
   (errors name file and line), and writes `<output_dir>/<name>/<split>.jsonl`, decompressed, atomically:

       python scripts/prepare_data.py                                   # both default sets, every split
       python scripts/prepare_data.py --datasets askubuntudupquestions-reranking --source hf --splits test

   Without network it fails within seconds (exit 1), naming the data set and the source. A copy laid out like the
   dataset repo (DIR/<name>/test.jsonl.gz, ...) is read with `--from_dir DIR` instead of downloading.

2. A BEIR folder (corpus.jsonl with _id/title/text, queries.jsonl with _id/text, qrels/<split>.tsv with a
   query-id, corpus-id, score header) with `--beir_dir DIR`. A first-stage retriever (`--retriever bm25`, or the
   path or name of a SentenceTransformer) takes the top `--candidates_per_query` documents (default 30) for each
   query; positives are the qrels with score > 0, negatives the retrieved documents that are not positives.
   Queries without a positive, or whose candidates are all positives, are skipped and counted:

       python scripts/prepare_data.py --beir_dir data/nfcorpus --retriever bm25 --candidates_per_query 30

   Without qrels (your corpus and the queries your users type, no labels) the same command writes candidate lists,
   {"query", "candidates": [...]}, mined by the retriever (BM25, the student embedder, or both merged):

       python scripts/prepare_data.py --beir_dir my_docs --queries_file my_docs/train-queries.jsonl \
           --retriever bm25,BAAI/bge-m3 --candidates_per_query 30

   A corpus alone: queries made from its documents, cut from them (`--pseudo_queries crop`) or written by an
   instruct LLM on vLLM (`--pseudo_queries Qwen/Qwen3-4B-Instruct-2507`), each naming its source document:

       python scripts/prepare_data.py --beir_dir my_docs --pseudo_queries crop --queries_per_document 2

Each run prints a table (queries, average positives and negatives per query) and records it, with the source files
and their checksums, in <output_dir>/<name>/prepare_data.json and .md. Bad input exits with status 2.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Literal

from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.data.beir import prepare_beir, prepare_pseudo_queries
from ragdistill.data.datasets import local_dataset_folder, prepare_dataset, text_table
from ragdistill.data.hub import DEFAULT_DATASETS, DownloadError, download_snapshot, repo_id

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    datasets: str = field(default=",".join(DEFAULT_DATASETS), metadata={
        "help": "Comma-separated MTEB reranking sets, by name ('scidocs-reranking', 'mteb/scidocs-reranking') or "
                "as org/name for other repos."})
    splits: str | None = field(default=None, metadata={
        "help": "Comma-separated splits (e.g. 'test' or 'train,test'). Default: every split the data set (or the "
                "BEIR folder's qrels/) has."})
    source: Literal["modelscope", "hf"] = field(default="modelscope", metadata={
        "help": "Where to download from: ModelScope (MTEB/<name>) or the Hugging Face hub (mteb/<name>)."})
    revision: str | None = field(default=None, metadata={
        "help": "Repo revision (branch, tag or commit), e.g. 'refs/convert/parquet' on the Hugging Face hub."})
    from_dir: str | None = field(default=None, metadata={
        "help": "Read local copies instead of downloading: FROM_DIR/<name>/ laid out like the dataset repo "
                "(<split>.jsonl.gz, <split>.jsonl or parquet files)."})
    cache_dir: str | None = field(default=None, metadata={"help": "Download cache; empty: the source's own cache."})
    output_dir: str = field(default="data", metadata={"help": "Writes <output_dir>/<name>/<split>.jsonl."})
    skip_invalid: bool = field(default=False, metadata={"help": "Skip and count invalid rows instead of stopping."})
    connect_timeout: float = field(default=5.0, metadata={
        "help": "Seconds to wait for the source to answer before giving up (no network: fail fast)."})


@dataclass
class BeirArguments:
    beir_dir: str | None = field(default=None, metadata={
        "help": "Convert this BEIR folder instead of downloading: corpus.jsonl (_id, title, text), queries.jsonl "
                "(_id, text), qrels/<split>.tsv (header query-id, corpus-id, score). Positives: qrels with score > 0; "
                "negatives: the retriever's top --candidates_per_query documents that are not positives. Queries "
                "without a positive (or without a negative left) are skipped and counted. A folder without qrels/ "
                "(a corpus and queries, no labels; ids as _id or id) gives candidate lists: see --labels."})
    labels: bool = field(default=True, metadata={
        "help": "false (or a --beir_dir without qrels/): write candidate lists without labels, {query, candidates: "
                "the retriever's top --candidates_per_query}, to <name>/<queries file>-candidates.jsonl, for the "
                "teacher alone to rank. Queries left with fewer than 2 candidates are skipped and counted."})
    queries_file: str | None = field(default=None, metadata={
        "help": "Candidate lists for the queries of this file ({_id or id, text} per line) instead of the folder's "
                "queries.jsonl: e.g. the training queries and the test queries, one run each."})
    retriever: str = field(default="bm25", metadata={
        "help": "First-stage retriever for --beir_dir: 'bm25' (Okapi BM25, k1=0.9, b=0.4), a SentenceTransformer "
                "path or name (cosine similarity), or both comma-separated (e.g. bm25,BAAI/bge-m3: their hits merged, "
                "rank by rank)."})
    candidates_per_query: int = field(default=30, metadata={
        "help": "Documents retrieved per query (--beir_dir); those that are not positives become the negatives."})
    name: str | None = field(default=None, metadata={
        "help": "Output folder name for --beir_dir; empty: the BEIR folder's name."})
    batch_size: int = field(default=64, metadata={"help": "Encoding batch size of a SentenceTransformer retriever."})


@dataclass
class PseudoQueryArguments:
    pseudo_queries: str = field(default="", metadata={
        "help": "A corpus alone (--beir_dir with corpus.jsonl, no queries): make queries from its documents. 'crop': "
                "random spans of each document (inverse cloze / random cropping; CPU, no model); or the path or "
                "name of an instruct LLM that writes them on vLLM (doc2query prompt). Writes "
                "<name>/pseudo-queries-candidates.jsonl: candidate lists naming each query's source document, which "
                "the training stages' round-trip filter checks (the teacher must rank it in its top few)."})
    queries_per_document: int = field(default=1, metadata={"help": "Queries made per document (deduplicated)."})
    max_documents: int = field(default=0, metadata={
        "help": "Make queries from a seeded sample of this many documents (the whole corpus is still searched); "
                "0 = every document."})
    seed: int = field(default=0, metadata={"help": "Seed of the crops, the document sample and the generator."})


def main(argv: list[str] | None = None) -> None:
    data_args, beir_args, pseudo, engine = parse_args(DataArguments, BeirArguments, PseudoQueryArguments,
                                                      VLLMArguments, args=argv)
    splits = split_paths(data_args.splits) or None
    results = []

    if beir_args.beir_dir and pseudo.pseudo_queries:
        # 1. a corpus alone -> queries made from its documents -> candidates from the first-stage retriever
        results += prepare_pseudo_queries(beir_args.beir_dir, data_args.output_dir, pseudo.pseudo_queries,
                                          retriever=beir_args.retriever,
                                          candidates_per_query=beir_args.candidates_per_query, name=beir_args.name,
                                          batch_size=beir_args.batch_size,
                                          queries_per_document=pseudo.queries_per_document,
                                          max_documents=pseudo.max_documents, seed=pseudo.seed, engine=engine)
    elif beir_args.beir_dir:
        # 1. BEIR folder -> candidates from the first-stage retriever -> MTEB rows
        results += prepare_beir(beir_args.beir_dir, data_args.output_dir, retriever=beir_args.retriever,
                                candidates_per_query=beir_args.candidates_per_query, splits=splits,
                                name=beir_args.name, batch_size=beir_args.batch_size,
                                skip_invalid=data_args.skip_invalid, labels=beir_args.labels,
                                queries_file=beir_args.queries_file)
    else:
        names = split_paths(data_args.datasets)
        for name in names:
            # 1. the dataset's files: a local copy, or a download of the wanted splits into the source's cache
            if data_args.from_dir:
                folder = local_dataset_folder(data_args.from_dir, name, single=len(names) == 1)
                provenance = {"source": "local folder", "folder": str(folder)}
            else:
                logger.info(f"{name}: downloading {repo_id(name, data_args.source)} from {data_args.source}")
                try:
                    folder = download_snapshot(name, data_args.source, splits=splits, revision=data_args.revision,
                                               cache_dir=data_args.cache_dir,
                                               connect_timeout=data_args.connect_timeout)
                except DownloadError as error:
                    print(f"error: {error}", file=sys.stderr, flush=True)
                    sys.exit(1)
                provenance = {"source": data_args.source, "repo": repo_id(name, data_args.source),
                              "revision": data_args.revision or "default", "folder": str(folder)}
            # 2. validate every row, write <output_dir>/<name>/<split>.jsonl (atomic), record the provenance
            results += prepare_dataset(name, folder, data_args.output_dir, splits=splits,
                                       skip_invalid=data_args.skip_invalid, provenance=provenance)

    # 3. the counts
    print(text_table(results))
    for counts in results:
        if counts.details:
            print(f"{counts.dataset}/{counts.split}: " + ", ".join(
                f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value:,}"
                for key, value in counts.details.items()))


if __name__ == "__main__":
    run_main(main)
