"""The retrieval chain a RAG service runs per query: optionally rewrite the query (a Query-Expansion-RL rewriter), embed
it, search Milvus, optionally rerank the top hits.

Every query runs alone (batch of one), as in serving, and each step is timed: `rewrite_ms` (the rewriter, with its
feedback search where it reads one; 0 without), `embed_ms` (query encoder),
`search_ms` (Milvus round trip, texts included when a reranker needs them), `retrieve_ms` (the three), `rerank_ms`
(the CrossEncoder over the top `rerank_top_k` hits) and `total_ms`. A few warm-up queries run first, untimed.

Outputs, for `--output_run runs/student.trec`:
  runs/student.trec                TREC run: `qid Q0 docid rank score tag`, top_k lines per query
  runs/student.latency.jsonl       one JSON line per query with the timings above
  runs/student.trec.meta.json      the chain (collection, encoder, index, reranker, index size), "complete": true
Queries run in resumable chunks (ragdistill.core.resumable): a crash loses at most the chunk in flight.

Reranking reorders the top `rerank_top_k` hits by the reranker's raw score; hits below them keep their retrieval
order, with scores placed below the reranked ones so that the run's scores decrease with rank (as trec_eval sorts).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, torch_dtype
from ragdistill.retrieval.corpus import iter_fields
from ragdistill.retrieval.encoder import Encoder, serving_dtype
from ragdistill.retrieval.index import CollectionInfo, Hit, parse_json_params, search

logger = logging.getLogger(__name__)

RUN_SUFFIXES = (".trec", ".run", ".txt", ".tsv")
RERANKER_BACKENDS = ("torch", "vllm", "onnx", "openvino")
ENCODER_BACKENDS = ("torch", "onnx", "openvino")
EXPORTED_BACKENDS = ("onnx", "openvino")


@dataclass
class ChainArguments:
    """What the chain does per query."""

    top_k: int = field(default=100, metadata={"help": "Hits retrieved from Milvus per query (and written to the run)."})
    reranker: str | None = field(default=None, metadata={
        "help": "Reranker (student or teacher): a CrossEncoder, or a yes/no LLM reranker such as Qwen3-Reranker; "
                "a Hugging Face id or a local folder. Unset: no reranking."})
    reranker_instruction: str | None = field(default=None, metadata={
        "help": "yes/no LLM rerankers only: the task in their prompt (use the one the teacher scored with). Unset: "
                "the one a trained student was saved with, else 'Given a web search query, retrieve relevant "
                "passages that answer the query'."})
    reranker_backend: str = field(default="torch", metadata={
        "help": "'torch' (PyTorch; CrossEncoders and yes/no LLM rerankers), 'vllm' (yes/no LLM rerankers, GPU "
                "fast path), or 'onnx' / 'openvino': a CrossEncoder exported by the export stage (export.sh), run "
                "from --reranker_file.", "choices": list(RERANKER_BACKENDS)})
    reranker_file: str | None = field(default=None, metadata={
        "help": "onnx / openvino reranker backends: the exported file inside the reranker's folder. Unset: the int8 "
                "one the export stage writes (onnx/model_qint8_<cpu>.onnx, openvino/openvino_model_qint8_quantized"
                ".xml); onnx/model_O2.onnx is the fp32 one."})
    encoder_backend: str = field(default="torch", metadata={
        "help": "Query encoder: 'torch', or 'onnx' / 'openvino' to run the encoder's export (export.sh) from "
                "--encoder_file.", "choices": list(ENCODER_BACKENDS)})
    encoder_file: str | None = field(default=None, metadata={
        "help": "onnx / openvino query encoder: the exported file inside the encoder's folder (unset: the int8 one, "
                "as for --reranker_file)."})
    rerank_top_k: int = field(default=50, metadata={"help": "Hits the reranker re-scores (the top of the top_k)."})
    rerank_batch_size: int = field(default=64, metadata={"help": "Pairs per reranker forward pass."})
    rerank_max_length: int = field(default=512, metadata={"help": "Tokens per (query, passage) pair for the reranker."})
    search_params: str = field(default="{}", metadata={
        "help": "Search parameters as JSON, e.g. '{\"ef\": 128}' (HNSW) or '{\"nprobe\": 16}' (IVF_*)."})
    embedder: str | None = field(default=None, metadata={
        "help": "Query encoder. Unset: the model the collection records. Another one is refused unless it gives "
                "the same vectors (e.g. a copy of the model in another folder)."})
    dtype: str | None = field(default=None, metadata={
        "help": "Query encoder and reranker dtype (auto, float32, bfloat16, float16). Unset or auto: bf16 on GPUs, "
                "float32 on CPUs (one query at a time, CPU bf16 kernels are slower than fp32)."})
    warmup: int = field(default=5, metadata={"help": "Untimed warm-up queries before the timed ones."})
    rewriter: str | None = field(default=None, metadata={
        "help": "A query rewriter trained by Query-Expansion-RL/train.py (its folder): each query is rewritten "
                "before it is embedded (a term policy reads the top --rewrite_feedback hits of the query as typed); "
                "the reranker still reads the query as typed. Unset: no rewriting."})
    rewrite_feedback: int = field(default=10, metadata={
        "help": "With a term-policy rewriter: the hits of the query as typed whose words it may add."})

    def __post_init__(self):
        check_choices(self)
        if self.top_k < 1 or self.top_k > 16384:
            raise InputError(None, f"--top_k must be between 1 and 16384, got {self.top_k}")
        if self.rerank_top_k < 1:
            raise InputError(None, f"--rerank_top_k must be positive, got {self.rerank_top_k}")
        if self.warmup < 0:
            raise InputError(None, "--warmup must be 0 or more")
        parse_json_params(self.search_params, "--search_params")
        if self.rewrite_feedback < 1:
            raise InputError(None, f"--rewrite_feedback must be at least 1, got {self.rewrite_feedback}")


class Reranker:
    """Gives one raw relevance score per (query, passage) pair.

    - a CrossEncoder (`*ForSequenceClassification`, one label, e.g. bge-reranker-v2-m3 or a trained student):
      sentence-transformers, raw logit. A plain encoder (no classification head) gets a new one-label head,
      untrained and seeded: for smoke tests only, and said so.
    - a yes/no LLM reranker (`*ForCausalLM`, e.g. Qwen3-Reranker-8B, the Reranker-Distillation teacher):
      logit(yes) - logit(no) after its model-card prompt, through ragdistill.reranker.teachers (transformers, or
      vLLM with `backend="vllm"`), so the chain scores exactly as the teacher did in distillation.
    - a CrossEncoder as exported by the export stage (`backend="onnx"` or `"openvino"`, `file` inside its folder):
      the same sentence-transformers model with its transformer run by ONNX Runtime or OpenVINO on the CPU.
    """

    def __init__(self, model: str, max_length: int = 512, batch_size: int = 64, dtype: str | None = None,
                 backend: str = "torch", instruction: str | None = None, file: str | None = None):
        from ragdistill.core.models import read_model_config

        architectures = read_model_config(model, "reranker").get("architectures") or []
        self.name = model
        self.batch_size = batch_size
        self.model = self.llm_reranker = None
        self.backend = backend
        if any(name.endswith("ForCausalLM") for name in architectures):
            if backend in EXPORTED_BACKENDS:
                raise InputError(model, f"--reranker_backend {backend} runs exported CrossEncoders; this is a yes/no "
                                        "LLM reranker: use torch or vllm")
            from ragdistill.reranker.teachers import TeacherArguments, load_teacher

            options = TeacherArguments(teacher_model=model, backend=backend, teacher_max_length=max_length,
                                       teacher_dtype=serving_dtype(dtype),
                                     batch_size=batch_size)
            if not instruction and Path(model).is_dir():
                from ragdistill.reranker.training import saved_instruction

                instruction = saved_instruction(model)  # a trained student reranks with the prompt it learned
            if instruction:
                options.instruction = instruction
            self.llm_reranker = load_teacher(options)
            return
        from sentence_transformers import CrossEncoder

        kwargs = {}
        if not any(name.endswith("ForSequenceClassification") for name in architectures):
            logger.warning(f"{model} has no classification head; a new, untrained one-label head is added "
                           "(seeded, so runs repeat)")
            kwargs["num_labels"] = 1
            import torch

            torch.manual_seed(0)
        exported = backend in EXPORTED_BACKENDS
        self.model = CrossEncoder(model, max_length=max_length, device="cpu" if exported else default_device(),
                                  model_kwargs={"dtype": torch_dtype("float32" if exported else serving_dtype(dtype))},
                                  **kwargs)
        if self.model.num_labels != 1:
            raise InputError(model, f"not a reranker: {self.model.num_labels} labels, a reranker gives one score")
        if exported:
            from ragdistill.export.variants import exported_file, use_exported
            from ragdistill.reranker.pipeline import RerankerPipeline

            self.file = exported_file(backend, file)
            self.model = use_exported(self.model, RerankerPipeline(), Path(model) / self.file, backend)

    def score(self, query: str, passages: Sequence[str]) -> list[float]:
        if self.llm_reranker is not None:
            return [float(s) for s in self.llm_reranker.score([(query, passage) for passage in passages]).scores]
        import torch

        scores = self.model.predict([(query, passage) for passage in passages], batch_size=self.batch_size,
                                    activation_fn=torch.nn.Identity(), show_progress_bar=False)
        return [float(score) for score in scores]


def rerank(hits: list[Hit], scores: Sequence[float]) -> list[Hit]:
    """The reranked head (by score), then the rest in retrieval order with scores below the head's."""
    head = sorted((Hit(hit.doc_id, score, hit.text) for hit, score in zip(hits, scores)),
                  key=lambda hit: -hit.score)
    tail = hits[len(scores):]
    floor = min(scores) if len(scores) else 0.0
    return head + [Hit(hit.doc_id, floor - (i + 1), hit.text) for i, hit in enumerate(tail)]


