"""Stage 3 of Reranker-Distillation: what train.py needs around sentence-transformers' CrossEncoderTrainer.

- the student: any CrossEncoder, or a plain Hugging Face encoder (CrossEncoder(path, num_labels=1) adds a freshly
  initialised one-logit head), or a yes/no LLM reranker (Qwen3-Reranker-0.6B) reading the teacher's prompt;
- the rows of stage 2 as a `datasets.Dataset` with the columns in the order the loss reads them, checked against
  the loss (`margin_mse`: ntuple or triplet rows; `listnet` / `lambda`: listwise rows; `mse`: ntuple or listwise
  rows, turned into (query, passage, teacher score) pairs);
- what the model card's distillation section says (teacher, instruction, data, loss); the losses live in
  ragdistill.reranker.losses.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.resumable import meta_path
from ragdistill.reranker.losses import LABEL_LOSSES, LOSSES
from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, chat_template, template_instruction, yes_no_token_ids

logger = logging.getLogger(__name__)

DEFAULT_LABEL_WEIGHT = 0.5  # measured with listnet, module README
LAMBDA_LABELS = ("sigmoid", "minmax", "raw")
_LOSS_FORMATS = {"margin_mse": ("ntuple", "triplet"), "listnet": ("listwise",), "lambda": ("listwise",),
                 "mse": ("ntuple", "listwise")}


def student_has_trained_head(model: str) -> bool:
    """False for a plain encoder (BertModel, XLMRobertaModel, ...): CrossEncoder gives it a fresh random head."""
    from ragdistill.core.models import architecture, read_model_config

    return architecture(read_model_config(model, "student model")).endswith(("ForSequenceClassification",
                                                                           "ForCausalLM"))


NEW_HEAD_LEARNING_RATE = 1e-4
TRAINED_HEAD_LEARNING_RATE = 1e-5


def default_learning_rate(model: str) -> float:
    """train.py's default learning rate: a student whose reranking head is new (a plain encoder) needs 10x the rate of
    one that is a reranker already, whose trained head a high rate would throw away (measured, module README)."""
    return TRAINED_HEAD_LEARNING_RATE if student_has_trained_head(model) else NEW_HEAD_LEARNING_RATE


def load_student(model: str, max_seq_length: int = 0, dtype=None, device: str | None = None,
                 instruction: str | None = None):
    """The student CrossEncoder with one output logit, on `device` (training: the Trainer's device; left to
    sentence-transformers, a torchrun rank would pick cuda:<local rank> even for a --use_cpu run).

    A yes/no LLM reranker (a `*ForCausalLM`, e.g. Qwen3-Reranker-0.6B) loads as [Transformer, LogitScore]: its score
    is logit("yes") - logit("no") at the last position. It reads the teacher's prompt, token for token: its chat
    template becomes `prompt.chat_template(instruction)` (instruction None: the one a trained student saved, else
    Qwen3-Reranker's default), and its output layer runs in fp32 whatever the dtype, so the score is an fp32
    difference as the teacher's is (in bf16, distinct pairs would tie on bf16's coarse grid)."""
    from sentence_transformers import CrossEncoder

    from ragdistill.core.models import require_model_dir

    require_model_dir(model, "student model")
    kwargs = {"model_kwargs": {"dtype": dtype}} if dtype else {}
    try:
        student = CrossEncoder(model, num_labels=1, max_length=max_seq_length or None, device=device, **kwargs)
    except OSError as exc:
        raise InputError(model, f"cannot load the student: {exc}") from None
    if student.num_labels != 1:
        raise InputError(model, f"the student has {student.num_labels} output labels; distillation needs one")
    if is_yes_no_llm(student):
        yes_no_token_ids(student.tokenizer, model)
        instruction = instruction or student_instruction(student) or DEFAULT_INSTRUCTION
        student.tokenizer.chat_template = chat_template(instruction)
        output_layer = student.transformers_model.get_output_embeddings()
        student.set_keep_in_fp32_modules([name for name, module in student.named_modules() if module is output_layer])
    return student


def is_yes_no_llm(student) -> bool:
    """A CrossEncoder that scores with a causal LM's yes/no logits (sentence-transformers' LogitScore module)."""
    from sentence_transformers.cross_encoder.modules.logit_score import LogitScore

    return any(isinstance(module, LogitScore) for module in student)


def saved_instruction(model_dir: str | Path) -> str | None:
    """The instruction a trained yes/no LLM student was saved with (its chat_template.jinja), else None."""
    path = Path(model_dir) / "chat_template.jinja"
    return template_instruction(path.read_text(encoding="utf-8")) if path.exists() else None


def student_instruction(student) -> str | None:
    """The instruction in a yes/no LLM student's prompt (None for other students, or a template not ours)."""
    return template_instruction(student.tokenizer.chat_template) if is_yes_no_llm(student) else None


