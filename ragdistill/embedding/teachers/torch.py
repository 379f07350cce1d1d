"""Backend `torch`: any SentenceTransformer model through sentence-transformers, on any device."""

from __future__ import annotations

import numpy as np

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, torch_dtype
from ragdistill.embedding.teachers.base import EmbeddingTeacher, TeacherArguments


class SentenceTransformerTeacher(EmbeddingTeacher):
    backend = "torch"

    def __init__(self, args: TeacherArguments, device: str | None = None):
        super().__init__(args)
        import torch
        from sentence_transformers import SentenceTransformer

        torch.manual_seed(args.seed)
        self.model = SentenceTransformer(args.teacher_model, device=device or default_device(),
                                         model_kwargs={"dtype": torch_dtype(self.dtype)})
        self.model.eval()
        config = self.model.config  # None for a model without a transformers backbone
        positions = getattr(config, "max_position_embeddings", None)
        if positions and self.max_length > positions:
            raise InputError(args.teacher_model, f"--teacher_max_length {self.max_length} exceeds the model's "
                                                 f"{positions} positions")
        self.model.max_seq_length = self.max_length
        self.tokenizer = self.model.tokenizer

    def _encode(self, texts: list[str]) -> np.ndarray:
        # Prompts are already in the texts: sentence-transformers prepends a prompt the same way (string concat).
        embeddings = self.model.encode(texts, batch_size=self.args.batch_size, convert_to_tensor=True,
                                       show_progress_bar=False)
        return embeddings.float().cpu().numpy()
