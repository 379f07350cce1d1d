"""A corpus embedded into a Milvus collection: Milvus Lite (a local folder) or any Milvus server or cluster.

- Target: a URI ending in `.db` is Milvus Lite, in-process, stored in that folder; `http(s)://host:19530` (with a
  token) is a Milvus standalone server, a cluster or Zilliz Cloud. Nothing else changes between the two.
- Rows: `id` (INT64 primary key, a fixed hash of the document id), `doc_id`, `text` (what a reranker or an LLM
  reads after retrieval), `vector`.
- Resumable: inserts go in batches; before embedding a batch, the ids already in the collection are looked up and
  skipped, so a re-run after a crash embeds and inserts only what is missing.
- The collection records, in its properties, how its vectors were made (model, prompts, dimension, normalisation,
  and a "probe": the vectors of two fixed texts) and whether the build finished. Search reads the record, encodes
  queries the same way, and refuses an encoder whose probe vectors differ: a query encoder that does not match the
  index gives meaningless neighbours without any error from Milvus itself.
- `dim` below the model's size keeps the first `dim` components (Matryoshka truncation) and re-normalises.

The encoder and its record (model, prompts, probe) live in `ragdistill/retrieval/encoder.py`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError
from ragdistill.retrieval.corpus import primary_key
from ragdistill.retrieval.encoder import (
    PROBE_SAME_MODEL,
    PROBE_TEXTS,
    EmbedderArguments,
    Encoder,
    EncoderRecord,
    load_document_encoder,
    probe_similarity,
)

logger = logging.getLogger(__name__)

# Index types Milvus Lite 3.x builds (AUTOINDEX = HNSW through FAISS there; FLAT is exact search). A Milvus server
# builds these and more; the ones below need a server.
LITE_INDEX_TYPES = ("AUTOINDEX", "FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")
SERVER_ONLY_INDEX_TYPES = ("IVF_PQ", "IVF_RABITQ", "HNSW_PQ", "HNSW_PRQ", "SCANN", "DISKANN", "GPU_CAGRA",
                           "GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_BRUTE_FORCE")
METRICS = ("COSINE", "IP", "L2")

PROPERTY_ENCODER = "ragdistill.encoder"
PROPERTY_COMPLETE = "ragdistill.complete"
PROPERTY_CORPUS = "ragdistill.corpus"
PROPERTY_NUM_DOCUMENTS = "ragdistill.num_documents"

MAX_TEXT_BYTES = 65535  # Milvus VARCHAR limit; longer passages are stored cut (rerankers read far less anyway)
MAX_QUERY_RESULT = 16384  # Milvus caps query results per call
_INSERT_PAYLOAD_BYTES = 16 << 20  # rows per insert call stay well under gRPC's message size limit



@dataclass
class MilvusArguments:
    """Which Milvus and which collection."""

    milvus_uri: str = field(default="./milvus.db", metadata={
        "help": "Milvus Lite: a local path ending in .db (a folder Milvus Lite creates). A server or cluster: "
                "http://host:19530 (or https://... for Zilliz Cloud)."})
    milvus_token: str = field(default="", metadata={
        "help": "Server only: 'user:password' (e.g. root:Milvus) or an API key. Also read from $MILVUS_TOKEN."})
    milvus_db: str = field(default="", metadata={"help": "Server only: database name ('' = default)."})
    collection: str = field(default="ragdistill_corpus", metadata={
        "help": "Collection name (letters, digits and underscores)."})


def is_lite(uri: str) -> bool:
    """pymilvus's rule: a URI ending in .db is a Milvus Lite data folder."""
    return uri.endswith(".db")