class RetrievalChain:
    """Query -> vector -> Milvus top_k -> (reranker over the top rerank_top_k) -> ranked hits, timed."""

    def __init__(self, client, collection: CollectionInfo, encoder: Encoder, args: ChainArguments,
                 reranker: Reranker | None = None, rewriter=None):
        self.rewriter = rewriter
        self.rewrite_feedback = args.rewrite_feedback
        self.client = client
        self.collection = collection
        self.encoder = encoder
        self.reranker = reranker
        self.top_k = args.top_k
        self.rerank_top_k = min(args.rerank_top_k, args.top_k)
        self.search_params = parse_json_params(args.search_params, "--search_params")

    def rewrite(self, query: str) -> str:
        """The text to embed: the rewriter's rewrite of `query`, or `query` where there is no rewriter or the rewrite
        is unusable (empty, too long, a copy: the query as typed is never worse than nothing)."""
        if self.rewriter is None:
            return query
        feedback = None
        if self.rewriter.uses_feedback:
            from ragdistill.expansion.rewriters import Feedback

            vector = self.encoder.encode_queries([query])[0]
            hits = search(self.client, self.collection.name, vector, self.rewrite_feedback, self.collection.metric,
                          self.search_params, with_text=True)
            feedback = [Feedback([hit.text or "" for hit in hits], [hit.score for hit in hits])]
        rewrite = self.rewriter.rewrite([query], feedback)[0]
        return query if rewrite.problem else rewrite.text

    def run(self, query: str) -> tuple[list[Hit], dict[str, float]]:
        began = time.perf_counter()
        text = self.rewrite(query)
        rewritten = time.perf_counter()
        vector = self.encoder.encode_queries([text])[0]
        embedded = time.perf_counter()
        hits = search(self.client, self.collection.name, vector, self.top_k, self.collection.metric,
                      self.search_params, with_text=self.reranker is not None)
        searched = time.perf_counter()
        if self.reranker is not None and hits:
            head = hits[:self.rerank_top_k]
            hits = rerank(hits, self.reranker.score(query, [hit.text or "" for hit in head]))
        done = time.perf_counter()
        latency = {"rewrite_ms": (rewritten - began) * 1e3, "embed_ms": (embedded - rewritten) * 1e3,
                   "search_ms": (searched - embedded) * 1e3, "retrieve_ms": (searched - began) * 1e3,
                   "rerank_ms": (done - searched) * 1e3,
                   "total_ms": (done - began) * 1e3}
        return hits, {key: round(value, 3) for key, value in latency.items()}


