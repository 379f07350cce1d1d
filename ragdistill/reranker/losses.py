"""The losses of Reranker-Distillation: sentence-transformers' CrossEncoder losses, and ListNet with a term for the
data's own labels (ListNetWithLabelsLoss, in the library's custom-loss pattern); `build_loss` picks one from
train.py's --loss.
"""

from __future__ import annotations

import torch
from torch import nn

LOSSES = ("margin_mse", "listnet", "lambda", "mse")
LABEL_LOSSES = ("listnet",)  # the losses with a term for the data's own labels (--label_weight)


def build_loss(model, name: str, mini_batch_size: int | None = None, label_weight: float = 0.0):
    from sentence_transformers.cross_encoder import losses

    if name == "margin_mse":
        return losses.MarginMSELoss(model)
    if name == "listnet" and label_weight:
        return ListNetWithLabelsLoss(model, label_weight, mini_batch_size=mini_batch_size)
    if name == "listnet":
        return losses.ListNetLoss(model, mini_batch_size=mini_batch_size)
    if name == "lambda":
        return losses.LambdaLoss(model, mini_batch_size=mini_batch_size)
    return losses.MSELoss(model)


class ListNetWithLabelsLoss(nn.Module):
    """ListNet on the teacher's scores (as sentence-transformers' ListNetLoss computes it, on raw logits), plus
    `label_weight` x the cross-entropy of the same softmax of the student's scores over a query's documents against
    the data's labels (uniform over the query's positives; a query without a positive among its documents has no
    label term). Inputs: queries, documents, relevance; labels: the teacher's scores per query.

    A plain module (sentence-transformers' custom-loss pattern) on the model's public `preprocess` and its forward
    output "scores", so it rests on no loss class's internals."""

    def __init__(self, model, label_weight: float, mini_batch_size: int | None = None):
        super().__init__()
        self.model = model
        self.label_weight = label_weight
        self.mini_batch_size = mini_batch_size

    def forward(self, inputs, labels, prompt=None, task=None) -> dict[str, torch.Tensor]:
        from sentence_transformers.util import batch_to_device

        queries, documents, relevance = inputs
        counts = [len(docs) for docs in documents]
        pairs = [(query, doc) for query, docs in zip(queries, documents) for doc in docs]
        step = self.mini_batch_size or len(queries)  # as ListNetLoss: little padding per forward pass
        logits = torch.cat([self.model(batch_to_device(self.model.preprocess(pairs[i:i + step], prompt=prompt,
                                                                              task=task), self.model.device)
                                       )["scores"].view(-1) for i in range(0, len(pairs), step)]).float()
        rows = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts)).to(logits.device)
        columns = torch.cat([torch.arange(n) for n in counts]).to(logits.device)
        scores = torch.full((len(counts), max(counts)), float("-inf"), device=logits.device)
        scores[rows, columns] = logits
        log_probs = scores.log_softmax(dim=1).masked_fill(scores == float("-inf"), 0.0)
        teacher = torch.full_like(scores, float("-inf"))
        teacher[rows, columns] = torch.cat(labels).float().to(logits.device)
        teacher_term = -(teacher.softmax(dim=1) * log_probs).sum(dim=1).mean()
        targets = torch.zeros_like(scores)
        targets[rows, columns] = torch.tensor([r for rel in relevance for r in rel], dtype=torch.float,
                                              device=logits.device)
        has_positive = targets.sum(dim=1) > 0
        label_term = -(targets[has_positive] / targets[has_positive].sum(dim=1, keepdim=True)
                       * log_probs[has_positive]).sum(dim=1)
        label_term = label_term.sum() / len(counts)
        return {"teacher": teacher_term, "labels": self.label_weight * label_term}

    def get_config_dict(self) -> dict:
        return {"mini_batch_size": self.mini_batch_size, "label_weight": self.label_weight}