class _DropUnimplemented(logging.Filter):
    """Milvus Lite serves gRPC inside this process and lacks a few calls pymilvus tries and then does without
    (AllocTimestamp while waiting for an index); grpc logs each as an error with a traceback. Drop just those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], NotImplementedError))


def connect(args: MilvusArguments):
    """A MilvusClient for the URI; Milvus Lite's folder gets its parent created."""
    if not os.environ.get("MILVUS_URI", "").startswith(("http://", "https://", "tcp://", "unix:")):
        # pymilvus reads $MILVUS_URI when imported and fails on a local path; the URI is passed explicitly anyway.
        os.environ.pop("MILVUS_URI", None)
    from pymilvus import MilvusClient

    uri = args.milvus_uri
    if is_lite(uri):
        grpc_server_log = logging.getLogger("grpc._server")
        if not any(isinstance(f, _DropUnimplemented) for f in grpc_server_log.filters):
            grpc_server_log.addFilter(_DropUnimplemented())
        path = Path(uri).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise InputError(path, "is a file; Milvus Lite 3 keeps its data in a folder named *.db (an old "
                                   "single-file Milvus Lite database cannot be opened; use another --milvus_uri)")
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = str(path)
    elif not uri.startswith(("http://", "https://", "tcp://", "unix:")):
        raise InputError(uri, "not a Milvus URI: use a local path ending in .db (Milvus Lite) or "
                              "http://host:19530 (a server)")
    token = args.milvus_token or os.environ.get("MILVUS_TOKEN", "")
    try:
        return MilvusClient(uri=uri, token=token, db_name=args.milvus_db)
    except Exception as exc:  # pymilvus raises its own types, Milvus Lite others (e.g. a folder locked by a process)
        raise InputError(args.milvus_uri, f"cannot open Milvus: {exc}") from None


def _valid_collection_name(name: str) -> None:
    if not name or not name.replace("_", "a").isalnum() or name[0].isdigit() or len(name) > 255:
        raise InputError(None, f"--collection '{name}': use letters, digits and underscores, not starting with a digit")


# ----------------------------------------------------------------------------------------------------------------
# Collections
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class IndexArguments:
    """The vector index Milvus builds over the collection."""

    index_type: str = field(default="AUTOINDEX", metadata={
        "help": f"Milvus Lite: {', '.join(LITE_INDEX_TYPES)} (AUTOINDEX = HNSW there; FLAT = exact). A server "
                f"also builds {', '.join(SERVER_ONLY_INDEX_TYPES)}."})
    metric: str = field(default="COSINE", metadata={
        "help": "COSINE, IP or L2. For normalised vectors COSINE and IP rank the same.", "choices": list(METRICS)})
    index_params: str = field(default="{}", metadata={
        "help": "Build parameters as JSON, e.g. '{\"M\": 16, \"efConstruction\": 200}' (HNSW), "
                "'{\"nlist\": 1024}' (IVF_*)."})
    overwrite: bool = field(default=False, metadata={
        "help": "Drop the collection first if it exists (otherwise a re-run resumes it)."})
    insert_batch_size: int = field(default=1024, metadata={
        "help": "Documents per batch: looked up, embedded and inserted together (one vLLM submission each)."})

    def __post_init__(self):
        self.index_type = self.index_type.upper()
        self.metric = self.metric.upper()
        check_choices(self)
        if not 1 <= self.insert_batch_size <= MAX_QUERY_RESULT:
            raise InputError(None, f"--insert_batch_size must be between 1 and {MAX_QUERY_RESULT}")
        self.build_params()

    def build_params(self) -> dict:
        return parse_json_params(self.index_params, "--index_params")


def parse_json_params(text: str, flag: str) -> dict:
    try:
        params = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise InputError(None, f"{flag} is not valid JSON ({exc.msg}): {text}") from None
    if not isinstance(params, dict):
        raise InputError(None, f"{flag} must be a JSON object, got {text}")
    return params


def check_index_type(index_type: str, uri: str) -> None:
    """Milvus Lite accepts any index name but only builds some; refuse the others before anything is written."""
    if is_lite(uri) and index_type not in LITE_INDEX_TYPES:
        where = " (needs a Milvus server: see Milvus-Optimization/README.md)" if index_type in \
            SERVER_ONLY_INDEX_TYPES else ""
        raise InputError(uri, f"index type {index_type}{where} is not built by Milvus Lite; use one of "
                              f"{', '.join(LITE_INDEX_TYPES)}")
    if is_lite(uri) and index_type not in ("AUTOINDEX", "FLAT"):
        import importlib.util

        if importlib.util.find_spec("faiss") is None:
            raise InputError(uri, f"Milvus Lite builds {index_type} with faiss-cpu, which is not installed "
                                  "(pip install faiss-cpu), or use --index_type FLAT")


def collection_properties(client, name: str) -> dict:
    return dict(client.describe_collection(name).get("properties") or {})


