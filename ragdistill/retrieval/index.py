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
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.retrieval.corpus import primary_key

logger = logging.getLogger(__name__)

# Index types Milvus Lite 3.x builds (AUTOINDEX = HNSW through FAISS there; FLAT is exact search). A Milvus server
# builds these and more; the ones below need a server.
LITE_INDEX_TYPES = ("AUTOINDEX", "FLAT", "HNSW", "HNSW_SQ", "IVF_FLAT", "IVF_SQ8")
SERVER_ONLY_INDEX_TYPES = ("IVF_PQ", "IVF_RABITQ", "HNSW_PQ", "HNSW_PRQ", "SCANN", "DISKANN", "GPU_CAGRA",
                           "GPU_IVF_FLAT", "GPU_IVF_PQ", "GPU_BRUTE_FORCE")
METRICS = ("COSINE", "IP", "L2")
EMBEDDING_BACKENDS = ("torch", "vllm")

PROPERTY_ENCODER = "ragdistill.encoder"
PROPERTY_COMPLETE = "ragdistill.complete"
PROPERTY_CORPUS = "ragdistill.corpus"
PROPERTY_NUM_DOCUMENTS = "ragdistill.num_documents"

MAX_TEXT_BYTES = 65535  # Milvus VARCHAR limit; longer passages are stored cut (rerankers read far less anyway)
MAX_QUERY_RESULT = 16384  # Milvus caps query results per call
_INSERT_PAYLOAD_BYTES = 16 << 20  # rows per insert call stay well under gRPC's message size limit

# The probe: two fixed texts embedded as documents at build time and again by the query encoder at search time.
PROBE_TEXTS = ("Milvus keeps one vector per passage of the corpus.",
               "What is the capital of France? Paris is the capital of France.")
PROBE_COMPONENTS = 64
# Probe cosine needed: the same model (same name) may run on another backend or kernel (bf16 rounding moves vectors
# by well under 1%); a model under another name must give practically identical vectors (a copy of the weights).
PROBE_SAME_MODEL = 0.99
PROBE_OTHER_NAME = 0.999


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
# The encoder and its record
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class EmbedderArguments:
    """The embedding model and how its vectors are made."""

    embedder: str = field(default="BAAI/bge-m3", metadata={
        "help": "Embedding model: a Hugging Face id or a local sentence-transformers folder."})
    backend: str = field(default="torch", metadata={
        "help": "Document embedding backend: 'torch' (sentence-transformers, anywhere) or 'vllm' (pooling runner; the "
                "fast path on GPUs). Queries are always embedded with sentence-transformers, one at a time, as a "
                "serving chain does.", "choices": list(EMBEDDING_BACKENDS)})
    dim: int = field(default=0, metadata={
        "help": "Keep the first N components of each vector (Matryoshka truncation), then re-normalise. "
                "0 = the model's full dimension."})
    normalize: bool = field(default=True, metadata={
        "help": "L2-normalise vectors (then COSINE and IP rank alike). vLLM always returns normalised vectors."})
    instruction: str | None = field(default=None, metadata={
        "help": "Task for the query prompt 'Instruct: {task}\\nQuery:' (instruction-tuned embedders such as "
                "Qwen3-Embedding). Unset: the model's own 'query' prompt, if any. 'none': no prompt."})
    max_length: int = field(default=512, metadata={"help": "Tokens per text; longer texts are truncated."})
    dtype: str = field(default="auto", metadata={
        "help": "auto (bf16 on GPUs and on CPUs with AMX/AVX512-BF16, else fp32), float32, bfloat16, float16."})
    batch_size: int = field(default=64, metadata={"help": "sentence-transformers: texts per forward pass."})

    def __post_init__(self):
        if self.backend not in EMBEDDING_BACKENDS:
            raise InputError(None, f"--backend must be one of {', '.join(EMBEDDING_BACKENDS)}, got '{self.backend}'")
        if self.dim < 0:
            raise InputError(None, f"--dim must be 0 (full) or a positive size, got {self.dim}")
        if self.backend == "vllm" and not self.normalize:
            raise InputError(None, "--normalize false needs --backend torch (vLLM's embeddings "
                                   "are normalised)")


