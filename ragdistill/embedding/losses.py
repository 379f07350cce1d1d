"""The losses of Embedding-Distillation (sentence-transformers' own where one fits, else a module in its
custom-loss pattern), and `build_loss`, which picks one from train.py's --loss.

Losses (all compare the student's cosine similarities with the teacher's, so the rows' labels mean the same to each):
- kl: DistillKLDivLoss's KL divergence (DistillationWithLabels computes it), a softmax over each row's candidates for
  teacher and student. Cosine similarities live in a narrow range, so at temperature 1 the teacher's distribution is
  almost uniform and carries little of its ranking; a sharp temperature (default 0.05) fixes that.
- margin_mse: MarginMSELoss's term (SimilarityMarginMSELoss computes it), the student's sim(q, pos) - sim(q, neg_i)
  regressed onto the teacher's.
- mse: pointwise, the student's sim(q, passage) regressed onto the teacher's for every passage of the row.

With --label_weight w > 0 the data's own labels join the teacher's: the row's positive is a labelled positive, so
w x MultipleNegativesRankingLoss (its negatives: the row's and every other candidate of the batch, at the same
temperature) is added to the KL divergence.

Every loss runs in this module, one forward pass per column: the library's losses now embed the candidate columns in
one merged pass padded to the longest text of them all (faster on a GPU), and on all of WikiQA train (teacher only,
2-core build machine) DistillKLDivLoss grew to 24 GiB and was killed after 45 of 54 steps, MarginMSELoss peaked at
24.3 GiB; with this module's passes they stayed near 4.4 and 5.6 GiB (docs/performance.md).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ragdistill.core.errors import InputError

LOSSES = ("kl", "margin_mse", "mse")
# What the labels' positive is scored against: the batch's candidates too (MultipleNegativesRankingLoss; the
# default, measured in the demo), or its row's own candidates only (measured: docs/quality/label-free.md).
LABEL_NEGATIVES = ("batch", "row")
DEFAULT_TEMPERATURE = 0.05


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


class SimilarityMarginMSELoss(SimilarityMSELoss):
    """MarginMSELoss's term: MSE between the student's margins sim(q, pos) - sim(q, neg_i) and the teacher's, from
    labels of the row's n + 1 teacher scores [pos, neg_1..neg_n] (or the n margins themselves).
    tests/test_embedding_training.py checks it against the library's loss."""

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        query, positive, negatives = embeddings[0], embeddings[1], embeddings[2:]
        positive_scores = self.similarity_fct(query, positive)
        margins = torch.stack([positive_scores - self.similarity_fct(query, other) for other in negatives], dim=1)
        labels = labels.detach().to(margins.dtype)
        if labels.dim() == 1:
            labels = labels.unsqueeze(1)
        if labels.shape[1] == len(negatives) + 1:  # teacher scores: the positive's first
            labels = labels[:, :1] - labels[:, 1:]
        if labels.shape != margins.shape:
            raise InputError(None, f"margin_mse rows need {len(negatives) + 1} teacher scores or {len(negatives)} "
                                   f"margins per row, got labels of shape {tuple(labels.shape)}")
        return self.loss_fct(margins, labels)