def read_record(client, name: str, where: str) -> EncoderRecord:
    properties = collection_properties(client, name)
    if PROPERTY_ENCODER not in properties:
        raise InputError(where, f"collection '{name}' was not built by build_index.py: it records no encoder")
    return EncoderRecord.from_json(properties[PROPERTY_ENCODER], f"{where} collection '{name}'")


def _check_same_build(client, name: str, record: EncoderRecord, corpus_fingerprint: str, metric: str,
                      uri: str) -> None:
    """A re-run may resume a collection only if it was started with the same encoder, metric and corpus."""
    existing = read_record(client, name, uri)
    properties = collection_properties(client, name)
    problems = []
    if existing.model != record.model:
        problems.append(f"model {existing.model} (now {record.model})")
    for key in ("dim", "normalize", "query_prompt", "document_prompt", "max_length"):
        if getattr(existing, key) != getattr(record, key):
            problems.append(f"{key} {getattr(existing, key)!r} (now {getattr(record, key)!r})")
    if probe_similarity(existing.probe, record.probe) < PROBE_SAME_MODEL:
        problems.append("other probe vectors (the model's weights changed)")
    if properties.get(PROPERTY_CORPUS) != corpus_fingerprint:
        problems.append(f"corpus {properties.get(PROPERTY_CORPUS)} (now {corpus_fingerprint})")
    indexes = client.list_indexes(name)
    if indexes:
        existing_metric = client.describe_index(name, indexes[0]).get("metric_type")
        if existing_metric and existing_metric != metric:
            problems.append(f"metric {existing_metric} (now {metric})")
    if problems:
        raise InputError(uri, f"collection '{name}' exists with other settings: {'; '.join(problems)}. Pass "
                              "--overwrite to rebuild it, or choose another --collection")


def create_collection(client, name: str, record: EncoderRecord, index: IndexArguments, corpus_fingerprint: str,
                      num_documents: int, uri: str) -> bool:
    """Create the collection (schema, index, properties) unless it exists; return True if it was created."""
    from pymilvus import DataType, MilvusClient

    _valid_collection_name(name)
    check_index_type(index.index_type, uri)
    if client.has_collection(name):
        if index.overwrite:
            client.drop_collection(name)
        else:
            _check_same_build(client, name, record, corpus_fingerprint, index.metric, uri)
            client.load_collection(name)
            return False
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description=f"ragdistill corpus embedded by {record.describe()}")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=512)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=record.dim)
    index_params = client.prepare_index_params()
    index_params.add_index(field_name="vector", index_type=index.index_type, metric_type=index.metric,
                           params=index.build_params())
    properties = {PROPERTY_ENCODER: record.to_json(), PROPERTY_CORPUS: corpus_fingerprint,
                  PROPERTY_NUM_DOCUMENTS: str(num_documents), PROPERTY_COMPLETE: "false"}
    client.create_collection(name, schema=schema, index_params=index_params, properties=properties)
    return True