@dataclass
class EncoderRecord:
    """How a collection's vectors were made; stored with the collection, read back at search time."""

    model: str
    backend: str
    query_prompt: str
    document_prompt: str
    max_length: int
    dtype: str
    model_dim: int
    dim: int
    normalize: bool
    probe: list[list[float]]

    def describe(self) -> str:
        norm = "normalised" if self.normalize else "not normalised"
        cut = f" (first {self.dim} of {self.model_dim}, Matryoshka)" if self.dim < self.model_dim else ""
        return f"{self.model}, {self.dim} dims{cut}, {norm}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str) -> EncoderRecord:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise InputError(where, f"unreadable encoder record ({exc}); rebuild the collection") from None


def model_identity(model: str) -> str:
    """A local folder by its real path (so ./m and /abs/m are one model); a hub id as written."""
    path = Path(model).expanduser()
    return os.path.realpath(path) if path.exists() else model


def shape_vectors(vectors: np.ndarray, dim: int, normalize: bool) -> np.ndarray:
    """Matryoshka truncation to `dim` components, then L2 normalisation (zero rows stay zero)."""
    vectors = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[:, :dim])
    if normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
    return vectors


class Encoder:
    """Embeds documents and queries the way a collection records: prompts, truncation, normalisation."""

    def __init__(self, backend_model, record: EncoderRecord):
        self.backend_model = backend_model  # a ragdistill.embedding.teachers.EmbeddingTeacher
        self.record = record

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        prompt = self.record.document_prompt
        return shape_vectors(self.backend_model.encode([prompt + text for text in texts]), self.record.dim,
                             self.record.normalize)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        prompt = self.record.query_prompt
        return shape_vectors(self.backend_model.encode([prompt + text for text in texts]), self.record.dim,
                             self.record.normalize)

    def probe(self) -> list[list[float]]:
        vectors = self.encode_documents(PROBE_TEXTS)[:, :PROBE_COMPONENTS]
        return [[round(float(x), 6) for x in row] for row in vectors]

    def close(self) -> None:
        self.backend_model.close()


def _teacher_arguments(model: str, backend: str, instruction: str | None, max_length: int, dtype: str,
                       batch_size: int):
    from ragdistill.embedding.teachers import TeacherArguments

    return TeacherArguments(teacher_model=model, backend=backend, instruction=instruction,
                            teacher_max_length=max_length, teacher_dtype=dtype, batch_size=batch_size)


def load_document_encoder(args: EmbedderArguments, vllm_args=None) -> Encoder:
    """The encoder build_index uses: loads the model, measures its dimension, embeds the probe texts."""
    from ragdistill.core.vllm_engine import require_model_dir
    from ragdistill.embedding.teachers import describe_teacher, load_teacher

    require_model_dir(args.embedder, "embedding model")
    teacher_args = _teacher_arguments(args.embedder, args.backend, args.instruction, args.max_length, args.dtype,
                                      args.batch_size)
    identity = describe_teacher(teacher_args)
    backend_model = load_teacher(teacher_args, vllm_args)
    record = EncoderRecord(
        model=model_identity(args.embedder), backend=args.backend, query_prompt=identity["query_prompt"],
        document_prompt=identity["document_prompt"], max_length=args.max_length, dtype=identity["dtype"],
        model_dim=0, dim=0, normalize=args.normalize, probe=[])
    record.model_dim = int(np.asarray(backend_model.encode([PROBE_TEXTS[0]])).shape[1])
    if args.dim > record.model_dim:
        raise InputError(args.embedder, f"--dim {args.dim} is larger than the model's {record.model_dim} dimensions")
    record.dim = args.dim or record.model_dim
    encoder = Encoder(backend_model, record)
    record.probe = encoder.probe()
    return encoder


