"""Stage 3: retrieval chains side by side: Recall@10, Recall@100, NDCG@10 and MRR@10 from the qrels, p50 / p95
query latency, and the index size (vectors x dim x 4 bytes, and the Milvus Lite folder when local).

Each chain is a run written by search.py (its latency lines and metadata sit beside it), or any TREC run with a
latency file. Prints the table, saves it as JSON and Markdown, and a PNG of NDCG@10 against p95 latency.

    python evaluation.py --corpus data/wikiqa/test.jsonl.gz --output_dir output/milvus \
        --chains student=output/milvus/runs/student.trec,teacher+reranker=output/milvus/runs/teacher_rr.trec \
        --reference teacher+reranker
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set, read_qrels_file
from ragdistill.retrieval.evaluation import evaluate_chain, parse_chains, save_results

logger = logging.getLogger(__name__)


@dataclass
class EvaluationArguments:
    chains: str = field(default="", metadata={
        "help": "Chains to compare, comma-separated name=run pairs, e.g. 'student=runs/student.trec,"
                "teacher=runs/teacher.trec'. A bare path is named after its file."})
    latency_files: str | None = field(default=None, metadata={
        "help": "Latency files (comma-separated, one per chain, same order). Default: <run>.latency.jsonl."})
    qrels: str | None = field(default=None, metadata={
        "help": "Qrels file (BEIR tsv or TREC qrels) instead of the ones --corpus gives."})
    reference: str | None = field(default=None, metadata={
        "help": "Chain the others are compared with (NDCG@10 relative to it, p95 speed-up), e.g. the teacher's."})
    output_dir: str = field(default="output/milvus", metadata={
        "help": "Where retrieval_chains.json / .md / .png go."})
    title: str = field(default="Retrieval chains on Milvus", metadata={"help": "Table title."})


def main(argv: list[str] | None = None) -> None:
    corpus_args, args = parse_args(CorpusArguments, EvaluationArguments, args=argv)

    # 1. chains and their files
    chains = parse_chains(args.chains)
    latency_files = split_paths(args.latency_files)
    if latency_files and len(latency_files) != len(chains):
        raise InputError(None, f"--latency_files has {len(latency_files)} files for {len(chains)} chains")

    # 2. qrels
    if args.qrels:
        qrels, source = read_qrels_file(args.qrels), args.qrels
    else:
        retrieval_set = load_retrieval_set(corpus_args, with_documents=False)
        qrels, source = retrieval_set.qrels, retrieval_set.source
    logger.info(f"qrels: {source} ({len(qrels):,} queries)")

    # 3. metrics, latency and index size per chain
    results = [evaluate_chain(name, path, qrels, latency_files[i] if latency_files else None)
               for i, (name, path) in enumerate(chains)]

    # 4. table (printed), JSON, Markdown, PNG
    save_results(results, args.output_dir, args.title, args.reference, extra={"qrels": source})


if __name__ == "__main__":
    run_main(main)