def clip_text(text: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    data = text.encode("utf-8")
    return text if len(data) <= max_bytes else data[:max_bytes].decode("utf-8", errors="ignore")


def existing_keys(client, name: str, keys: Sequence[int]) -> set[int]:
    """Which of these primary keys the collection holds (strong consistency: sees every finished insert)."""
    if not keys:
        return set()
    rows = client.query(name, filter=f"id in {list(keys)}", output_fields=["id"], consistency_level="Strong",
                        limit=len(keys))
    return {int(row["id"]) for row in rows}


def insert_rows(client, name: str, rows: list[dict]) -> None:
    """Insert in calls of at most ~16 MB (long texts can make a batch too big for one gRPC message)."""
    start, size = 0, 0
    for i, row in enumerate(rows):
        size += len(row["text"]) * 4 + len(row["vector"]) * 4 + 64
        if size > _INSERT_PAYLOAD_BYTES and i > start:
            client.insert(name, rows[start:i])
            start, size = i, len(row["text"]) * 4 + len(row["vector"]) * 4 + 64
    if start < len(rows):
        client.insert(name, rows[start:])


def count_rows(client, name: str) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


@dataclass
class InsertStats:
    documents: int = 0
    already_indexed: int = 0
    inserted: int = 0
    embed_seconds: float = 0.0
    insert_seconds: float = 0.0
    lookup_seconds: float = 0.0


def missing_batches(client, name: str, documents: dict[str, str], batch_size: int, stats: InsertStats
                    ) -> Iterator[tuple[int, list[tuple[str, int]]]]:
    """For each batch of documents, (its size, the (doc_id, key) pairs the collection does not hold yet); every
    document is missing from a collection that does not exist yet."""
    doc_ids = list(documents)
    exists = client.has_collection(name)
    for start in range(0, len(doc_ids), batch_size):
        batch = doc_ids[start:start + batch_size]
        keys = [primary_key(doc_id) for doc_id in batch]
        began = time.perf_counter()
        present = existing_keys(client, name, keys) if exists else set()
        stats.lookup_seconds += time.perf_counter() - began
        missing = [(doc_id, key) for doc_id, key in zip(batch, keys) if key not in present]
        stats.already_indexed += len(batch) - len(missing)
        yield len(batch), missing


def insert_embedded(client, name: str, documents: dict[str, str], missing: list[tuple[str, int]], vectors,
                    stats: InsertStats) -> None:
    rows = [{"id": key, "doc_id": doc_id, "text": clip_text(documents[doc_id]), "vector": vector.tolist()}
            for (doc_id, key), vector in zip(missing, vectors)]
    began = time.perf_counter()
    insert_rows(client, name, rows)
    stats.insert_seconds += time.perf_counter() - began
    stats.inserted += len(rows)


def index_documents(client, name: str, documents: dict[str, str], encoder: Encoder, batch_size: int) -> InsertStats:
    """Embed and insert every document the collection does not hold yet, batch by batch, with a progress bar."""
    from tqdm.auto import tqdm

    stats = InsertStats(documents=len(documents))
    with tqdm(total=len(documents), desc=f"indexing into {name}", unit="doc") as progress:
        for size, missing in missing_batches(client, name, documents, batch_size, stats):
            if missing:
                began = time.perf_counter()
                vectors = encoder.encode_documents([documents[doc_id] for doc_id, _ in missing])
                stats.embed_seconds += time.perf_counter() - began
                insert_embedded(client, name, documents, missing, vectors, stats)
            progress.update(size)
            progress.set_postfix(skipped=stats.already_indexed, inserted=stats.inserted)
    return stats


class DocumentEmbedder:
    """One replica of the document encoder (what `--engine ray` runs on each actor): a batch of texts -> their
    vectors, the seconds it took, and the replica's encoder record (its probe vectors)."""

    def __init__(self, args: EmbedderArguments, vllm_args=None):
        self.encoder = load_document_encoder(args, vllm_args)

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, float, EncoderRecord]:
        began = time.perf_counter()
        return self.encoder.encode_documents(texts), time.perf_counter() - began, self.encoder.record


def index_documents_on_ray(client, name: str, documents: dict[str, str], args: EmbedderArguments, vllm_args,
                           index: IndexArguments, corpus_fingerprint: str, uri: str, engine
                           ) -> tuple[InsertStats, EncoderRecord]:
    """index_documents with the embedding on Ray actors (`engine`: core.ray_engine.EngineArguments).

    The missing documents are looked up first and sent out in batches; no model loads on this process. The first
    batch back brings a replica's encoder record, which creates the collection (or is checked against the one being
    resumed, as create_collection does); every later batch's replica must embed the probe texts the same way.
    Batches are inserted as they arrive. Nothing missing: one probe batch still checks the encoder."""
    from tqdm.auto import tqdm

    from ragdistill.core.ray_engine import run_chunks

    stats = InsertStats(documents=len(documents))
    if index.overwrite and client.has_collection(name):
        client.drop_collection(name)
    batches = [missing for _, missing in missing_batches(client, name, documents, index.insert_batch_size, stats)
               if missing] or [[]]
    collection: list[EncoderRecord] = []
    with tqdm(total=len(documents) - stats.already_indexed, desc=f"indexing into {name}", unit="doc") as progress:

        def save(missing: list[tuple[str, int]], result: tuple) -> None:
            vectors, seconds, replica = result
            if not collection:
                create_collection(client, name, replica, index, corpus_fingerprint, len(documents), uri)
                mark_incomplete(client, name)  # until every document is in, search refuses the collection
                collection.append(read_record(client, name, uri))
            elif probe_similarity(collection[0].probe, replica.probe) < PROBE_SAME_MODEL:
                raise InputError(uri, f"a replica embeds the probe texts differently from the collection's "
                                      f"{collection[0].describe()}: the replicas do not run the same model")
            stats.embed_seconds += seconds
            insert_embedded(client, name, documents, missing, vectors, stats)
            progress.update(len(missing))

        work = [(lambda m=missing: [documents[doc_id] for doc_id, _ in m] or list(PROBE_TEXTS),
                 functools.partial(save, missing)) for missing in batches]
        run_chunks(work, functools.partial(DocumentEmbedder, args, vllm_args), engine,
                   getattr(vllm_args, "tensor_parallel_size", 1))
    return stats, collection[0]