def serving_dtype(dtype: str | None = None) -> str:
    """dtype for one-query-at-a-time work (query encoder, reranker). Unset or 'auto': bf16 (fp16) on GPUs; float32
    on CPUs, even with AMX: oneDNN's bf16 kernels pay off on big batches, but one short query at a time they ran
    10-40x slower than fp32 here (all-MiniLM-L6-v2 query: fp32 ~50 ms, bf16 ~1 s)."""
    from ragdistill.core.hardware import has_cuda, resolve_dtype

    if dtype and dtype != "auto":
        return resolve_dtype(dtype)
    return resolve_dtype("auto") if has_cuda() else "float32"


def load_query_encoder(record: EncoderRecord, model: str | None = None, dtype: str | None = None,
                       collection: str = "", backend: str = "torch", file: str | None = None) -> Encoder:
    """The encoder search uses: the recorded prompts, length, dimension and normalisation on sentence-transformers,
    `model` (default: the recorded one) as the weights, in `dtype` (default: serving_dtype), or its export run by
    `backend` 'onnx' / 'openvino' from `file` (default: the int8 one the export stage writes); refused if its probe
    vectors do not match the collection's (see check_probe: an int8 export of the indexed model passes)."""
    from ragdistill.core.vllm_engine import require_model_dir
    from ragdistill.embedding.teachers import load_teacher

    model = model or record.model
    require_model_dir(model, "query embedding model")
    exported = backend in ("onnx", "openvino")
    teacher_args = _teacher_arguments(model, "torch", "none", record.max_length,
                                      "float32" if exported else serving_dtype(dtype), batch_size=1)
    backend_model = load_teacher(teacher_args)
    if exported:
        from ragdistill.core.export import use_exported
        from ragdistill.retrieval.chain import exported_file

        backend_model.model.to("cpu")
        use_exported(backend_model.model, "embedder", Path(model) / exported_file(backend, file), backend)
    model_dim = int(np.asarray(backend_model.encode([PROBE_TEXTS[0]])).shape[1])
    if model_dim < record.dim:
        raise InputError(model, f"encoder mismatch: this model gives {model_dim}-dim vectors, the collection "
                                f"'{collection}' holds {record.dim}-dim vectors of {record.describe()}")
    query_record = EncoderRecord(**{**asdict(record), "model": model_identity(model), "model_dim": model_dim,
                                    "backend": "torch", "dtype": teacher_args.teacher_dtype})
    encoder = Encoder(backend_model, query_record)
    check_probe(record, encoder.probe(), query_record.model, collection)
    return encoder


def probe_similarity(recorded: list[list[float]], measured: list[list[float]]) -> float:
    """The lowest cosine between recorded and measured probe vectors."""
    sims = []
    for a, b in zip(recorded, measured):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        denom = np.linalg.norm(a) * np.linalg.norm(b)
        sims.append(float(a @ b / denom) if denom > 0 else 0.0)
    return min(sims) if sims else 0.0


def check_probe(record: EncoderRecord, probe: list[list[float]], model: str, collection: str = "") -> float:
    """Refuse a query encoder whose vectors for the probe texts differ from those the collection recorded."""
    similarity = probe_similarity(record.probe, probe)
    same_name = model == record.model
    needed = PROBE_SAME_MODEL if same_name else PROBE_OTHER_NAME
    if similarity < needed:
        raise InputError(
            model, f"encoder mismatch: collection '{collection}' holds vectors of {record.describe()}; this query "
                   f"encoder embeds the probe texts differently (cosine {similarity:.4f} < {needed}), so its "
                   f"queries would be compared with vectors from another model. Search with the model the index "
                   f"was built with (--embedder {record.model}), or build an index with this one")
    if not same_name:
        logger.info(f"query encoder {model} differs in name from the indexed {record.model}, but gives the same "
              f"vectors (probe cosine {similarity:.5f}): accepted as a copy of the same model")
    return similarity


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
        if self.metric not in METRICS:
            raise InputError(None, f"--metric must be one of {', '.join(METRICS)}, got '{self.metric}'")
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
        from milvus_lite.index.factory import is_faiss_available

        if not is_faiss_available():
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