class DistillationWithLabels(nn.Module):
    """The KL divergence of the student's softmax over each row's candidates (cosines / student temperature) from
    the teacher's (its labels / teacher temperature), plus `label_weight` (0: the teacher alone) x the cross-entropy
    of the labelled positive against the row's negatives and the batch's other candidates
    (MultipleNegativesRankingLoss's term, cosines x 1 / student temperature), or, with `label_negatives="row"`,
    against the row's own negatives only (the hard negatives the teacher also ranks, as Reranker-Distillation's label
    term; trained on a domain unlike the test sets it forgets less out of domain: docs/quality/label-free.md). The
    columns are embedded once for both terms.

    The KL term is DistillKLDivLoss's without its factor T^2 (which keeps its gradient independent of T): the
    cross-entropy has none, so the two terms weigh as `label_weight` says (at T = 0.05 the scaled KL term alone would
    be 400 times too small). tests/test_embedding_training.py checks both terms against the library's losses."""

    def __init__(self, model, label_weight: float, temperature: float, student_temperature: float | None = None,
                 teacher_temperature: float | None = None, label_negatives: str = "batch", start_model=None,
                 self_distillation_weight: float = 0.0):
        super().__init__()
        if label_negatives not in LABEL_NEGATIVES:
            raise InputError(None, f"--label_negatives must be one of {', '.join(LABEL_NEGATIVES)}, got "
                                   f"'{label_negatives}'")
        self.model = model
        self.label_weight = label_weight
        self.label_negatives = label_negatives
        self.temperature = temperature
        self.student_temperature = temperature if student_temperature is None else student_temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        self.scale = 1.0 / self.student_temperature
        if self_distillation_weight and start_model is None:
            raise InputError(None, "--self_distillation_weight needs the starting student")
        self.start_model = start_model
        self.self_distillation_weight = self_distillation_weight

    def forward(self, sentence_features, labels: torch.Tensor) -> torch.Tensor:
        start = None
        if self.self_distillation_weight:
            self.start_model.eval()  # no dropout: the same targets at every step
            with torch.no_grad():  # on shallow copies, as GISTEmbedLoss runs its guide: a model writes into them
                start = embed_columns(self.start_model, [dict(features) for features in sentence_features])
        return self.compute_loss_from_embeddings(embed_columns(self.model, sentence_features), labels, start)

    def compute_loss_from_embeddings(self, embeddings: list[torch.Tensor], labels: torch.Tensor,
                                     start_embeddings: list[torch.Tensor] | None = None) -> torch.Tensor:
        if start_embeddings is not None:
            held = unjudged_similarity_kl(embeddings, start_embeddings, self.student_temperature)
            return self._teacher_and_labels(embeddings, labels) + self.self_distillation_weight * held
        return self._teacher_and_labels(embeddings, labels)

    def _teacher_and_labels(self, embeddings: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        from sentence_transformers.util import cos_sim, pairwise_cos_sim

        query, candidates = embeddings[0], embeddings[1:]
        student = torch.stack([pairwise_cos_sim(query, other) for other in candidates], dim=1)
        teacher = (labels.detach() / self.teacher_temperature).softmax(dim=1)
        kl = nn.functional.kl_div((student / self.student_temperature).log_softmax(dim=1), teacher,
                                  reduction="batchmean")
        if not self.label_weight:
            return kl
        if self.label_negatives == "row":  # the positive is the row's first candidate
            own = student * self.scale
            cross_entropy = nn.functional.cross_entropy(own, torch.zeros(len(query), dtype=torch.long,
                                                                         device=own.device))
        else:  # row i's positive is column i of the candidates, the positives first, then each negative column
            in_batch = cos_sim(query, torch.cat(candidates)) * self.scale
            cross_entropy = nn.functional.cross_entropy(in_batch, torch.arange(len(query), device=in_batch.device))
        return kl + self.label_weight * cross_entropy

    def get_config_dict(self) -> dict:
        config = {"similarity_fct": "pairwise_cos_sim", "temperature": self.temperature}
        if self.student_temperature != self.temperature:
            config["student_temperature"] = self.student_temperature
        if self.teacher_temperature != self.temperature:
            config["teacher_temperature"] = self.teacher_temperature
        if self.self_distillation_weight:
            config["self_distillation_weight"] = self.self_distillation_weight
        if not self.label_weight:  # the teacher alone
            return config
        labels_loss = ("MultipleNegativesRankingLoss" if self.label_negatives == "batch"
                       else "cross-entropy over the row's candidates")
        return {**config, "label_weight": self.label_weight, "labels_loss": labels_loss, "labels_scale": self.scale}


def unjudged_similarity_kl(embeddings: list[torch.Tensor], start_embeddings: list[torch.Tensor],
                           temperature: float) -> torch.Tensor:
    """The starting student as a second teacher, on the pairs the teacher does not judge: for each text of the
    batch (queries and candidates), the KL divergence of the student's softmax over its cosines with the batch's
    other texts from the starting student's, leaving out the text itself and, for a query and its own row's
    candidates, the pairs the teacher scored. Columns as the loss gets them: queries first, then each candidate
    column, row i of every column one row."""
    from sentence_transformers.util import cos_sim

    rows = len(embeddings[0])
    student, start = torch.cat(embeddings), torch.cat(start_embeddings).to(embeddings[0].dtype)
    index = torch.arange(len(student), device=student.device)
    row, is_query = index % rows, index < rows
    judged = (row[:, None] == row[None, :]) & (is_query[:, None] != is_query[None, :])
    left_out = judged | (index[:, None] == index[None, :])
    has_partner = ~left_out.all(dim=1)
    if not has_partner.any():
        return student.sum() * 0.0
    left_out, keep = left_out[has_partner], ~left_out[has_partner]
    student_logits = (cos_sim(student[has_partner], student) / temperature).masked_fill(left_out, float("-inf"))
    start_logits = (cos_sim(start[has_partner], start) / temperature).masked_fill(left_out, float("-inf"))
    target_log = start_logits.log_softmax(dim=1)
    pointwise = target_log.exp() * (target_log - student_logits.log_softmax(dim=1))
    return pointwise.where(keep, torch.zeros_like(pointwise)).sum(dim=1).mean()


def build_loss(model, name: str = "kl", temperature: float = DEFAULT_TEMPERATURE,
               student_temperature: float | None = None, teacher_temperature: float | None = None,
               matryoshka_dims: list[int] | None = None, label_weight: float = 0.0,
               label_negatives: str = "batch", start_model=None,
               self_distillation_weight: float = 0.0) -> nn.Module:
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
    if self_distillation_weight < 0:
        raise InputError(None, f"--self_distillation_weight must be 0 or more, got {self_distillation_weight}")
    if self_distillation_weight and name != "kl":
        raise InputError(None, f"--self_distillation_weight works with --loss kl, not '{name}'")
    temperatures = {"--temperature": temperature, "--student_temperature": student_temperature,
                    "--teacher_temperature": teacher_temperature}
    for flag, value in temperatures.items():
        if value is not None and not 0 < value < math.inf:
            raise InputError(None, f"{flag} must be a positive number, got {value}")
    if name == "kl":
        loss = DistillationWithLabels(model, label_weight, temperature, student_temperature, teacher_temperature,
                                      label_negatives, start_model, self_distillation_weight)
    elif name == "margin_mse":
        loss = SimilarityMarginMSELoss(model, pairwise_cos_sim)
    else:
        loss = SimilarityMSELoss(model, pairwise_cos_sim)
    if matryoshka_dims:
        dimension = model.get_embedding_dimension()
        too_big = [dim for dim in matryoshka_dims if dim > dimension]
        if too_big:
            raise InputError(None, f"--matryoshka_dims {too_big} exceed the student's embedding dimension {dimension}")
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims)
    return loss