def finish_collection(client, name: str, num_documents: int, uri: str) -> int:
    """Flush, check every document is there, and mark the collection complete (search refuses it before)."""
    client.flush(name)
    rows = count_rows(client, name)
    if rows != num_documents:
        raise InputError(uri, f"collection '{name}' holds {rows} rows after the build, expected {num_documents}; "
                              "re-run build_index.py with --overwrite")
    client.alter_collection_properties(name, properties={PROPERTY_COMPLETE: "true"})
    client.load_collection(name)
    return rows


def mark_incomplete(client, name: str) -> None:
    client.alter_collection_properties(name, properties={PROPERTY_COMPLETE: "false"})


@dataclass
class CollectionInfo:
    name: str
    record: EncoderRecord
    index_type: str
    metric: str
    num_vectors: int
    properties: dict


def open_collection(client, name: str, uri: str) -> CollectionInfo:
    """A finished collection, loaded for search; refuses unknown and half-built ones."""
    if not client.has_collection(name):
        existing = client.list_collections()
        raise InputError(uri, f"no collection '{name}' here (collections: {', '.join(existing) or 'none'}); "
                              "build it with build_index.py")
    record = read_record(client, name, uri)
    properties = collection_properties(client, name)
    client.load_collection(name)
    if properties.get(PROPERTY_COMPLETE) != "true":
        done = count_rows(client, name)
        raise InputError(uri, f"collection '{name}' is incomplete: its build stopped after {done:,} of "
                              f"{properties.get(PROPERTY_NUM_DOCUMENTS, '?')} documents. Re-run build_index.py with "
                              "the same arguments to resume it")
    indexes = client.list_indexes(name)
    described = client.describe_index(name, indexes[0]) if indexes else {}
    return CollectionInfo(name=name, record=record, index_type=described.get("index_type", "?"),
                          metric=described.get("metric_type", "COSINE"), num_vectors=count_rows(client, name),
                          properties=properties)


@dataclass
class Hit:
    doc_id: str
    score: float
    text: str | None = None


def search(client, name: str, vector: np.ndarray, top_k: int, metric: str, search_params: dict | None = None,
           with_text: bool = False) -> list[Hit]:
    """Top-k for one query vector; scores are higher-is-better (L2 distances are negated)."""
    results = client.search(name, data=[vector.tolist()], limit=top_k, anns_field="vector",
                            output_fields=["doc_id", "text"] if with_text else ["doc_id"],
                            search_params={"metric_type": metric, "params": dict(search_params or {})})
    sign = -1.0 if metric == "L2" else 1.0
    return [Hit(doc_id=hit["entity"]["doc_id"], score=sign * float(hit["distance"]),
                text=hit["entity"].get("text") if with_text else None) for hit in results[0]]


def folder_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def index_size(info: CollectionInfo, uri: str) -> dict:
    """Raw vector memory (vectors x dim x 4 bytes of float32) and, for Milvus Lite, the collection's folder size
    on disk (vectors, ids, texts and the index together)."""
    size = {"vectors": info.num_vectors, "dim": info.record.dim, "bytes_per_value": 4,
            "vector_bytes": info.num_vectors * info.record.dim * 4, "disk_bytes": None}
    if is_lite(uri):
        root = Path(uri).expanduser()
        folder = root / "collections" / info.name
        if folder.is_dir():
            size["disk_bytes"] = folder_size(folder)
    return size