# ----------------------------------------------------------------------------------------------------------------
# Files: TREC runs and latency lines
# ----------------------------------------------------------------------------------------------------------------
def run_stem(run_path: str | os.PathLike) -> Path:
    run_path = Path(run_path)
    return run_path.with_suffix("") if run_path.suffix in RUN_SUFFIXES else run_path


def latency_path(run_path: str | os.PathLike) -> Path:
    """runs/student.trec -> runs/student.latency.jsonl"""
    stem = run_stem(run_path)
    return stem.with_name(stem.name + ".latency.jsonl")


def trec_lines(qid: str, hits: Sequence[tuple[str, float]], tag: str) -> list[str]:
    return [f"{qid} Q0 {doc_id} {rank} {score:.6f} {tag}\n" for rank, (doc_id, score) in enumerate(hits, start=1)]


def read_trec_run(path: str | os.PathLike) -> dict[str, list[tuple[str, float]]]:
    """qid -> [(docid, score)] ranked by score (ties by rank); bad lines raise InputError naming file and line."""
    entries: dict[str, list[tuple[float, int, str]]] = {}
    seen: dict[str, set[str]] = {}
    for line_number, fields in iter_fields(path):
        if len(fields) != 6:
            raise InputError(path, f"expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}", line_number)
        qid, _, doc_id, rank, score, _ = fields
        try:
            rank_value, score_value = int(rank), float(score)
        except ValueError:
            raise InputError(path, f"rank '{rank}' must be an integer and score '{score}' a number",
                             line_number) from None
        if doc_id in seen.setdefault(qid, set()):
            raise InputError(path, f"document '{doc_id}' listed twice for query '{qid}'", line_number)
        seen[qid].add(doc_id)
        entries.setdefault(qid, []).append((score_value, rank_value, doc_id))
    if not entries:
        raise InputError(path, "empty run (no lines)")
    return {qid: [(doc_id, score) for score, _, doc_id in sorted(rows, key=lambda r: (-r[0], r[1]))]
            for qid, rows in entries.items()}


