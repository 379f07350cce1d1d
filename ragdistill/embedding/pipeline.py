"""Embedding-Distillation's student under the pipeline contract (ragdistill.core.pipeline): a SentenceTransformer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragdistill.core.mteb import RerankingSample
from ragdistill.core.pipeline import Pipeline
from ragdistill.embedding.evaluation import SPEED


class EmbeddingPipeline(Pipeline):
    package = "ragdistill.embedding"
    kind = "embedder"
    speed_unit = SPEED
    graph_output = "last_hidden_state"  # token embeddings, which the Pooling module reads
    graph_feature = "token_embeddings"
    graph_output_axes = {0: "batch", 1: "sequence"}

    def example_items(self) -> list:
        return ["what is the capital of france", "paris"]

    def speed_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        from ragdistill.embedding.evaluation import speed_sample

        return speed_sample(samples, limit)

    def latency_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        return [s.query for s in samples][:limit]

    def calibration_items(self, samples: Sequence[RerankingSample], count: int) -> list:
        """Per query, the query and its first positive (without labels: its first candidate)."""
        items: list = []
        for sample in samples:
            if len(items) >= count:
                break
            items += [sample.query, sample.positive[0] if sample.has_labels else sample.candidates[0]]
        return items[:count]

    def tokenize(self, tokenizer, items: Sequence, **kwargs) -> dict:
        return tokenizer(list(items), **kwargs)

    def runner(self, model, batch_size: int) -> Callable[[list], object]:
        return lambda items: model.encode(list(items), batch_size=batch_size, show_progress_bar=False)

    def rebuild(self, model, modules: list, **settings):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(modules=modules, prompts=model.prompts,
                                   default_prompt_name=model.default_prompt_name,
                                   similarity_fn_name=model.similarity_fn_name, truncate_dim=model.truncate_dim,
                                   **settings)
