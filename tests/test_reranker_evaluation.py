"""Stage 4 (evaluation): the student's metrics (its raw logits through ragdistill.core.metrics) equal
sentence-transformers' CrossEncoderRerankingEvaluator's (ties included) and a plain re-computation by hand, and the
teacher row is computed alike; the stage writes its table, JSON, Markdown and scatter; a plain encoder's 'before' row
is the head training starts from."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.metrics import ranking_metrics
from ragdistill.core.mteb import RerankingSample, read_samples
from ragdistill.core.resumable import meta_path
from ragdistill.reranker.evaluation import (
    evaluate_student,
    flat_pairs,
    relevance,
    split_per_query,
    teacher_test_scores,
)
from ragdistill.reranker.scoring import score_file
from ragdistill.reranker.teachers import TeacherArguments, describe_teacher, load_teacher
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
TEST = REPO / "data/wikiqa/test.jsonl.gz"


def stage_main(name: str):
    """main(argv) of a Reranker-Distillation stage script, run in this process."""
    return script_main("Reranker-Distillation", name)


@pytest.fixture(scope="module")
def student(tiny_models):
    import torch
    from sentence_transformers import CrossEncoder

    torch.manual_seed(0)
    return CrossEncoder(str(tiny_models["bert"]), num_labels=1)


@pytest.fixture(scope="module")
def teacher_scores(tiny_models, tmp_path_factory) -> Path:
    options = TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch",
                               teacher_dtype="float32",
                             teacher_max_length=512)
    output = tmp_path_factory.mktemp("teacher") / "test.scores.jsonl"
    teacher = load_teacher(options)
    score_file(TEST, output, describe_teacher(options), lambda: teacher, max_queries=8)
    return output


def samples_with_ties(student) -> list[RerankingSample]:
    """Real test queries, some with repeated passages: a repeated text gets exactly the same score (a real tie)."""
    import torch

    samples = read_samples(TEST)[:10]
    first, second = samples[0], samples[1]
    # the first query's passage the student scores highest, as its positive and again among its negatives: a tie
    # at the top, whatever the random head made of the passages
    scores = student.predict([(first.query, text) for text in first.candidates], activation_fn=torch.nn.Identity())
    best = first.candidates[int(np.argmax(scores))]
    samples[0] = RerankingSample.labelled(first.query, [best], [best] + [t for t in first.candidates if t != best])
    samples[1] = RerankingSample.labelled(second.query, second.positive, second.negative * 3 + [second.positive[0]])
    return samples


def test_student_metrics_equal_the_evaluator(student, tiny_models):
    import torch
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples = samples_with_ties(student)
    result = evaluate_student(student, samples, batch_size=16)
    evaluated, scores = result.metrics, np.concatenate(result.scores).tolist()
    pairs = flat_pairs(samples)
    # The scores are raw logits in flat_pairs order: the model's own activation (a sigmoid) is not applied.
    np.testing.assert_allclose(student.predict(pairs), torch.sigmoid(torch.tensor(scores)).numpy(), rtol=1e-5)
    # The evaluator on the same weights (same seed) with the identity as activation, so it ranks the same logits.
    torch.manual_seed(0)
    raw = CrossEncoder(str(tiny_models["bert"]), num_labels=1, activation_fn=torch.nn.Identity())
    np.testing.assert_array_equal(raw.predict(pairs, batch_size=16), np.asarray(scores, dtype=np.float32))
    reference = CrossEncoderRerankingEvaluator(samples=[s.as_dict() for s in samples], at_k=10, batch_size=16,
                                               write_csv=False)(raw)
    assert evaluated == pytest.approx({metric: reference[metric] for metric in evaluated}, rel=1e-9, abs=1e-12)
    # ... ties included: the first query's positive and its copy among the negatives tie, at the top, so its MRR
    # depends on the order among ties, which ours takes from the evaluator's sort.
    first = split_per_query(scores, samples)[0]
    assert first[0] == first[1] == max(first)


def test_student_metrics_by_hand(student):
    """MAP, MRR@10 and NDCG@10 re-computed from the definitions, on queries whose scores do not tie."""
    samples = read_samples(TEST)[:10]
    result = evaluate_student(student, samples, batch_size=16)
    evaluated, scores = result.metrics, np.concatenate(result.scores).tolist()
    average_precisions, reciprocal_ranks, ndcgs = [], [], []
    for labels, query_scores in zip(relevance(samples), split_per_query(scores, samples)):
        assert len(set(query_scores)) == len(query_scores)
        ranked = [label for _, label in sorted(zip(query_scores, labels), reverse=True)]
        hits = [rank for rank, label in enumerate(ranked, start=1) if label]
        average_precisions.append(np.mean([(found + 1) / rank for found, rank in enumerate(hits)]))
        reciprocal_ranks.append(1 / hits[0] if hits[0] <= 10 else 0.0)
        dcg = sum(1 / np.log2(rank + 1) for rank in hits if rank <= 10)
        ideal = sum(1 / np.log2(rank + 1) for rank in range(1, min(len(hits), 10) + 1))
        ndcgs.append(dcg / ideal)
    by_hand = {"map": np.mean(average_precisions), "mrr@10": np.mean(reciprocal_ranks), "ndcg@10": np.mean(ndcgs)}
    assert evaluated == pytest.approx(by_hand, rel=1e-12)


def test_teacher_scores_must_cover_the_test_pairs(teacher_scores):
    samples = read_samples(TEST)[:9]  # one query more than stage 1 scored
    with pytest.raises(InputError, match=r"has no teacher score for \d+ of the \d+ test pairs"):
        teacher_test_scores(teacher_scores, samples)
    scores, meta = teacher_test_scores(teacher_scores, samples[:8])
    assert len(scores) == len(flat_pairs(samples[:8])) and meta["complete"]


def test_evaluation_stage(teacher_scores, tiny_models, tmp_path):
    from sentence_transformers import CrossEncoder

    trained = tmp_path / "trained"
    CrossEncoder(str(tiny_models["bert"]), num_labels=1).save_pretrained(str(trained))
    results = tmp_path / "results"
    stage_main("evaluation")([
        "--test_files", str(TEST), "--max_queries", "8", "--student_model", str(tiny_models["bert"]),
        "--trained_model", str(trained), "--teacher_scores", str(teacher_scores), "--output_dir", str(results),
        "--student_batch_size", "16", "--speed_pairs", "32"])
    table = json.loads((results / "results.json").read_text())["tables"][0]
    rows = {row["metric"]: row for row in table["rows"]}
    assert list(rows) == ["MAP", "MRR@10", "NDCG@10", "pairs/s"]
    for name in ("MAP", "MRR@10", "NDCG@10"):
        assert all(0 <= rows[name][column] <= 1 for column in ("before", "after", "teacher"))
        assert rows[name]["gap_closed"] is not None or rows[name]["teacher"] == rows[name]["before"]
    assert rows["pairs/s"]["before"] > 0 and rows["pairs/s"]["after"] > 0 and rows["pairs/s"]["gap_closed"] is None
    assert rows["pairs/s"]["teacher"] == read_json(meta_path(teacher_scores))["pairs_per_second"]
    # The teacher row is its stage-1 scores through the evaluator's formulas.
    samples = read_samples(TEST)[:8]
    scores, _ = teacher_test_scores(teacher_scores, samples)
    expected = ranking_metrics(list(zip(relevance(samples), split_per_query(scores, samples))), ties="cross-encoder")
    assert rows["MAP"]["teacher"] == pytest.approx(expected["map"])
    assert any("freshly initialised head" in note for note in table["notes"])
    assert "| MAP |" in (results / "results.md").read_text()
    assert (results / "score_scatter.png").stat().st_size > 1000


def test_before_row_is_where_training_starts(teacher_scores, tiny_models, tmp_path):
    """Train with learning rate 0: the trained student must score exactly like the 'before' row's fresh head."""
    from ragdistill.core.jsonl import write_json
    from ragdistill.reranker.rows import RowSettings, build_rows

    rows_in = tmp_path / "train.scores.jsonl"
    rows_in.write_text(teacher_scores.read_text())
    write_json(meta_path(rows_in), {"teacher": "tiny", "complete": True})
    rows = tmp_path / "rows.jsonl"
    build_rows([rows_in], rows, RowSettings(top_k=2, num_negatives=2))
    model = tmp_path / "model"
    stage_main("train")([
        "--student_model", str(tiny_models["bert"]), "--training_rows", str(rows), "--output_dir", str(model),
        "--loss", "margin_mse", "--max_steps", "1", "--learning_rate", "0", "--per_device_train_batch_size", "2", "--save_strategy", "no",
        "--report_to", "none", "--dataloader_pin_memory", "false"])
    results = tmp_path / "results"
    stage_main("evaluation")([
        "--test_files", str(TEST), "--max_queries", "8", "--student_model", str(tiny_models["bert"]),
        "--trained_model", str(model), "--teacher_scores", "", "--output_dir", str(results), "--speed_pairs", "8"])
    table = json.loads((results / "results.json").read_text())["tables"][0]
    for row in table["rows"][:3]:
        assert row["after"] == row["before"], row
    assert table["teacher"] == {}


def test_one_test_file_a_run(tiny_models):
    """--test_files, the name both evaluations read; this stage measures one file against its stage-1 scores."""
    model = str(tiny_models["bert"])
    with pytest.raises(InputError, match="--test_files: give one file .* got 2"):
        stage_main("evaluation")(["--test_files", f"{TEST},{TEST}", "--student_model", model, "--trained_model", model])
