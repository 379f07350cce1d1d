"""The package's shape, read from its source: `core` imports no pipeline, no module imports itself back through
others, and both pipelines fulfil one contract (ragdistill.core.pipeline) with the same signatures."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from ragdistill.core.pipeline import Pipeline
from ragdistill.embedding import evaluation as embedding_evaluation
from ragdistill.embedding import losses as embedding_losses
from ragdistill.embedding import training as embedding_training
from ragdistill.embedding.pipeline import EmbeddingPipeline
from ragdistill.embedding.teachers import load_teacher as load_embedding_teacher
from ragdistill.reranker import evaluation as reranker_evaluation
from ragdistill.reranker import losses as reranker_losses
from ragdistill.reranker import training as reranker_training
from ragdistill.reranker.pipeline import RerankerPipeline
from ragdistill.reranker.teachers import load_teacher as load_reranker_teacher

PACKAGE = Path(__file__).resolve().parents[1] / "ragdistill"
PIPELINE_PACKAGES = ("reranker", "embedding", "retrieval", "export", "data", "expansion")


def module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at the top or inside a function (a lazy import still ties them)."""
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:  # `from package import module` imports the module
                    full = f"{node.module}.{alias.name}"
                    targets.add(full if full in modules else node.module)
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_core_imports_no_pipeline():
    graph = import_graph()
    assert len(graph) > 50 and "ragdistill.export.variants" in graph["ragdistill.export.evaluation"]  # it reads
    upward = {name: sorted(t for t in targets if t.split(".")[1:2] in ([p] for p in PIPELINE_PACKAGES))
              for name, targets in graph.items() if name.startswith("ragdistill.core")}
    assert {name: targets for name, targets in upward.items() if targets} == {}


def test_no_import_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself
    assert cycles(import_graph()) == []


@pytest.mark.parametrize("pipeline", [EmbeddingPipeline(), RerankerPipeline()], ids=lambda p: p.kind)
def test_pipelines_fulfil_the_contract_with_its_signatures(pipeline):
    for name, method in inspect.getmembers(Pipeline, inspect.isfunction):
        assert inspect.signature(getattr(type(pipeline), name)) == inspect.signature(method), name
    for attribute in ("package", "kind", "speed_unit", "graph_output", "graph_feature", "graph_output_axes"):
        assert getattr(pipeline, attribute), attribute
    for role, function in (("training", "load_student"), ("losses", "build_loss"), ("evaluation", "evaluate_student")):
        assert callable(getattr(pipeline.role(role), function)), (role, function)


def test_a_pipeline_missing_a_role_cannot_be_made():
    class Partial(Pipeline):
        package, kind = "ragdistill.embedding", "embedder"

        def example_items(self) -> list:
            return []

    with pytest.raises(TypeError, match="abstract"):
        Partial()


@pytest.mark.parametrize("role", [
    (embedding_training.load_student, reranker_training.load_student),
    (embedding_losses.build_loss, reranker_losses.build_loss),
    (embedding_evaluation.evaluate_student, reranker_evaluation.evaluate_student),
    (load_embedding_teacher, load_reranker_teacher),
], ids=lambda pair: pair[0].__name__)
def test_same_role_same_leading_parameters(role):
    """The pipelines' own functions for one role take the same leading parameters, in the same order; a pipeline's
    extra options come after them."""
    embedding, reranker = (list(inspect.signature(function).parameters) for function in role)
    shared = {"load_student": 4, "build_loss": 2, "evaluate_student": 4, "load_teacher": 2}[role[0].__name__]
    assert embedding[:shared] == reranker[:shared]
