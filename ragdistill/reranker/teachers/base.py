"""What every reranker teacher shares: its arguments, its kind (from the model's config.json), its settings, its output.

Two kinds of reranker teacher are understood, told apart by the architecture in the model's config.json:
- a yes/no LLM reranker (`*ForCausalLM`, e.g. Qwen3-Reranker-8B): score = logit("yes") - logit("no") after the
  model-card prompt (ragdistill.reranker.prompt);
- a cross-encoder (`*ForSequenceClassification` with one label, e.g. bge-reranker-v2-m3): score = its raw logit.
Any SentenceTransformer also serves as a third kind, a bi-encoder (backend `bi-encoder`).

Each teacher returns, besides the scores, the tokens each pair took and whether its text was cut to fit
`max_length`, so stage 1 reports tokens per pair and truncations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device
from ragdistill.core.models import architecture as model_architecture
from ragdistill.core.models import read_model_config
from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION

BACKENDS = ("vllm", "torch", "bi-encoder")
YES_NO_LLM, CROSS_ENCODER, BI_ENCODER = "yes/no LLM reranker", "cross-encoder", "bi-encoder"
# Qwen3-Reranker's context is 32k; 8192 covers nearly every passage and keeps memory sane. Users lower it.
DEFAULT_LLM_MAX_LENGTH = 8192


@dataclass
class TeacherArguments:
    """Which teacher scores the pairs, and how: the score stage's flags, and what load_teacher takes (as
    Embedding-Distillation's TeacherArguments; the vLLM engine's settings go beside them, as VLLMArguments)."""

    teacher_model: str = field(default="Qwen/Qwen3-Reranker-8B", metadata={
        "help": "Teacher: a yes/no LLM reranker (Qwen3-Reranker-*), a cross-encoder (bge-reranker-*), or for "
                "--backend bi-encoder any SentenceTransformer. Hub id or local folder."})
    backend: str = field(default="auto", metadata={
        "help": "vllm, torch or bi-encoder (an embedder as teacher); auto = vllm where a GPU and vLLM are present, "
                "else torch."})
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata={
        "help": "The <Instruct> of yes/no LLM rerankers: describe your retrieval task."})
    teacher_max_length: int = field(default=0, metadata={
        "help": "Max tokens per prompt; longer documents are cut (and counted). 0 = 8192 for yes/no LLM rerankers "
                "(lower it to save memory and time), the model's own limit otherwise."})
    teacher_dtype: str = field(default="auto", metadata={
        "help": "auto (bfloat16 on GPUs and CPUs with AMX or AVX512-BF16, else float32), float32, bfloat16 or "
                "float16."})
    batch_size: int = field(default=16, metadata={
        "help": "Pairs per forward pass (torch and bi-encoder backends; vLLM batches by itself)."})
    max_batch_tokens: int = field(default=0, metadata={
        "help": "torch backend: fill each forward pass up to this many padded tokens instead of --batch_size "
                "rows; 0 = 16384 on GPUs (fixed small batches leave a GPU idle), off on CPUs. Lower it on an "
                "out-of-memory."})
    share_prefixes: str = field(default="auto", metadata={
        "help": "torch backend, yes/no LLMs: compute each query's shared prompt prefix (system prompt, "
                "instruction, query) once as a KV cache and run only the passages' own tokens, many queries a "
                "batch; same scores. auto = on on CPUs (measured faster), off on GPUs (not measured there yet); "
                "on, off."})
    bi_encoder_scale: float = field(default=20.0, metadata={
        "help": "bi-encoder backend: score = cosine x this. Cosines span a narrow range; x20 (as in "
                "sentence-transformers' MarginMSE examples) gives logit-like margins."})
    device: str = field(default=None, metadata={"help": "torch/bi-encoder device; default cuda if present."})
    chunk_size: int = field(default=4096, metadata={
        "help": "Pairs per chunk: one vLLM call, one file on disk, the most a crash can lose. Keep it when resuming."})


@dataclass
class ScoredPairs:
    scores: list[float]
    num_tokens: list[int]  # tokens the teacher read for each pair
    truncated: list[bool]  # the pair's text was cut to fit max_length
    query_truncated: list[bool] = field(default_factory=list)  # yes/no LLM only: even the query did not fit
    cached_tokens: list[int] = field(default_factory=list)  # shared-prefix path only: per pair, tokens not computed


@dataclass
class TeacherSettings:
    """Everything that decides a teacher's scores (recorded in the metadata and the resume fingerprint)."""

    model: str
    backend: str
    kind: str
    dtype: str
    max_length: int
    instruction: str | None = None  # yes/no LLM rerankers only
    bi_encoder_scale: float | None = None  # bi-encoder only

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def reranker_kind(model: str) -> tuple[str, dict]:
    """YES_NO_LLM or CROSS_ENCODER from the architecture; anything else is not a reranker and is refused."""
    config = read_model_config(model, "teacher model")
    architecture = model_architecture(config)
    if architecture.endswith("ForCausalLM"):
        return YES_NO_LLM, config
    if architecture.endswith("ForSequenceClassification"):
        num_labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)  # transformers' default: 2
        if num_labels != 1:
            raise InputError(model, f"not a reranker: {architecture} has {num_labels} labels, a cross-encoder "
                                    "teacher needs exactly one relevance logit")
        return CROSS_ENCODER, config
    raise InputError(model, f"not a reranker: architecture {architecture} has neither a language-model head (a yes/no "
                            "reranker like Qwen3-Reranker) nor a one-label classification head (a cross-encoder). "
                            "For an embedding model use --backend bi-encoder")


def _max_positions(config: dict) -> int | None:
    text_config = config.get("text_config") or config
    return text_config.get("max_position_embeddings")


def resolve_max_length(model: str, kind: str, config: dict, requested: int) -> int:
    """0 = automatic: 8192 for yes/no LLMs (capped at the model's positions), the model's own limit otherwise."""
    positions = _max_positions(config)
    if requested:
        if positions and requested > positions and kind == YES_NO_LLM:
            raise InputError(model, f"--teacher_max_length {requested} exceeds the model's {positions} positions")
        return requested
    if kind == YES_NO_LLM:
        return min(DEFAULT_LLM_MAX_LENGTH, positions or DEFAULT_LLM_MAX_LENGTH)
    return 0  # cross-encoders and bi-encoders: the model's own max_seq_length, read after loading


class Teacher:
    """Scores (query, passage) pairs. Subclasses set `settings` and implement `score`."""

    settings: TeacherSettings

    def score(self, pairs: Sequence[tuple[str, str]]) -> ScoredPairs:
        raise NotImplementedError

    @property
    def device(self) -> str:
        return default_device()


def pair_token_counts(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[list[int], list[bool]]:
    """Tokens each pair takes as cross-encoder input (capped at max_length), and whether it had to be cut."""
    encoded = tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return [min(n, max_length) for n in lengths], [n > max_length for n in lengths]