def row_format(path: str | Path) -> str:
    """ntuple, triplet or listwise, from the keys of the first row of a stage-2 file."""
    keys = first_row_keys(path)
    if {"query", "documents", "scores"} <= keys:
        return "listwise"
    if {"query", "positive", "negative_1", "label"} <= keys:
        return "ntuple"
    if {"query", "positive", "negative", "score"} <= keys:
        return "triplet"
    raise InputError(path, f"not stage-2 rows: keys {sorted(keys)}; expected ntuple, triplet or listwise rows "
                           "from rows.py", 1)


def default_label_weight(loss: str, label_weight: float | None, paths: Sequence[str]) -> float:
    """--label_weight as given; unset: DEFAULT_LABEL_WEIGHT with listnet on rows that carry the data's labels
    (relevance), else 0 (rows without them are trained on the teacher alone, and a warning says why)."""
    if label_weight is not None:
        return label_weight
    if loss not in LABEL_LOSSES:
        return 0.0
    unlabelled = files_without_labels(paths)
    if unlabelled:
        logger.warning(f"{unlabelled[0]}: the rows carry no data labels (relevance): training on the teacher alone "
                       f"(stage 2 adds them where the files stage 1 scored have labels and are still there)")
        return 0.0
    return DEFAULT_LABEL_WEIGHT


def files_without_labels(paths: Sequence[str]) -> list[str]:
    """The stage-2 files whose rows carry no data labels (relevance)."""
    return [path for path in paths if "relevance" not in first_row_keys(path)]


def first_row_keys(path: str | Path) -> set[str]:
    """The keys of the first row of a stage-2 file."""
    import gzip

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), None)
    if first is None:
        raise InputError(path, "file is empty (no training rows)")
    try:
        keys = set(json.loads(first))
    except (json.JSONDecodeError, TypeError):
        raise InputError(path, "malformed JSON", 1) from None
    return keys


def _ordered_columns(fmt: str, column_names: Sequence[str], label_weight: float = 0.0) -> list[str]:
    if fmt == "listwise":  # the loss reads the inputs first (the data's labels among them), the teacher's scores last
        return ["query", "documents", "relevance", "scores"] if label_weight else ["query", "documents", "scores"]
    if fmt == "triplet":
        return ["query", "positive", "negative", "score"]
    negatives = sorted((c for c in column_names if c.startswith("negative_")), key=lambda c: int(c.split("_")[1]))
    return ["query", "positive", *negatives, "label"]


def _lambda_labels(scores: list[float], mode: str) -> list[float]:
    """LambdaLoss reads labels as graded relevance (gain 2^label - 1, negatives clamped to 0)."""
    if mode == "sigmoid":  # the teacher's probability of relevance, for log-odds scores (yes/no, cross-encoders)
        return [1.0 / (1.0 + math.exp(-s)) if s > -700 else 0.0 for s in scores]
    if mode == "minmax":  # per query, best -> 1, worst -> 0: scale-free, e.g. for bi-encoder teachers
        low, high = min(scores), max(scores)
        return [(s - low) / (high - low) if high > low else 0.0 for s in scores]
    return list(scores)


def _pointwise(rows: dict, fmt: str) -> dict:
    """Batched map: ntuple / listwise rows -> distinct (query, passage, score) rows for MSELoss."""
    out = {"query": [], "passage": [], "score": []}
    for i, query in enumerate(rows["query"]):
        if fmt == "listwise":
            texts, scores = rows["documents"][i], rows["scores"][i]
        else:
            negatives = sorted((c for c in rows if c.startswith("negative_")), key=lambda c: int(c.split("_")[1]))
            texts = [rows["positive"][i]] + [rows[c][i] for c in negatives]
            scores = rows["label"][i]
        for text, score in zip(texts, scores):
            out["query"].append(query)
            out["passage"].append(text)
            out["score"].append(score)
    return out


