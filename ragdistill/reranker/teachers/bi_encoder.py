"""Backend `bi-encoder`: any SentenceTransformer as a cheap teacher, score = cosine(query, passage) x scale.

Cosines live in a narrow range; the scale (default 20, as in sentence-transformers' own MarginMSE examples) brings
margins into the logit-like range MarginMSE expects.
"""

from __future__ import annotations

from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, resolve_dtype, torch_dtype
from ragdistill.core.models import require_model_dir
from ragdistill.reranker.teachers.base import BI_ENCODER, ScoredPairs, Teacher, TeacherSettings


class BiEncoderTeacher(Teacher):
    """Any SentenceTransformer: score = cosine x scale. Each distinct text of a call is embedded once."""

    def __init__(self, model: str, dtype: str, max_length: int, batch_size: int, scale: float,
                 device: str | None = None):
        from sentence_transformers import SentenceTransformer

        require_model_dir(model, "teacher model")
        if Path(model).expanduser().is_dir() and not (Path(model).expanduser() / "modules.json").exists():
            raise InputError(model, "not a sentence-transformers model (no modules.json): the bi-encoder backend "
                                    "needs an embedding model")
        self.model = SentenceTransformer(model, device=device or default_device(),
                                         model_kwargs={"dtype": torch_dtype(dtype)})
        if max_length:
            self.model.max_seq_length = max_length
        self.max_length = self.model.max_seq_length
        self.batch_size = batch_size
        self.scale = scale
        self.settings = TeacherSettings(model, "bi-encoder", BI_ENCODER, resolve_dtype(dtype), self.max_length,
                                        bi_encoder_scale=scale)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def _token_counts(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, truncation=False, return_attention_mask=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def score(self, pairs):
        import numpy as np

        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        q_emb = self.model.encode_query(queries, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        p_emb = self.model.encode_document(passages, batch_size=self.batch_size, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False)
        q_row = {q: i for i, q in enumerate(queries)}
        p_row = {p: i for i, p in enumerate(passages)}
        qi = np.array([q_row[q] for q, _ in pairs])
        pi = np.array([p_row[p] for _, p in pairs])
        cosines = np.einsum("ij,ij->i", q_emb[qi].astype(np.float32), p_emb[pi].astype(np.float32))
        q_tokens = dict(zip(queries, self._token_counts(queries)))
        p_tokens = dict(zip(passages, self._token_counts(passages)))
        num_tokens = [min(q_tokens[q], self.max_length) + min(p_tokens[p], self.max_length) for q, p in pairs]
        truncated = [q_tokens[q] > self.max_length or p_tokens[p] > self.max_length for q, p in pairs]
        return ScoredPairs([float(c) * self.scale for c in cosines], num_tokens, truncated)
