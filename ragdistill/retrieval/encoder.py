"""The encoder of a Milvus collection and its record: how the corpus's vectors are made (model, backend, prompts,
dimension, normalisation) and the "probe" (the vectors of two fixed texts) that lets search refuse a query encoder
that does not match the index.

- `load_document_encoder`: the corpus side (sentence-transformers, or vLLM's pooling runner);
- `load_query_encoder`: the query side, rebuilt from the record (sentence-transformers, or an ONNX / OpenVINO
  export of the same student);
- `check_probe`: the record's probe vectors against the query encoder's.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError

logger = logging.getLogger(__name__)

EMBEDDING_BACKENDS = ("torch", "vllm")

# The probe: two fixed texts embedded as documents at build time and again by the query encoder at search time.
PROBE_TEXTS = ("Milvus keeps one vector per passage of the corpus.",
               "What is the capital of France? Paris is the capital of France.")
PROBE_COMPONENTS = 64
# Probe cosine needed: the same model (same name) may run on another backend or kernel (bf16 rounding moves vectors
# by well under 1%); a model under another name must give practically identical vectors (a copy of the weights).
PROBE_SAME_MODEL = 0.99
PROBE_OTHER_NAME = 0.999


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
        check_choices(self)
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

    def _encode(self, prompt: str, texts: Sequence[str]) -> np.ndarray:
        return shape_vectors(self.backend_model.encode([prompt + text for text in texts]), self.record.dim,
                             self.record.normalize)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.record.document_prompt, texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.record.query_prompt, texts)

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
    from ragdistill.core.models import require_model_dir
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
    from ragdistill.core.models import require_model_dir
    from ragdistill.embedding.teachers import load_teacher

    model = model or record.model
    require_model_dir(model, "query embedding model")
    exported = backend in ("onnx", "openvino")
    teacher_args = _teacher_arguments(model, "torch", "none", record.max_length,
                                      "float32" if exported else serving_dtype(dtype), batch_size=1)
    backend_model = load_teacher(teacher_args)
    if exported:
        from ragdistill.embedding.pipeline import EmbeddingPipeline
        from ragdistill.export.variants import exported_file, use_exported

        backend_model.model = use_exported(backend_model.model, EmbeddingPipeline(),
                                           Path(model) / exported_file(backend, file), backend)
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
