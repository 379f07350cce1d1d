"""The contract every distillation pipeline fulfils, so that code serving both (the export stage, the retrieval
chain) takes a pipeline instead of branching on which one it got.

Each pipeline package (ragdistill.embedding, ragdistill.reranker) implements `Pipeline` in its `pipeline.py`. The
package holds the same module for the same role, with the same function in it (`training.load_student`,
`losses.build_loss`, `evaluation.evaluate_student`, whose signatures match across the pipelines), which `Pipeline`
calls by the package's name; what differs in kind (what one input is, how the model is run and rebuilt) each
pipeline writes itself. `Pipeline` is an abstract base: a pipeline that leaves a role out cannot be instantiated.
tests/test_package_structure.py checks all of it.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ragdistill.core.mteb import RerankingSample


@dataclass
class StudentScores:
    """A student's metrics on test samples (empty without labels) and, per sample, its score for each candidate."""

    metrics: dict[str, float]
    scores: list[np.ndarray]


class Pipeline(ABC):
    """One distillation pipeline's student, as code outside the pipeline uses it.

    Class attributes describe the student's exported graph (ragdistill.export.variants): the name of its one output,
    the feature the next sentence-transformers module reads it as, and its dynamic axes."""

    package: ClassVar[str]           # the pipeline's package, e.g. "ragdistill.embedding"
    kind: ClassVar[str]              # "embedder" or "reranker": names the pipeline in files and messages
    speed_unit: ClassVar[str]        # what a throughput counts: "texts/s" or "pairs/s"
    graph_output: ClassVar[str]      # the transformer output the student's next module reads
    graph_feature: ClassVar[str]     # the feature name that module reads it under
    graph_output_axes: ClassVar[dict[int, str]]

    def role(self, name: str):
        """The pipeline's module for a role: training, losses or evaluation."""
        return importlib.import_module(f"{self.package}.{name}")

    def load_student(self, model: str, max_seq_length: int = 0, dtype=None, device: str | None = None):
        """The student (a SentenceTransformer or a one-logit CrossEncoder) from a folder."""
        return self.role("training").load_student(model, max_seq_length, dtype, device)

    def build_loss(self, model, name: str, **options):
        """The training loss called `name` (the stage's --loss), with the stage's loss options."""
        return self.role("losses").build_loss(model, name, **options)

    def evaluate(self, model, samples: Sequence[RerankingSample], batch_size: int = 32) -> StudentScores:
        """MAP / MRR@10 / NDCG@10 of the student on the samples (as the evaluation stage computes them), and its
        scores per sample."""
        return self.role("evaluation").evaluate_student(model, samples, batch_size)

    @abstractmethod
    def example_items(self) -> list:
        """Two inputs of different lengths, as one call takes them (texts, or (query, passage) pairs)."""

    @abstractmethod
    def speed_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        """Up to `limit` inputs from the samples for a throughput measurement, in file order."""

    @abstractmethod
    def latency_items(self, samples: Sequence[RerankingSample], limit: int) -> list:
        """Up to `limit` single requests a service gets: a query to embed, or a (query, passage) pair to score."""

    @abstractmethod
    def calibration_items(self, samples: Sequence[RerankingSample], count: int) -> list:
        """Up to `count` inputs from training samples whose activations calibrate a statically quantised model."""

    @abstractmethod
    def tokenize(self, tokenizer, items: Sequence, **kwargs) -> dict:
        """The student tokenizer's features of `items` (texts, or (query, passage) pairs)."""

    @abstractmethod
    def runner(self, model, batch_size: int) -> Callable[[list], object]:
        """A function that runs the student on a list of inputs, as it is served (`encode` or `predict`)."""

    @abstractmethod
    def rebuild(self, model, modules: list, **settings):
        """A model of the student's class made of `modules` (an exported graph in place of its Transformer), with
        the student's own settings (similarity, activation) and `settings`."""
