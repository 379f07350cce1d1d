"""Reranker-Distillation's student under the pipeline contract (ragdistill.core.pipeline): a one-logit CrossEncoder."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ragdistill.core.mteb import RerankingSample
from ragdistill.core.pipeline import Pipeline
from ragdistill.reranker.evaluation import SPEED


class RerankerPipeline(Pipeline):
    package = "ragdistill.reranker"
    kind = "reranker"
    speed_unit = SPEED
    graph_output = "logits"  # one logit per pair, which CrossEncoder.predict reads as its scores
    graph_feature = "scores"
    graph_output_axes = {0: "batch"}

    def example_items(self) -> list:
        return [("what is the capital of france", "the capital of france is paris, its largest city"),
                ("paris", "a city")]

    def speed_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        from ragdistill.reranker.evaluation import flat_pairs

        return flat_pairs(samples)[:limit]

    def latency_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        return [(s.query, s.candidates[0]) for s in samples][:limit]

    def calibration_items(self, samples: Sequence[RerankingSample], count: int) -> list:
        """Per query, the (query, positive) and (query, first negative) pairs (without labels: its first and last
        candidates)."""
        items: list = []
        for sample in samples:
            if len(items) >= count:
                break
            first, other = ((sample.positive[0], sample.negative[0]) if sample.has_labels
                            else (sample.candidates[0], sample.candidates[-1]))
            items += [(sample.query, first), (sample.query, other)]
        return items[:count]

    def tokenize(self, tokenizer, items: Sequence, **kwargs) -> dict:
        return tokenizer([query for query, _ in items], [passage for _, passage in items], **kwargs)

    def runner(self, model, batch_size: int) -> Callable[[list], object]:
        return lambda items: model.predict(list(items), batch_size=batch_size, show_progress_bar=False)

    def rebuild(self, model, modules: list, **settings):
        from sentence_transformers import CrossEncoder

        # its num_labels is CrossEncoder's default, 1 (no Transformer module to read it from): the students are
        # one-logit
        return CrossEncoder(modules=modules, prompts=model.prompts, default_prompt_name=model.default_prompt_name,
                            activation_fn=model.activation_fn, **settings)