def read_latencies(path: str | os.PathLike) -> list[dict]:
    from ragdistill.core.jsonl import iter_jsonl

    rows = []
    for line, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("total_ms"), int | float):
            raise InputError(path, "expected a JSON object with a number 'total_ms'", line)
        rows.append(obj)
    return rows


def _queries_digest(queries: dict[str, str]) -> str:
    from ragdistill.core.resumable import fingerprint

    return fingerprint(sorted(queries.items()))


def run_queries(chain: RetrievalChain, queries: dict[str, str], run_path: str | os.PathLike, tag: str,
                description: dict, warmup: int = 5, chunk_size: int = 200, extra_metadata: dict | None = None) -> Path:
    """Run every query through the chain; write the TREC run, the latency lines and the metadata (resumable).

    `description` identifies the chain (chain_description): a resumed run must have the same one.
    """
    from tqdm.auto import tqdm

    from ragdistill.core.jsonl import atomic_open, dumps, iter_jsonl
    from ragdistill.core.resumable import ChunkedJob, fingerprint, meta_path

    if not queries:
        raise InputError(None, "no queries to run")
    if any(char.isspace() for char in tag) or not tag:
        raise InputError(None, f"--tag '{tag}' must be one word (it is the last column of the TREC run)")
    qids = list(queries)
    job_fingerprint = fingerprint(description, _queries_digest(queries), tag)
    job = ChunkedJob(run_path, job_fingerprint, len(qids), chunk_size)
    meta_path(run_path).unlink(missing_ok=True)  # an older run under this name no longer counts as finished
    pending = job.pending()
    if job.done_count():
        logger.info(f"resuming: {job.done_count()} of {job.num_chunks} query chunks already done")
    if pending:
        for qid in qids[:warmup]:
            chain.run(queries[qid])
    done = sum(len(job.chunk_range(i)) for i in set(range(job.num_chunks)) - set(pending))
    with tqdm(total=len(qids), initial=done, desc=f"searching ({tag})", unit="query") as progress:
        for index in pending:
            results = []
            for position in job.chunk_range(index):
                qid = qids[position]
                hits, latency = chain.run(queries[qid])
                results.append({"qid": qid, "hits": [[hit.doc_id, hit.score] for hit in hits], "latency": latency})
                progress.update(1)
            job.save_chunk(index, lambda handle, rows=results: handle.writelines(dumps(row) + "\n" for row in rows))

    chunks = job.chunk_paths()
    with atomic_open(latency_path(run_path)) as handle:
        for path in chunks:
            for _, row in iter_jsonl(path):
                handle.write(dumps({"qid": row["qid"], **row["latency"]}) + "\n")

    def write_run(handle) -> None:
        for path in chunks:
            for _, row in iter_jsonl(path):
                handle.writelines(trec_lines(row["qid"], [(doc, score) for doc, score in row["hits"]], tag))

    job.finish(write_run, {**description, **(extra_metadata or {}), "tag": tag, "num_queries": len(qids),
                           "latency_file": latency_path(run_path).name})
    return Path(run_path)


