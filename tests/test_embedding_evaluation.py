"""Stage 3 of Embedding-Distillation: the students' rows (public encode_query / encode_document / similarity) and the
teacher's row (ragdistill.core.metrics on its stored similarities) equal what sentence-transformers' RerankingEvaluator
reports for the same model, and a plain re-computation by hand, so before / after / teacher compare like for like."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.metrics import ranking_metrics
from ragdistill.core.mteb import RerankingSample, read_samples
from ragdistill.core.pipeline import StudentScores
from ragdistill.embedding.evaluation import (
    FileEvaluation,
    evaluate_student,
    metrics_from_similarities,
    teacher_similarities,
)
from ragdistill.embedding.scoring import LazyTeacher, cached_teacher_scores
from ragdistill.embedding.teachers import TeacherArguments, load_teacher
from tests.conftest import REPO


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    rows = [json.loads(line) for line in gzip.open(REPO / "data/wikiqa/test.jsonl.gz", "rt")][:8]
    path = tmp_path_factory.mktemp("eval") / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_teacher_metrics_from_stored_similarities_equal_the_reranking_evaluator(tmp_path, eval_file, tiny_models):
    from sentence_transformers import SentenceTransformer

    # the teacher pass stores similarities; the same model through RerankingEvaluator must score the same
    model_path = str(tiny_models["qwen3_embedder"])
    args = TeacherArguments(teacher_model=model_path, backend="torch", teacher_dtype="float32",
                            teacher_max_length=512)
    teacher = LazyTeacher(args, lambda: load_teacher(args))
    rows, _ = cached_teacher_scores([str(eval_file)], teacher, tmp_path / "cache")[str(eval_file)]
    teacher.close()
    samples = read_samples(eval_file)
    from_stored = metrics_from_similarities(samples, teacher_similarities(samples, rows, str(eval_file)))

    model = SentenceTransformer(model_path, device="cpu")
    assert model.max_seq_length == 512
    from_evaluator = evaluate_student(model, samples)
    assert from_evaluator.metrics == pytest.approx(reranking_evaluator_metrics(model, samples), abs=1e-12)
    assert set(from_stored) == set(from_evaluator.metrics) == {"map", "mrr@10", "ndcg@10"}
    for name, value in from_evaluator.metrics.items():
        assert from_stored[name] == pytest.approx(value, abs=1e-9), name
    # and the similarities the evaluator ranked by are the ones we record and plot
    assert metrics_from_similarities(samples, from_evaluator.scores) == pytest.approx(from_evaluator.metrics,
                                                                                             abs=1e-12)
    stored = np.concatenate([np.asarray(r["positive_scores"] + r["negative_scores"]) for r in rows])
    np.testing.assert_allclose(np.concatenate(from_evaluator.scores), stored, atol=2e-6)
    # stored at full float32 precision, not rounded
    assert np.array_equal(stored.astype(np.float32).astype(np.float64), stored)
    assert any(round(value, 6) != value for value in stored)


def test_tied_similarities_are_ranked_in_the_evaluators_order(tiny_models):
    import torch
    from sentence_transformers import SentenceTransformer

    # the same text as positive and negatives: every similarity of a query ties, up to the last bit of float32
    # (some CPUs' kernels round a matrix's rows apart); ours equal the evaluator's either way
    model = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    samples = [RerankingSample.labelled(f"query {i}", ["same passage"], ["same passage"] * n)
               for i, n in enumerate([3, 20, 40, 63])]
    result = evaluate_student(model, samples)
    assert all(np.ptp(sims) < 1e-6 for sims in result.scores)
    assert metrics_from_similarities(samples, result.scores) == result.metrics
    assert result.metrics == pytest.approx(reranking_evaluator_metrics(model, samples), abs=1e-12)
    # exact ties: a stable sort would put the positive first (MRR 1); the evaluator's torch.argsort on float32 does
    # not, on longer lists, and ours follows it
    tied = [np.full(len(s.candidates), 0.5) for s in samples]
    ours = metrics_from_similarities(samples, tied)
    stable = ranking_metrics([([True] + [False] * (len(s) - 1), s) for s in tied], ties="stable")
    assert stable["mrr@10"] == 1.0 > ours["mrr@10"]
    assert stable["map"] == pytest.approx(ours["map"])
    first_hit = [int(np.flatnonzero(torch.argsort(-torch.as_tensor(s, dtype=torch.float32)).numpy() == 0)[0])
                 for s in tied]
    assert ours["mrr@10"] == pytest.approx(np.mean([1 / (rank + 1) if rank < 10 else 0.0 for rank in first_hit]))


def test_student_metrics_equal_a_plain_recomputation(tiny_models):
    from sentence_transformers import SentenceTransformer

    # cosine similarity of plain encodings and average precision by hand, on a case without ties
    model = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    samples = [RerankingSample.labelled("what is a cat", ["a cat is a small feline"], ["the stock market fell", "rain today"]),
               RerankingSample.labelled("capital of france", ["paris is the capital of france"],
                               ["berlin is in germany", "a recipe for bread", "france borders spain"])]
    result = evaluate_student(model, samples)

    average_precisions = []
    for sample, sims in zip(samples, result.scores):
        query = model.encode(sample.query)
        documents = model.encode(sample.candidates)
        cosine = documents @ query / (np.linalg.norm(documents, axis=1) * np.linalg.norm(query))
        np.testing.assert_allclose(sims, cosine, atol=1e-5)
        relevant = [text in sample.positive for text in sample.candidates]
        ranked = [relevant[i] for i in np.argsort(-cosine)]
        hits = np.cumsum(ranked)
        average_precisions.append(sum(hits[i] / (i + 1) for i in range(len(ranked)) if ranked[i]) / sum(relevant))
    assert result.metrics["map"] == pytest.approx(np.mean(average_precisions), abs=1e-9)


def reranking_evaluator_metrics(model, samples) -> dict[str, float]:
    """sentence-transformers' own RerankingEvaluator on the same samples (its documented arguments only)."""
    from sentence_transformers.sentence_transformer.evaluation import RerankingEvaluator

    evaluator = RerankingEvaluator([s.as_dict() for s in samples], write_csv=False)
    return {key: float(value) for key, value in evaluator(model).items()}