def load_training_rows(paths: Sequence[str], loss: str, lambda_labels: str = "sigmoid", label_weight: float = 0.0):
    """The stage-2 rows as a Dataset laid out for `loss` (and its label term, with `label_weight` > 0)."""
    import datasets

    if loss not in LOSSES:
        raise InputError(None, f"unknown --loss '{loss}', expected one of {', '.join(LOSSES)}")
    formats = {str(p): row_format(p) for p in paths}
    if len(set(formats.values())) != 1:
        raise InputError(None, f"training files of different formats: {formats}")
    fmt = next(iter(formats.values()))
    if fmt not in _LOSS_FORMATS[loss]:
        wanted = " or ".join(_LOSS_FORMATS[loss])
        raise InputError(paths[0], f"--loss {loss} needs {wanted} rows, this file holds {fmt} rows: re-run stage 2 "
                                   f"(rows.py) with --format {_LOSS_FORMATS[loss][0]}")
    if label_weight and loss not in LABEL_LOSSES:
        raise InputError(None, f"--label_weight goes with --loss {' or '.join(LABEL_LOSSES)}, not {loss}")
    unlabelled = files_without_labels(paths) if label_weight else []
    if unlabelled:
        raise InputError(unlabelled[0], "--label_weight needs the data's labels in the rows (relevance), and these "
                                        "rows have none: re-run stage 2 (rows.py) where the MTEB files stage 1 "
                                        "scored are")
    dataset = datasets.load_dataset("json", data_files=[str(p) for p in paths], split="train")
    dataset = dataset.select_columns(_ordered_columns(fmt, dataset.column_names, label_weight))
    if loss == "mse":
        dataset = dataset.map(_pointwise, batched=True, remove_columns=dataset.column_names, fn_kwargs={"fmt": fmt})
        # A passage that is a negative for several positives is one pair, trained on once.
        seen: set[tuple[str, str]] = set()
        keep = []
        for i, (query, passage) in enumerate(zip(dataset["query"], dataset["passage"])):
            if (query, passage) not in seen:
                seen.add((query, passage))
                keep.append(i)
        dataset = dataset.select(keep)
    elif loss == "lambda":
        dataset = dataset.map(lambda row: {"scores": _lambda_labels(row["scores"], lambda_labels)})
    return dataset, fmt


def rows_provenance(paths: Sequence[str]) -> dict:
    """What stage 2 recorded about the rows (teacher, score files, settings), and what stage 1 recorded about the
    teacher's prompt (instruction, max length) beside its score files, where those are there."""
    info: dict = {"teachers": [], "score_files": [], "settings": None, "instructions": [], "teacher_max_length": None}
    for path in paths:
        meta = meta_path(path)
        if meta.exists():
            data = read_json(meta)
            info["teachers"] += [t for t in data.get("teachers", []) if t not in info["teachers"]]
            info["score_files"] += data.get("score_files", [])
            info["settings"] = info["settings"] or data.get("settings")
    for score_file in info["score_files"]:
        if meta_path(score_file).exists():
            scored = read_json(meta_path(score_file))
            if scored.get("instruction") and scored["instruction"] not in info["instructions"]:
                info["instructions"].append(scored["instruction"])
            info["teacher_max_length"] = info["teacher_max_length"] or scored.get("max_length")
    return info


def teacher_instruction(provenance: dict, path: str) -> str | None:
    """The one instruction the teacher's prompt carried in stage 1 (None if it recorded none)."""
    if len(provenance["instructions"]) > 1:
        raise InputError(path, f"the rows come from teacher scores of different instructions "
                               f"{provenance['instructions']}: pass the student's with --instruction")
    return provenance["instructions"][0] if provenance["instructions"] else None


def card_facts(student: str, teacher: str, train_files: Sequence[str], fmt: str, loss: str, num_rows: int,
               provenance: dict, instruction: str | None = None, lora: str | None = None,
               label_weight: float = 0.0) -> list[str]:
    """The lines of the model card's distillation section (core.training.save_training_record writes them)."""
    settings = provenance.get("settings") or {}
    facts = [f"Student: `{student}`", f"Teacher: `{teacher}`"]
    if instruction:
        facts.append(f"Instruction: {instruction} (the teacher's prompt, token for token)")
    facts.append(f"Training rows: {num_rows} {fmt} rows from {', '.join(f'`{p}`' for p in train_files)}")
    if provenance.get("score_files"):
        facts.append(f"Teacher scores: {', '.join(f'`{p}`' for p in provenance['score_files'])}")
    if settings:
        facts.append(f"Rows: top {settings.get('top_k')} passages by teacher score as positives, "
                     f"{settings.get('num_negatives')} {settings.get('negative_sampling')} negatives each")
    facts.append(f"Loss: {loss}" + (f" + {label_weight:g} x the data's own labels" if label_weight else ""))
    if lora:
        facts.append(f"Trained with {lora}; the adapters are merged into these weights")
    return facts


def reranking_evaluator(path: str | None, max_queries: int = 0, name: str = "eval"):
    """CrossEncoderRerankingEvaluator over (the first `max_queries` queries of) an MTEB reranking file, for
    evaluation during training (None without a file)."""
    if not path:
        return None
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    from ragdistill.core.mteb import require_labels
    from ragdistill.reranker.evaluation import read_test_samples

    samples = read_test_samples(path, max_queries)
    require_labels(path, samples, "evaluation during training (--eval_file)")
    return CrossEncoderRerankingEvaluator([sample.as_dict() for sample in samples], name=name, at_k=10)
