"""Stage 1: embed a corpus with an embedding model and insert it into a Milvus collection.

The corpus is a BEIR folder, or MTEB reranking files whose passages are pooled into one corpus. The target is
Milvus Lite (a local folder, `--milvus_uri ./milvus.db`, the default) or any Milvus server or cluster
(`--milvus_uri http://host:19530 --milvus_token root:Milvus`). Inserts are batched and resumable: a re-run skips the
documents already in the collection. The collection records the model, dimension and normalisation, so search.py
can refuse a query encoder that does not match.

    python build_index.py --corpus data/wikiqa/test.jsonl.gz --embedder BAAI/bge-m3 --collection bge_m3 \
        --milvus_uri output/milvus/milvus.db --index_type AUTOINDEX --metric COSINE
    python build_index.py ... --dim 256          # Matryoshka: first 256 components, re-normalised
    python build_index.py ... --engine ray --num_replicas 8   # 8 encoder replicas on Ray actors (docs/scaling.md)
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.jsonl import write_json
from ragdistill.core.ray_engine import EngineArguments
from ragdistill.core.vllm_engine import VLLMArguments
from ragdistill.retrieval.chain import redact_uri
from ragdistill.retrieval.corpus import CorpusArguments, load_retrieval_set
from ragdistill.retrieval.encoder import EmbedderArguments, load_document_encoder
from ragdistill.retrieval.index import (
    IndexArguments,
    MilvusArguments,
    check_index_type,
    connect,
    create_collection,
    finish_collection,
    index_documents,
    index_documents_on_ray,
    index_size,
    mark_incomplete,
    open_collection,
)

logger = logging.getLogger(__name__)


@dataclass
class BuildArguments:
    output_dir: str | None = field(default=None, metadata={
        "help": "Where to save the build summary <collection>.build.json (counts, timings, index size)."})


def main(argv: list[str] | None = None) -> None:
    corpus_args, embedder_args, milvus_args, index_args, vllm_args, engine, build_args = parse_args(
        CorpusArguments, EmbedderArguments, MilvusArguments, IndexArguments, VLLMArguments, EngineArguments,
        BuildArguments, args=argv)
    uri, name = milvus_args.milvus_uri, milvus_args.collection
    check_index_type(index_args.index_type, uri)  # before the model loads: a wrong choice fails at once

    # 1. corpus
    corpus = load_retrieval_set(corpus_args)
    logger.info(corpus.summary())

    if engine.engine == "ray":
        # 2-4. encoder replicas on Ray actors embed the documents the collection lacks; the first batch back brings
        # the encoder record (dimension, probe vectors), which creates the collection or is checked against it
        client = connect(milvus_args)
        began = time.perf_counter()
        stats, record = index_documents_on_ray(client, name, corpus.documents, embedder_args, vllm_args, index_args,
                                               corpus.fingerprint(), uri, engine)
        logger.info(f"encoder: {record.describe()} ({embedder_args.backend}, {record.dtype}), "
                    f"{engine.num_replicas} replica(s) on Ray")
    else:
        # 2. encoder: the model, its dimension (Matryoshka --dim), and the probe vectors the collection records
        encoder = load_document_encoder(embedder_args, vllm_args)
        logger.info(f"encoder: {encoder.record.describe()} ({embedder_args.backend}, {encoder.record.dtype})")

        # 3. collection: created with schema, index and record, or resumed if it holds the same build
        client = connect(milvus_args)
        created = create_collection(client, name, encoder.record, index_args, corpus.fingerprint(),
                                    len(corpus.documents), uri)
        logger.info(f"{'created' if created else 'resuming'} collection '{name}' at {redact_uri(uri)} "
              f"({index_args.index_type}, {index_args.metric})")
        mark_incomplete(client, name)  # until every document is in, search refuses the collection

        # 4. embed and insert what is missing, batch by batch
        began = time.perf_counter()
        stats = index_documents(client, name, corpus.documents, encoder, index_args.insert_batch_size)
        encoder.close()
        record = encoder.record

    # 5. flush, check the count, mark complete
    rows = finish_collection(client, name, len(corpus.documents), uri)
    seconds = time.perf_counter() - began
    info = open_collection(client, name, uri)
    size = index_size(info, uri)
    logger.info(f"collection '{name}': {rows:,} documents ({stats.inserted:,} inserted now, {stats.already_indexed:,} "
          f"already there) in {seconds:.1f} s: embedding {stats.embed_seconds:.1f} s, inserting "
          f"{stats.insert_seconds:.1f} s")
    disk = f", {size['disk_bytes'] / 1e6:.1f} MB on disk" if size["disk_bytes"] is not None else ""
    logger.info(f"index: {info.index_type}, {info.metric}; vectors {size['vectors']:,} x {size['dim']} x 4 bytes = "
          f"{size['vector_bytes'] / 1e6:.1f} MB{disk}")

    # 6. save the summary
    if build_args.output_dir:
        path = Path(build_args.output_dir) / f"{name}.build.json"
        write_json(path, {"collection": name, "milvus_uri": redact_uri(uri), "corpus": corpus.source,
                          "corpus_fingerprint": corpus.fingerprint(), "encoder": asdict(record),
                          "index_type": info.index_type, "metric": info.metric, "index": size,
                          "stats": asdict(stats), "seconds": seconds})
        logger.info(f"saved {path}")


if __name__ == "__main__":
    run_main(main)
