"""The export stage (ragdistill.export.variants, both modules' export.py) on the tiny BERT: every exported variant reloads and
scores like the torch student (fp32 ONNX to 1e-4, int8 within a documented tolerance and rank agreement), and a
backend that is not installed is left out with a clear message."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.mteb import read_samples
from ragdistill.embedding.pipeline import EmbeddingPipeline
from ragdistill.export import evaluation as export_evaluation
from ragdistill.export import variants as export
from ragdistill.reranker.evaluation import flat_pairs
from ragdistill.reranker.pipeline import RerankerPipeline
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
TEST_FILE = REPO / "data" / "wikiqa" / "test.jsonl.gz"
TRAIN_FILE = REPO / "data" / "wikiqa" / "train.jsonl.gz"
# int8 tolerances: the largest absolute difference to the torch fp32 scores (embedder: vector components and
# cosines, in [-1, 1]; reranker: raw logits, spread over about 2.5 here). Measured on these seeded models: embedder
# 0.019 (ONNX Runtime int8) and 0.022 (OpenVINO int8), reranker 0.014 and 0.208 (8% of the logits' spread: static
# int8 on a 2-layer model with a head trained 60 steps; unseeded heads gave 0.06-0.16); dynamic int8 rounds
# activations per batch, static int8 to ranges calibrated on 40 training inputs. The ranking is held to
# MIN_SPEARMAN: 0.986 for the seeded reranker's OpenVINO int8, the lowest of the four.
INT8_TOLERANCE = {"embedder": 0.05, "reranker": 0.25}
MIN_SPEARMAN = 0.98


PIPELINES = {"embedder": EmbeddingPipeline(), "reranker": RerankerPipeline()}


def stage(module: str):
    return script_main(module, "export")


@pytest.fixture(scope="module")
def test_samples():
    return read_samples(TEST_FILE)[:12]


def _inputs(kind: str, samples) -> list:
    if kind == "embedder":
        return list(dict.fromkeys(t for s in samples for t in [s.query, *s.candidates]))
    return flat_pairs(samples)


def _scores(kind: str, model, items) -> np.ndarray:
    if kind == "embedder":  # the cosine of each text with the first: what retrieval ranks by
        vectors = np.asarray(model.encode(items, batch_size=16), dtype=np.float64)
        return np.concatenate([vectors.ravel(), vectors @ vectors[0]])
    import torch

    return np.asarray(model.predict(items, batch_size=16, activation_fn=torch.nn.Identity()), dtype=np.float64)


def save_student(kind: str, source, path: Path, steps: int = 60) -> Path:
    """The tiny BERT as a student. A reranker gets its head trained for a few steps (binary relevance on WikiQA
    train pairs, seeded): a fresh random head gives nearly the same logit for every pair, closer than int8 rounding,
    so there would be no ranking to keep; a trained one spreads its logits as a real reranker does."""
    import torch

    torch.manual_seed(0)  # before loading: a reranker's new head is drawn then, and the test must not vary by run
    model = export.load_torch_model(PIPELINES[kind], source, device="cpu")
    if kind == "reranker":
        pairs = [(s.query, doc, float(label)) for s in read_samples(TRAIN_FILE)[:200]
                 for doc, label in [(s.positive[0], 1), (s.negative[0], 0)]]
        network = model.transformers_model.train()
        optimizer = torch.optim.AdamW(network.parameters(), lr=2e-3)
        for step in range(steps):
            batch = [pairs[(step * 16 + i) % len(pairs)] for i in range(16)]
            features = model.tokenizer([b[0] for b in batch], [b[1] for b in batch], padding=True, truncation=True,
                                       max_length=128, return_tensors="pt")
            logits = network(**features).logits.squeeze(-1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([b[2] for b in batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        network.eval()
    model.save_pretrained(str(path))
    return path


@pytest.fixture(scope="module", params=sorted(PIPELINES))
def exported(request, tiny_models, tmp_path_factory):
    """A tiny student of each kind, saved and exported to every variant once for the module."""
    kind = request.param
    path = save_student(kind, tiny_models["bert"], tmp_path_factory.mktemp(kind) / "model")
    calibration = export.read_calibration_samples([str(TRAIN_FILE)], 40)
    problems = export.export_variants(PIPELINES[kind], path, export.VARIANTS, calibration, 40)
    assert problems == {}
    return kind, path


def test_exported_variants_score_like_torch(exported, test_samples):
    kind, path = exported
    items = _inputs(kind, test_samples)
    reference = _scores(kind, export.load_variant(PIPELINES[kind], path, "torch-fp32"), items)
    # fp32 graphs, before and after ONNX Runtime's fusions
    pipeline = PIPELINES[kind]
    raw = export.use_exported(export.load_torch_model(pipeline, path, device="cpu"), pipeline, path / export.RAW_ONNX,
                              "onnx")
    np.testing.assert_allclose(_scores(kind, raw, items), reference, atol=1e-4, rtol=0)
    optimised = export.load_variant(PIPELINES[kind], path, "onnx-fp32")
    np.testing.assert_allclose(_scores(kind, optimised, items), reference, atol=1e-4, rtol=0)
    for variant in ("onnx-int8", "openvino-int8"):
        scores = _scores(kind, export.load_variant(PIPELINES[kind], path, variant), items)
        assert np.abs(scores - reference).max() <= INT8_TOLERANCE[kind], variant
        assert not np.allclose(scores, reference, atol=1e-6, rtol=0), f"{variant} is not quantised"
        ranked = scores[-len(items):], reference[-len(items):]  # the scores a ranking uses
        assert spearmanr(*ranked).statistic >= MIN_SPEARMAN, variant
    # the files sit where sentence-transformers looks for them, int8 ones smaller than fp32
    assert (path / export.variant_file("onnx-int8")).stat().st_size < 0.5 * (path / export.OPTIMIZED_ONNX).stat().st_size
    assert (path / export.OPENVINO_INT8).with_suffix(".bin").exists()


def test_reranker_stage_table_and_missing_backend(tiny_models, tmp_path, monkeypatch, capsys):
    """The whole stage on a tiny reranker, with OpenVINO 'not installed': its row is left out and said why, the
    others are measured, and the table, JSON, Markdown and PNG are written."""
    model = tmp_path / "model"
    export.load_torch_model(PIPELINES["reranker"], tiny_models["bert"], device="cpu").save_pretrained(str(model))
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    out = tmp_path / "export"
    stage("Reranker-Distillation")([
        "--model", str(model), "--test_file", str(TEST_FILE), "--teacher_scores", "", "--calibration_files",
        str(TRAIN_FILE), "--output_dir", str(out), "--max_queries", "6", "--speed_items", "32", "--latency_items",
        "5", "--repeats", "1", "--student_batch_size", "8"])
    printed = capsys.readouterr().out
    assert "openvino-int8 left out: openvino not installed (pip install -r requirements-export.txt" in printed
    assert "Traceback" not in printed
    result = read_json(out / "export_results.json")
    assert result["student"] == "reranker" and result["unit"] == "pairs/s"
    rows = {row["variant"]: row for row in result["variants"]}
    assert rows["openvino-int8"]["metrics"] == {} and "openvino not installed" in rows["openvino-int8"]["problem"]
    for variant in ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"):
        assert set(rows[variant]["metrics"]) == {"map", "mrr@10", "ndcg@10"}, variant
        assert rows[variant]["throughput"] > 0 and rows[variant]["latency"]["p95_ms"] > 0
    assert rows["onnx-fp32"]["metrics"] == pytest.approx(rows["torch-fp32"]["metrics"], abs=1e-6)
    assert rows["onnx-fp32"]["spearman_vs_torch_fp32"] > 0.999
    assert result["best_variant"] in rows
    assert (out / "export_results.md").read_text().count("| torch-") == 2
    assert (out / "export_results.png").stat().st_size > 0


def test_embedding_stage_runs_the_chosen_variants(tiny_models, tmp_path, capsys):
    model = tmp_path / "model"
    export.load_torch_model(PIPELINES["embedder"], tiny_models["bert"], device="cpu").save_pretrained(str(model))
    out = tmp_path / "export"
    stage("Embedding-Distillation")([
        "--model", str(model), "--test_file", str(TEST_FILE), "--teacher_scores_dir", "", "--variants",
        "torch-fp32,onnx-int8", "--output_dir", str(out), "--max_queries", "6", "--speed_items", "32",
        "--latency_items", "5", "--repeats", "1"])
    result = read_json(out / "export_results.json")
    assert result["student"] == "embedder" and result["unit"] == "texts/s"
    assert [row["variant"] for row in result["variants"]] == ["torch-fp32", "onnx-int8"]
    assert all(row["metrics"]["map"] > 0 for row in result["variants"])
    assert not (model / "openvino").exists()  # only what the chosen variants need is built
    assert "texts/s" in capsys.readouterr().out


def test_missing_backend_is_a_clear_message(monkeypatch, tmp_path, tiny_models):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert export.backend_problem("onnx") == ("onnxruntime not installed (pip install -r requirements-export.txt "
                                              "(bash scripts/setup.sh installs it))")
    assert export.backend_problem("torch") is None
    model = tmp_path / "model"
    shutil.copytree(tiny_models["bert"], model)
    problems = export.export_variants(PIPELINES["embedder"], model, ["torch-fp32", "onnx-int8"])
    assert problems == {"onnx-int8": export.backend_problem("onnx")}
    (model / "onnx").mkdir()
    (model / export.variant_file("onnx-int8")).write_bytes(b"")
    with pytest.raises(InputError, match="the onnx backend cannot run: onnxruntime not installed"):
        export.load_variant(PIPELINES["embedder"], model, "onnx-int8")


def test_bad_arguments_name_the_problem(tmp_path):
    with pytest.raises(InputError, match="unknown onnx-int4"):
        export.parse_variants("torch-fp32,onnx-int4")
    with pytest.raises(InputError, match="no exported onnx model here"):
        export.use_exported(None, PIPELINES["embedder"], tmp_path / "missing.onnx", "onnx")


def test_best_variant_keeps_99_percent_of_fp32_map():
    results = [export_evaluation.VariantResult("torch-fp32", {"map": 0.80}, throughput=100.0),
               export_evaluation.VariantResult("onnx-int8", {"map": 0.795}, throughput=250.0),
               export_evaluation.VariantResult("openvino-int8", {"map": 0.70}, throughput=400.0)]
    assert export_evaluation.best_variant(results).variant == "onnx-int8"
    results[1].metrics["map"] = 0.79  # 98.75% of fp32: out
    assert export_evaluation.best_variant(results).variant == "torch-fp32"
