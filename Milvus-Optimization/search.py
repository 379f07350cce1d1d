"""Stage 2: run the queries through a retrieval chain: embed, search Milvus, optionally rerank with a CrossEncoder.

The query encoder is the one the collection records (or a copy of it; another model is refused). Each query runs
alone, as in serving, and is timed step by step. Writes the run in TREC format (`qid Q0 docid rank score tag`),
the per-query latency as JSON lines (embed / search / retrieve / rerank / total ms) and the chain's metadata
(index size included) beside the run.

    python search.py --corpus data/wikiqa/test.jsonl.gz --milvus_uri output/milvus/milvus.db \
        --collection bge_m3 --top_k 100 --output_run output/milvus/runs/student.trec
    python search.py ... --reranker BAAI/bge-reranker-v2-m3 --rerank_top_k 50 --output_run .../student_rr.trec
    python search.py ... --rewriter output/query_expansion/rewriter --output_run .../student_rewritten.trec
    python search.py ... --encoder_backend onnx --reranker output/reranker/model --reranker_backend onnx \
        --reranker_file onnx/model_qint8_avx512_vnni.onnx --output_run .../student_rr_int8.trec

The query encoder and a CrossEncoder reranker run on PyTorch, or as exported by the export stages (export.sh):
--encoder_backend / --reranker_backend onnx | openvino with --encoder_file / --reranker_file (default: the int8 file
the export wrote), so the latency lines measure the chain as deployed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.errors import InputError
from ragdistill.core.mteb import first_queries
from ragdistill.retrieval.chain import (
    ChainArguments,
    Reranker,
    RetrievalChain,
    chain_description,
    latency_path,
    read_latencies,
    run_queries,
    serving_backend,
)
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
from ragdistill.retrieval.encoder import load_query_encoder
from ragdistill.retrieval.evaluation import latency_summary
from ragdistill.retrieval.index import MilvusArguments, connect, index_size, open_collection

logger = logging.getLogger(__name__)


@dataclass
class SearchOutputArguments:
    output_run: str = field(default="output/milvus/runs/chain.trec", metadata={
        "help": "TREC run to write; the latency lines go to <run>.latency.jsonl, the metadata to <run>.meta.json."})
    tag: str | None = field(default=None, metadata={"help": "Run tag (last TREC column). Default: the run's name."})
    max_queries: int = field(default=0, metadata={"help": "Run only the first N queries (0 = all)."})
    chunk_size: int = field(default=200, metadata={"help": "Queries per resumable chunk."})


def main(argv: list[str] | None = None) -> None:
    corpus_args, milvus_args, chain_args, output_args = parse_args(
        CorpusArguments, MilvusArguments, ChainArguments, SearchOutputArguments, args=argv)
    uri = milvus_args.milvus_uri

    # 1. queries (the corpus itself is not needed: it is in Milvus)
    retrieval_set = load_retrieval_set(corpus_args, with_documents=False)
    queries = dict(first_queries(retrieval_set.queries.items(), output_args.max_queries))
    if not queries:
        raise InputError(corpus_args.corpus, "no queries")

    # 2. collection: finished builds only; its record says how queries must be embedded
    client = connect(milvus_args)
    collection = open_collection(client, milvus_args.collection, uri)
    logger.info(f"collection '{collection.name}': {collection.num_vectors:,} vectors of {collection.record.describe()}; "
          f"{collection.index_type}, {collection.metric}")

    # 3. query encoder (torch, or its ONNX / OpenVINO export), checked against the collection's probe vectors
    encoder = load_query_encoder(collection.record, chain_args.embedder, chain_args.dtype, collection.name,
                                 chain_args.encoder_backend, chain_args.encoder_file)
    logger.info(f"query encoder: {encoder.record.model} on {serving_backend(chain_args.encoder_backend, chain_args.encoder_file)}")

    # 4. reranker (optional; torch, vLLM, or a CrossEncoder's ONNX / OpenVINO export)
    reranker = None
    if chain_args.reranker:
        reranker = Reranker(chain_args.reranker, chain_args.rerank_max_length, chain_args.rerank_batch_size,
                            chain_args.dtype, chain_args.reranker_backend, chain_args.reranker_instruction,
                            chain_args.reranker_file)
        logger.info(f"reranker: {chain_args.reranker} on {serving_backend(chain_args.reranker_backend, chain_args.reranker_file)}"
              f", top {min(chain_args.rerank_top_k, chain_args.top_k)} of {chain_args.top_k}")

    # 5. query rewriter (optional; Query-Expansion-RL), then every query through the chain, timed; write run, latency
    #    lines and metadata
    rewriter = None
    if chain_args.rewriter:
        from ragdistill.expansion.rewriters import load_rewriter

        rewriter = load_rewriter(chain_args.rewriter)
        logger.info(f"query rewriter: {rewriter.describe()} ({chain_args.rewriter})")
        if getattr(rewriter, "feedback_weights", None) == "bm25":
            logger.warning("this term policy weighs its feedback by BM25 scores; here its feedback is the chain's own "
                           "hits, whose similarity scores it weighs nearly evenly (train it with --embedder for "
                           "dense weights, which the chain gives as in training)")
    chain = RetrievalChain(client, collection, encoder, chain_args, reranker, rewriter)
    description = chain_description(collection, chain_args, encoder, uri)
    tag = output_args.tag or latency_path(output_args.output_run).name.removesuffix(".latency.jsonl")
    run_path = run_queries(chain, queries, output_args.output_run, tag, description, chain_args.warmup,
                           output_args.chunk_size, {"index": index_size(collection, uri),
                                                    "queries_source": retrieval_set.source})

    # 6. a short latency summary (evaluation.py compares chains side by side)
    latency = latency_summary(read_latencies(latency_path(run_path)))
    logger.info(f"{len(queries)} queries: p50 {latency['total_p50_ms']:.1f} ms, p95 {latency['total_p95_ms']:.1f} ms "
          f"(retrieve p50 {latency['retrieve_p50_ms']:.1f} ms, rerank p50 {latency['rerank_p50_ms']:.1f} ms)")
    logger.info(f"saved {run_path} and {latency_path(run_path)}")


if __name__ == "__main__":
    run_main(main)
