"""Stage 2 of Embedding-Distillation: the pieces behind train.py (training rows, loss, prompts).

Losses (all compare the student's cosine similarities with the teacher's, so the rows' labels mean the same to each):
- kl: sentence-transformers' DistillKLDivLoss, a softmax over each row's candidates for teacher and student. Cosine
  similarities live in a narrow range, so at temperature 1 the teacher's distribution is almost uniform and carries
  little of its ranking; a sharp temperature (default 0.05) fixes that.
- margin_mse: MarginMSELoss, the student's sim(q, pos) - sim(q, neg_i) regressed onto the teacher's.
- mse: pointwise, the student's sim(q, passage) regressed onto the teacher's for every passage of the row.

With --label_weight w > 0 the data's own labels join the teacher's (DistillationWithLabels): the row's positive is a
labelled positive, so w x MultipleNegativesRankingLoss (its negatives: the row's and every other candidate of the
batch, at the same temperature) is added to the KL divergence.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ragdistill.core.cli import split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.resumable import require_complete
from ragdistill.embedding.rows import TRAINING_FORMATS

LOSSES = ("kl", "margin_mse", "mse")
DEFAULT_TEMPERATURE = 0.05
DEFAULT_LABEL_WEIGHT = 0.5  # measured with kl, module README
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


def embed_columns(model, sentence_features) -> list[torch.Tensor]:
    """Each input column's sentence embeddings, one forward pass per column: sentence-transformers' documented
    custom-loss pattern (MatryoshkaLoss, wrapped around these losses, truncates what `model(...)` returns)."""
    return [model(features)["sentence_embedding"] for features in sentence_features]


class SimilarityMSELoss(nn.Module):
    """Pointwise distillation: MSE between the student's and the teacher's similarity of each (query, passage)."""

    def __init__(self, model, similarity_fct=None):
        super().__init__()
        from sentence_transformers.util import pairwise_cos_sim

        self.model = model
        self.similarity_fct = similarity_fct or pairwise_cos_sim
        self.loss_fct = nn.MSELoss()

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        query = embeddings[0]
        scores = torch.stack([self.similarity_fct(query, other) for other in embeddings[1:]], dim=1)
        return self.loss_fct(scores, labels.to(scores.dtype))

    def get_config_dict(self) -> dict:
        return {"similarity_fct": "pairwise_cos_sim"}


class DistillationWithLabels(nn.Module):
    """The KL divergence of the student's softmax over each row's candidates (cosines / student temperature) from
    the teacher's (its labels / teacher temperature), plus `label_weight` x the cross-entropy of the labelled
    positive against the row's negatives and the batch's other candidates (MultipleNegativesRankingLoss's term,
    cosines x 1 / student temperature). The columns are embedded once for both terms.

    The KL term is DistillKLDivLoss's without its factor T^2 (which keeps its gradient independent of T): the
    cross-entropy has none, so the two terms weigh as `label_weight` says (at T = 0.05 the scaled KL term alone would
    be 400 times too small). tests/test_embedding_training.py checks both terms against the library's losses."""

    def __init__(self, model, label_weight: float, temperature: float, student_temperature: float | None = None,
                 teacher_temperature: float | None = None):
        super().__init__()
        self.model = model
        self.label_weight = label_weight
        self.temperature = temperature
        self.student_temperature = temperature if student_temperature is None else student_temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        self.scale = 1.0 / self.student_temperature

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        from sentence_transformers.util import cos_sim, pairwise_cos_sim

        query, candidates = embeddings[0], embeddings[1:]
        student = torch.stack([pairwise_cos_sim(query, other) for other in candidates], dim=1)
        teacher = (labels.detach() / self.teacher_temperature).softmax(dim=1)
        kl = nn.functional.kl_div((student / self.student_temperature).log_softmax(dim=1), teacher,
                                  reduction="batchmean")
        # Row i's positive is column i of the candidates, the positives first, then each negative column.
        in_batch = cos_sim(query, torch.cat(candidates)) * self.scale
        cross_entropy = nn.functional.cross_entropy(in_batch, torch.arange(len(query), device=in_batch.device))
        return kl + self.label_weight * cross_entropy

    def get_config_dict(self) -> dict:
        config = {"similarity_fct": "pairwise_cos_sim", "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        return {**config, "label_weight": self.label_weight, "labels_loss": "MultipleNegativesRankingLoss",
                "labels_scale": self.scale}


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


def build_loss(model, name: str = "kl", temperature: float = DEFAULT_TEMPERATURE,
               student_temperature: float | None = None, teacher_temperature: float | None = None,
               matryoshka_dims: list[int] | None = None, label_weight: float = 0.0) -> nn.Module:
    """The distillation loss on cosine similarities (what the labels hold and what RerankingEvaluator ranks by),
    plus the data's labels with weight `label_weight` (kl only), wrapped in MatryoshkaLoss when dimensions are
    given."""
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.util import pairwise_cos_sim

    if name not in LOSSES:
        raise InputError(None, f"--loss must be one of {', '.join(LOSSES)}, got '{name}'")
    if label_weight < 0:
        raise InputError(None, f"--label_weight must be 0 or more, got {label_weight}")
    if label_weight and name != "kl":
        raise InputError(None, f"--label_weight works with --loss kl, not '{name}'")
    temperatures = {"--temperature": temperature, "--student_temperature": student_temperature,
                    "--teacher_temperature": teacher_temperature}
    for flag, value in temperatures.items():
        if value is not None and not 0 < value < math.inf:
            raise InputError(None, f"{flag} must be a positive number, got {value}")
    if name == "kl" and label_weight:
        loss = DistillationWithLabels(model, label_weight, temperature, student_temperature, teacher_temperature)
    elif name == "kl":
        loss = losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, temperature=temperature,
                                       student_temperature=student_temperature,
                                       teacher_temperature=teacher_temperature)
    elif name == "margin_mse":
        loss = losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
    else:
        loss = SimilarityMSELoss(model, pairwise_cos_sim)
    if matryoshka_dims:
        dimension = model.get_embedding_dimension()
        too_big = [dim for dim in matryoshka_dims if dim > dimension]
        if too_big:
            raise InputError(None, f"--matryoshka_dims {too_big} exceed the student's embedding dimension {dimension}")
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims)
    return loss


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


def load_student(model_name: str, max_seq_length: int | None = None, device: str | None = None, dtype=None):
    """The student SentenceTransformer on `device` (training: the Trainer's device, see cross_encoder_training),
    cutting texts at `max_seq_length` tokens (training and evaluation of both students use the same length)."""
    import sentence_transformers

    from ragdistill.core.models import require_model_dir

    require_model_dir(model_name, "student model")
    kwargs = {"model_kwargs": {"dtype": dtype}} if dtype is not None else {}
    model = sentence_transformers.SentenceTransformer(model_name, device=device, **kwargs)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


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