def test_comparison_table_and_misaligned_cache(eval_file):
    samples = read_samples(eval_file)
    rng = np.random.default_rng(0)
    sims = [rng.random(len(s.candidates)) for s in samples]
    evaluation = FileEvaluation(str(eval_file), "out-of-domain", samples, sims)
    evaluation.students = {"before": StudentScores({"map": 0.5, "mrr@10": 0.5, "ndcg@10": 0.5}, sims),
                           "after": StudentScores({"map": 0.45, "mrr@10": 0.6, "ndcg@10": 0.5}, sims)}
    evaluation.students["after"] = StudentScores(evaluation.students["after"].metrics, [-x for x in sims])
    comparison, agreement = evaluation.comparisons()
    text = comparison.to_text()
    assert comparison.title.endswith("(out-of-domain)")
    assert "no-forgetting check" in text and "MAP 0.5000 -> 0.4500 (-10.0% relative)" in text
    assert comparison.teacher == pytest.approx(metrics_from_similarities(samples, sims))
    # the students' agreement with the teacher: identical similarities agree fully, reversed ones not at all
    assert agreement.title.endswith("(out-of-domain), agreement with the teacher")
    assert agreement.before == pytest.approx(dict.fromkeys(agreement.before, 1.0))
    assert agreement.after["spearman vs teacher"] == pytest.approx(-1.0)
    assert evaluation.tables == [comparison, agreement] and evaluation.headline_metric == "map"

    rows = [{"query": s.query, "positive_scores": [0.0] * len(s.positive), "negative_scores": [0.0] * len(s.negative)}
            for s in samples]
    rows[3]["query"] = "another query"
    with pytest.raises(InputError, match=r"test\.jsonl:4: teacher scores do not match"):
        teacher_similarities(samples, rows, str(eval_file))