def redact_uri(uri: str) -> str:
    """A URI without credentials (https://user:password@host -> https://host), for files that get shared."""
    scheme, sep, rest = uri.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else uri


def chain_description(collection: CollectionInfo, args: ChainArguments, encoder: Encoder, uri: str) -> dict:
    """What identifies a chain (its resume fingerprint, and the evaluation table's columns)."""
    record = collection.record
    return {
        "collection": collection.name, "milvus_uri": redact_uri(uri),
        "embedder": record.model, "query_encoder": encoder.record.model, "dim": record.dim,
        "model_dim": record.model_dim, "normalize": record.normalize, "index_type": collection.index_type,
        "metric": collection.metric, "search_params": json.loads(args.search_params or "{}"), "top_k": args.top_k,
        "query_encoder_backend": serving_backend(args.encoder_backend, args.encoder_file),
        "reranker": args.reranker, "rerank_top_k": min(args.rerank_top_k, args.top_k) if args.reranker else None,
        "reranker_backend": serving_backend(args.reranker_backend, args.reranker_file) if args.reranker else None,
        "reranker_instruction": args.reranker_instruction if args.reranker else None,
        "corpus": collection.properties.get("ragdistill.corpus"),
        "rewriter": args.rewriter, "rewrite_feedback": args.rewrite_feedback if args.rewriter else None,
    }


def serving_backend(backend: str, file: str | None) -> str:
    """How a model of the chain runs, for its record and table: 'torch', 'vllm', or 'onnx:<file>'."""
    if backend in EXPORTED_BACKENDS:
        from ragdistill.export.variants import exported_file

        return f"{backend}:{exported_file(backend, file)}"
    return "torch" if backend == "torch" else backend
