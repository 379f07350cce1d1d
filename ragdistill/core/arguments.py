"""The argument groups that the same stage of both pipelines reads, defined once: a flag means the same thing in
every module (README, "One vocabulary"), and a stage script parses its group beside its own (core.cli.parse_args).

- `ScoringInputArguments`: stage 1 (score.py) of both pipelines: which MTEB files the teacher labels;
- `StudentTrainingArguments`: train.py of both pipelines: the student and the rows it learns from;
- `StudentEvaluationArguments`: evaluation.py of both pipelines: the student before and after training.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import DTYPES


def parse_num_negatives(value: str | int, auto_count: int, zero: int) -> int:
    """--num_negatives of both pipelines' row stages: a positive count, 'all' (returned as 0: every negative the row
    format allows) or 'auto' (the stage's own count, `auto_count`). A 0, from before the words, keeps what it meant
    in that stage (`zero`: Embedding-Distillation's meant all, Reranker-Distillation's auto)."""
    text = str(value).strip().lower()
    if text == "all":
        return 0
    if text == "auto":
        return auto_count
    if text == "0":
        return zero
    try:
        count = int(text)
    except ValueError:
        raise InputError(None, f"--num_negatives must be a positive number, 'all' or 'auto', got '{value}'") from None
    if count < 1:
        raise InputError(None, f"--num_negatives must be a positive number, 'all' or 'auto', got '{value}'")
    return count


def check_choices(arguments) -> None:
    """Refuse a value outside its field's `choices`: HfArgumentParser checks them on the command line, this also
    when arguments are built in Python. An argument dataclass calls it first thing in `__post_init__`."""
    for item in fields(arguments):
        choices = item.metadata.get("choices")
        value = getattr(arguments, item.name)
        if choices is not None and value not in choices:
            raise InputError(None, f"--{item.name} must be one of {', '.join(map(str, choices))}, got '{value}'")


@dataclass
class ScoringInputArguments:
    """Stage 1: the reranking files, .jsonl or .jsonl.gz: labelled ({query, positive: [...], negative: [...]}) or
    candidate lists without labels ({query, candidates: [...]}, ranked by the teacher alone)."""

    train_files: str = field(default="", metadata={
        "help": "Reranking file(s) whose queries train the student, comma-separated (labelled, or candidate lists)."})
    test_files: str = field(default="", metadata={
        "help": "Reranking file(s) the student is tested on, comma-separated: the teacher scores them too (its "
                "row in evaluation.py), and a warning says how many of their queries also appear in --train_files."})
    max_queries: int = field(default=0, metadata={"help": "Only the first N queries of each file (smoke runs); 0 = all."})
    skip_invalid: bool = field(default=False, metadata={
        "help": "Skip malformed input rows (counted and reported) instead of stopping at the first."})


@dataclass
class StudentTrainingArguments:
    """train.py: the student and the rows it learns from (the loss and its settings are the pipeline's own)."""

    student_model: str = field(default="", metadata={
        "help": "The student to train: a Hugging Face id or a local folder. Which kinds each pipeline trains (an "
                "encoder, a cross-encoder, an LLM of the teacher's family): the module README."})
    training_rows: str = field(default="", metadata={
        "help": "The teacher-labelled rows the stage before wrote, comma-separated (their .meta.json must say "
                "complete)."})
    max_seq_length: int = field(default=512, metadata={
        "help": "Student tokens per input: a text for an embedder, a (query, passage) pair for a reranker."})
    eval_file: str = field(default="", metadata={
        "help": "Optional MTEB reranking test file evaluated during training (with --eval_strategy steps "
                "--eval_steps N)."})
    eval_max_queries: int = field(default=0, metadata={"help": "Only the first N queries of --eval_file; 0 = all."})

    def __post_init__(self):
        if not self.student_model:
            raise InputError(None, "give --student_model (a Hugging Face id or a local folder)")
        if not self.training_rows:
            raise InputError(None, "give --training_rows (the rows the stage before wrote)")


@dataclass
class StudentEvaluationArguments:
    """evaluation.py: the student before and after training, measured alike."""

    student_model: str = field(default="", metadata={"help": "The student before training (what train.py started "
                                                             "from)."})
    trained_model: str = field(default="", metadata={"help": "The student after training (train.py's --output_dir)."})
    max_seq_length: int = field(default=512, metadata={
        "help": "Student tokens per input, before and after (as in train.py): the same cut for both, so the change "
                "measures the training only."})
    student_dtype: str = field(default="float32", metadata={
        "help": "Student dtype: float32 (the reference numbers), bfloat16, float16 or auto.", "choices": list(DTYPES)})
    student_batch_size: int = field(default=32, metadata={"help": "Inputs per student forward pass."})
    max_queries: int = field(default=0, metadata={"help": "Only the first N queries of each test file; 0 = all."})

    def __post_init__(self):
        check_choices(self)
        if not self.student_model or not self.trained_model:
            raise InputError(None, "give --student_model (before training) and --trained_model (after)")
        if not Path(self.trained_model).exists():
            raise InputError(self.trained_model, "trained model not found: run train.py (bash train.sh) first")
