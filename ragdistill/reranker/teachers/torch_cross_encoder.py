"""Backend `torch` for a cross-encoder: sentence-transformers' CrossEncoder.predict with the activation off (raw
logits), in length-sorted batches (a token budget per batch on GPUs)."""

from __future__ import annotations

from ragdistill.core.hardware import default_device, resolve_dtype, torch_dtype
from ragdistill.reranker.teachers.base import CROSS_ENCODER, ScoredPairs, Teacher, TeacherSettings, pair_token_counts
from ragdistill.reranker.teachers.batching import length_sorted_batches, resolve_max_batch_tokens


class TransformersCrossEncoderTeacher(Teacher):
    """A sequence-classification cross-encoder through sentence-transformers, raw logits."""

    def __init__(self, model: str, dtype: str, max_length: int, batch_size: int, device: str | None = None,
                 max_batch_tokens: int = 0):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model, device=device or default_device(), max_length=max_length or None,
                                  model_kwargs={"dtype": torch_dtype(dtype)})
        self.max_length = self.model.max_seq_length
        self.batch_size = batch_size
        self.max_batch_tokens = resolve_max_batch_tokens(max_batch_tokens, self.device)
        self.settings = TeacherSettings(model, "torch", CROSS_ENCODER, resolve_dtype(dtype), self.max_length)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def score(self, pairs):
        import torch

        num_tokens, truncated = pair_token_counts(self.model.tokenizer, pairs, self.max_length)
        if not self.max_batch_tokens:
            # predict() sorts by length itself and returns the input order.
            scores = self.model.predict(list(pairs), batch_size=self.batch_size, activation_fn=torch.nn.Identity(),
                                        show_progress_bar=False)
            return ScoredPairs([float(s) for s in scores], num_tokens, truncated)
        scores = [0.0] * len(pairs)
        for batch in length_sorted_batches(num_tokens, self.batch_size, self.max_batch_tokens):
            values = self.model.predict([pairs[i] for i in batch], batch_size=len(batch),
                                        activation_fn=torch.nn.Identity(), show_progress_bar=False)
            for i, value in zip(batch, values):
                scores[i] = float(value)
        return ScoredPairs(scores, num_tokens, truncated)
