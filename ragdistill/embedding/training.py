"""Stage 3 of Embedding-Distillation: the pieces behind train.py (the student, training rows, prompts).

The losses live in ragdistill.embedding.losses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ragdistill.core.cli import split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.resumable import require_complete
from ragdistill.embedding.rows import TRAINING_FORMATS

DEFAULT_LABEL_WEIGHT = 0.5  # measured with kl, module README
# Rows per step when --per_device_train_batch_size is not given. The label term's in-batch negatives need a full
# batch; the teacher alone learns more from more, smaller steps in the same minutes (all of WikiQA train, three seeds
# each: 54% -> 70% of the teacher gap, Quora -0.5% -> -0.1%; the label term at 4 lost 1.4% on Quora:
# docs/quality/label-free.md, "Smaller steps for the teacher alone").
LABEL_TERM_BATCH_SIZE = 16
TEACHER_ALONE_BATCH_SIZE = 4
STAGE1_COMMAND = "Embedding-Distillation/score.py (bash score.sh)"

logger = logging.getLogger(__name__)


def load_training_rows(paths: str | os.PathLike | Sequence[str | os.PathLike], max_rows: int = 0):
    """The stage-1 rows of one file or several (comma-separated, or a list) as one datasets.Dataset (columns: query,
    positive, negative..., label) and their metadata. Several files must come from the same teacher settings and
    hold rows of the same columns."""
    from datasets import concatenate_datasets

    if isinstance(paths, (str, os.PathLike)):
        paths = split_paths(os.fspath(paths))
    loaded = [_load_rows_file(path) for path in paths]
    if not loaded:
        raise InputError(None, "give --training_rows (the rows score.py wrote)")
    (dataset, meta), first = loaded[0], paths[0]
    for path, (other, other_meta) in zip(paths[1:], loaded[1:]):
        for key in ("teacher", "format", "query_prompt", "document_prompt"):
            if other_meta.get(key) != meta.get(key):
                raise InputError(path, f"its rows have {key} {other_meta.get(key)!r}, {first}'s "
                                       f"{meta.get(key)!r}: train on rows of one teacher setting")
        if other.column_names != dataset.column_names:
            raise InputError(path, f"columns {other.column_names} differ from {first}'s {dataset.column_names} "
                                   "(use the same --num_negatives in score.py)")
    if len(loaded) > 1:
        dataset = concatenate_datasets([rows for rows, _ in loaded])
    if max_rows:
        dataset = dataset.select(range(min(max_rows, len(dataset))))
    return dataset, meta


def _load_rows_file(path: str | os.PathLike):
    """One stage-1 output as a Dataset, and its metadata. Refuses an output that is not complete, or that holds no
    training rows."""
    from datasets import load_dataset

    meta = require_complete(path, STAGE1_COMMAND)
    if meta.get("format") not in TRAINING_FORMATS:
        raise InputError(path, f"holds '{meta.get('format')}' rows, not training rows; generate them with "
                               f"--format {' or --format '.join(TRAINING_FORMATS)}")
    try:
        dataset = load_dataset("json", data_files=os.fspath(path), split="train")
    except Exception as exc:  # datasets wraps JSON / schema errors in its own types
        raise InputError(path, f"cannot be read as training rows ({type(exc).__name__}: {exc})") from None
    text_columns = [name for name in dataset.column_names if name != "label"]
    if "label" not in dataset.column_names or not text_columns or text_columns[0] != "query":
        raise InputError(path, f"expected columns query, positive, negative..., label; got {dataset.column_names}")
    # The losses read columns in order: query first, candidates next, label last.
    dataset = dataset.select_columns([*text_columns, "label"])
    widths = {len(label) for label in dataset["label"]}
    if widths != {len(text_columns) - 1}:
        raise InputError(path, f"labels must hold one score per candidate column ({len(text_columns) - 1}); "
                               f"found lengths {sorted(widths)}")
    return dataset, meta


def default_label_weight(loss: str, label_weight: float | None, paths: Sequence[str]) -> float:
    """--label_weight as given, else DEFAULT_LABEL_WEIGHT with kl (where it was measured) and 0 with other losses;
    0 too, with a line saying so, for rows made from input without labels (their positives are the teacher's top
    candidates, no data labels), where a weight given is refused."""
    unlabelled = [path for path in paths if not require_complete(path, STAGE1_COMMAND).get("labelled", True)]
    if unlabelled:
        if label_weight:
            raise InputError(unlabelled[0], f"its rows come from input without labels: --label_weight {label_weight:g} "
                                            "has no data labels to weigh; set it to 0 (or leave it unset)")
        if loss == "kl" and label_weight is None:
            logger.info(f"{unlabelled[0]}: the input had no labels: training on the teacher alone (no label term)")
        return 0.0
    if label_weight is not None:
        return label_weight
    return DEFAULT_LABEL_WEIGHT if loss == "kl" else 0.0


def default_batch_size(label_weight: float) -> int:
    """train.py's rows per step (per GPU) when none is given: LABEL_TERM_BATCH_SIZE with the label term on,
    TEACHER_ALONE_BATCH_SIZE for the teacher alone."""
    return LABEL_TERM_BATCH_SIZE if label_weight else TEACHER_ALONE_BATCH_SIZE


def parse_dims(text: str | None) -> list[int]:
    """'1024,512,256' -> [1024, 512, 256]; empty -> []."""
    if not text:
        return []
    try:
        dims = [int(part) for part in str(text).replace(" ", "").split(",") if part]
    except ValueError:
        raise InputError(None, f"--matryoshka_dims must be comma-separated integers, got '{text}'") from None
    if any(dim <= 0 for dim in dims):
        raise InputError(None, f"--matryoshka_dims must be positive, got '{text}'")
    return sorted(set(dims), reverse=True)


def column_prompts(model, column_names: list[str]) -> dict[str, str] | None:
    """The student's own prompts per column: its 'query' prompt for the query column, its 'document' prompt (if
    any) for passage columns. None when it defines neither (most students, e.g. bge-m3)."""
    prompts = getattr(model, "prompts", None) or {}
    query_prompt = prompts.get("query") or ""
    document_prompt = prompts.get("document") or prompts.get("passage") or ""
    mapping = {}
    for column in column_names:
        if column == "label":
            continue
        prompt = query_prompt if column == "query" else document_prompt
        if prompt:
            mapping[column] = prompt
    return mapping or None


def adopt_teacher_prompts(model, meta: dict) -> bool:
    """An instruction-following student (one with a query prompt of its own, e.g. Qwen3-Embedding-0.6B) takes the
    teacher's prompts as stage 1 recorded them, so its queries carry exactly the instruction the teacher's did and
    its documents the teacher's document prompt (none for Qwen3-Embedding); saved with the model, they are what
    evaluation and serving prepend too. Other students (bge-m3, MiniLM) keep having none. Returns whether it did."""
    if not (getattr(model, "prompts", None) or {}).get("query") or not meta.get("query_prompt"):
        return False
    model.prompts = {**model.prompts, "query": meta["query_prompt"], "document": meta.get("document_prompt") or ""}
    return True


def record_matryoshka_dims(model, dims: list[int]) -> None:
    """Write the trained Matryoshka sizes into the saved config.json (`matryoshka_dimensions`), which vLLM's pooling
    runner reads to accept `dimensions=` requests."""
    if dims:
        model.transformers_model.config.matryoshka_dimensions = list(dims)


def card_facts(student: str, meta: dict, rows: str, num_rows: int, loss: str, prompts: dict | None,
               lora: str | None = None) -> list[str]:
    """The lines of the model card's distillation section (core.training.save_training_record writes them)."""
    facts = [f"Student: `{student}`", f"Teacher: `{meta['teacher']}`"]
    if prompts:
        facts.append("Prompts: " + ", ".join(f"{column} {prompt!r}" for column, prompt in prompts.items()))
    sources = ", ".join(f"`{path}`" for path in split_paths(rows))
    facts += [f"Training rows: {num_rows} {meta['format']} rows from {sources}", f"Loss: {loss}"]
    if lora:
        facts.append(f"Trained with {lora}; the adapters are merged into these weights")
    return facts


def load_student(model: str, max_seq_length: int = 0, dtype=None, device: str | None = None):
    """The student SentenceTransformer on `device` (training: the Trainer's device, see cross_encoder_training),
    cutting texts at `max_seq_length` tokens (training and evaluation of both students use the same length)."""
    import sentence_transformers

    from ragdistill.core.models import require_model_dir

    require_model_dir(model, "student model")
    kwargs = {"model_kwargs": {"dtype": dtype}} if dtype is not None else {}
    student = sentence_transformers.SentenceTransformer(model, device=device, **kwargs)
    if max_seq_length:
        student.max_seq_length = max_seq_length
    return student


def reranking_evaluator(path: str | os.PathLike | None, max_queries: int = 0, name: str = "dev",
                        batch_size: int = 32):
    """RerankingEvaluator over (the first `max_queries` queries of) an MTEB reranking file, for evaluation during
    training (None without a file)."""
    if not path:
        return None
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator

    from ragdistill.core.mteb import first_queries, iter_samples, require_labels

    samples = first_queries(iter_samples(path), max_queries)
    require_labels(path, samples, "evaluation during training (--eval_file)")
    return RerankingEvaluator([sample.as_dict() for sample in samples], name=name or Path(path).stem, batch_size=batch_size)
