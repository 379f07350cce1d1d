"""Stage 2 of Embedding-Distillation: train.py on stage-1 rows with the tiny BERT student. The saved model, model
card, loss curve and history; every loss; Matryoshka; exact resume from a checkpoint; DDP under torchrun (CPU);
refusal of unfinished or non-training stage-1 output."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ragdistill.core.cli import run_main
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import read_json
from ragdistill.core.resumable import meta_path
from ragdistill.core.training import check_distributed, resolve_resume_checkpoint
from ragdistill.embedding.losses import SimilarityMSELoss, build_loss
from ragdistill.embedding.training import column_prompts, load_training_rows
from tests.builders import repo_env, stage_main
from tests.conftest import REPO

TRAIN_SCRIPT = REPO / "Embedding-Distillation" / "train.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("embedding_train_script", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows_file(embedding_rows_file):
    return embedding_rows_file


def _train(monkeypatch, tiny_models, rows_file, output_dir, *extra, batch_size: str | None = "4"):
    argv = ["train.py", "--student_model", str(tiny_models["bert"]), "--training_rows", str(rows_file),
            "--output_dir", str(output_dir), "--learning_rate", "1e-3", "--logging_steps", "1", "--seed", "7", *extra]
    if batch_size:
        argv += ["--per_device_train_batch_size", batch_size]
    monkeypatch.setattr(sys, "argv", argv)
    _load_script().main()
    return read_json(output_dir / "training_summary.json")


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_training_saves_a_sentence_transformer_with_card_curve_and_history(monkeypatch, tmp_path, tiny_models,
                                                                          rows_file):
    from sentence_transformers import SentenceTransformer

    output = tmp_path / "model"
    summary = _train(monkeypatch, tiny_models, rows_file, output, "--max_steps", "3", "--save_steps", "2")
    assert summary["global_step"] == 3 and summary["rows"] == 9
    # the default: the teacher's KL plus half the data's labels (in-batch negatives at the same temperature)
    assert summary["loss"] == {"similarity_fct": "pairwise_cos_sim", "temperature": 0.05, "name": "kl",
                               "label_weight": 0.5, "labels_loss": "MultipleNegativesRankingLoss",
                               "labels_scale": 20.0}
    card = (output / "README.md").read_text()
    assert "bert distilled from qwen3-embedder" in card and "DistillationWithLabels" in card
    assert (output / "loss_curve.png").stat().st_size > 1000
    history = read_json(output / "log_history.json")
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3]
    assert all(np.isfinite(entry["loss"]) and entry["loss"] > 0 for entry in history if "loss" in entry)

    trained = SentenceTransformer(str(output), device="cpu")
    base = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    texts = ["What is the capital of France?", "Paris is the capital of France."]
    assert not np.allclose(trained.encode(texts), base.encode(texts), atol=1e-4)


@pytest.mark.parametrize("label_weight, steps", [("0.5", 1), ("0", 3)])
def test_rows_per_step_by_default_follow_the_label_term(monkeypatch, tmp_path, tiny_models, rows_file, label_weight,
                                                        steps):
    """No --per_device_train_batch_size: 16 rows a step with the label term (its in-batch negatives), 4 for the
    teacher alone; one epoch of the 9 rows takes 1 and 3 steps."""
    summary = _train(monkeypatch, tiny_models, rows_file, tmp_path / "m", "--label_weight", label_weight,
                     "--num_train_epochs", "1", "--save_strategy", "no", batch_size=None)
    assert summary["global_step"] == steps


@pytest.mark.parametrize("loss, extra", [("margin_mse", []), ("mse", []), ("kl", ["--matryoshka_dims", "64,32"]),
                                         ("kl", ["--student_temperature", "0.1", "--teacher_temperature", "0.02"]),
                                         ("kl", ["--label_weight", "0.5"]),
                                         ("kl", ["--self_distillation_weight", "0.3"]),
                                         ("kl", ["--matryoshka_dims", "64,32", "--self_distillation_weight", "0.3"])])
def test_every_loss_trains(monkeypatch, tmp_path, tiny_models, rows_file, loss, extra):
    summary = _train(monkeypatch, tiny_models, rows_file, tmp_path / "m", "--loss", loss, "--max_steps", "2",
                     "--save_strategy", "no", *extra)
    assert summary["global_step"] == 2
    assert np.isfinite(summary["train_metrics"]["train_loss"])
    if extra[:1] == ["--matryoshka_dims"]:
        assert summary["loss"]["matryoshka_dims"] == [64, 32]
    if "--teacher_temperature" in extra:
        assert summary["loss"]["student_temperature"] == 0.1 and summary["loss"]["teacher_temperature"] == 0.02
    if "--label_weight" in extra:
        assert summary["loss"]["label_weight"] == 0.5 and summary["loss"]["labels_scale"] == 20.0
    if extra[:1] == ["--self_distillation_weight"]:
        assert summary["loss"]["self_distillation_weight"] == 0.3


def test_loss_pieces(tiny_models):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    query, other = torch.randn(3, 8), torch.randn(3, 8)
    labels = torch.tensor([[0.5], [0.1], [-0.2]])
    expected = torch.mean((torch.nn.functional.cosine_similarity(query, other)[:, None] - labels) ** 2)
    assert torch.allclose(SimilarityMSELoss(model).compute_loss_from_embeddings([query, other], labels), expected)
    with pytest.raises(InputError, match="exceed the student's embedding dimension 64"):
        build_loss(model, "kl", matryoshka_dims=[128, 64])
    with pytest.raises(InputError, match="--loss must be one of"):
        build_loss(model, "cosine")
    with pytest.raises(InputError, match="--student_temperature must be a positive number"):
        build_loss(model, "kl", student_temperature=0.0, label_weight=0.3)

    # the data's labels beside the teacher: KL divergence (without DistillKLDivLoss's T^2) + w x cross-entropy of
    # each row's positive against every candidate of the batch, at the student temperature
    embeddings = [torch.randn(3, 8) for _ in range(4)]  # query, positive, negative_1, negative_2
    teacher = torch.rand(3, 3)
    combined = build_loss(model, "kl", temperature=0.05, label_weight=0.3)
    unit = [torch.nn.functional.normalize(e, dim=1) for e in embeddings]
    student = torch.stack([(unit[0] * candidate).sum(dim=1) for candidate in unit[1:]], dim=1) / 0.05
    target = (teacher / 0.05).softmax(dim=1)
    kl = (target * (target.log() - student.log_softmax(dim=1))).sum(dim=1).mean()
    scores = unit[0] @ torch.cat(unit[1:]).T / 0.05  # 3 queries x 9 candidates; row i's positive is column i
    cross_entropy = torch.nn.functional.cross_entropy(scores, torch.arange(3))
    assert torch.allclose(combined.compute_loss_from_embeddings(embeddings, teacher), kl + 0.3 * cross_entropy,
                          atol=1e-5)
    with pytest.raises(InputError, match="--label_negatives must be one of batch, row"):
        build_loss(model, "kl", label_weight=0.3, label_negatives="corpus")
    with pytest.raises(InputError, match="--label_weight works with --loss kl"):
        build_loss(model, "mse", label_weight=0.3)
    # query prompts only for students that define them (the Qwen3 embedder does, the plain BERT does not)
    qwen = SentenceTransformer(str(tiny_models["qwen3_embedder"]), device="cpu")
    columns = ["query", "positive", "negative_1", "label"]
    assert column_prompts(qwen, columns) == {"query": qwen.prompts["query"]}
    assert column_prompts(model, columns) is None


def test_the_starting_student_holds_the_pairs_the_teacher_does_not_judge(tiny_models):
    """unjudged_similarity_kl by hand: 2 rows of a query and 2 candidates; each text's softmax over its cosines with
    the other texts, a query's own candidates left out (the teacher's pairs); KL from the starting student's."""
    from sentence_transformers import SentenceTransformer

    from ragdistill.embedding.losses import unjudged_similarity_kl

    torch.manual_seed(0)
    student = [torch.randn(2, 8) for _ in range(3)]  # queries, candidates of column 1, of column 2
    start = [vectors + 0.5 * torch.randn(2, 8) for vectors in student]
    texts = [(column, row) for column in range(3) for row in range(2)]

    def cosine(embeddings, a, b):
        return torch.nn.functional.cosine_similarity(embeddings[a[0]][a[1]], embeddings[b[0]][b[1]], dim=0)

    total = 0.0
    for a in texts:
        partners = [b for b in texts if b != a and not (a[1] == b[1] and (a[0] == 0) != (b[0] == 0))]
        p = torch.stack([cosine(start, a, b) for b in partners]) / 0.05
        q = torch.stack([cosine(student, a, b) for b in partners]) / 0.05
        total += (p.softmax(0) * (p.log_softmax(0) - q.log_softmax(0))).sum()
    torch.testing.assert_close(unjudged_similarity_kl(student, start, 0.05), total / len(texts))
    assert unjudged_similarity_kl(student, student, 0.05).abs() < 1e-6  # nothing moved, nothing to hold
    # one row with one candidate: no pair left to hold
    assert unjudged_similarity_kl(student[:2], start[:2], 0.05) > 0
    assert unjudged_similarity_kl([student[0][:1], student[1][:1]], [start[0][:1], start[1][:1]], 0.05) == 0

    model = SentenceTransformer(str(tiny_models["bert"]), device="cpu")
    for weight, loss, message in [(-1.0, "kl", "must be 0 or more"), (0.5, "mse", "works with --loss kl"),
                                  (0.5, "kl", "needs the starting student")]:
        with pytest.raises(InputError, match=message):
            build_loss(model, loss, self_distillation_weight=weight)
    # in the loss: the teacher's KL plus w x the term on the starting student's embeddings
    teacher = torch.rand(2, 2)
    combined = build_loss(model, "kl", start_model=model, self_distillation_weight=0.3)
    alone = build_loss(model, "kl")
    torch.testing.assert_close(combined.compute_loss_from_embeddings(student, teacher, start),
                               alone.compute_loss_from_embeddings(student, teacher) + 0.3 * total / len(texts))


@pytest.mark.parametrize("student_temperature, teacher_temperature", [(None, None), (0.1, 0.02)])
def test_our_losses_equal_the_librarys_on_a_batch(tiny_models, student_temperature, teacher_temperature):
    """Through the model, on the same batch of texts: DistillationWithLabels is DistillKLDivLoss / T^2 plus w x
    MultipleNegativesRankingLoss at scale 1 / T (student temperature), SimilarityMSELoss on one candidate column
    is CosineSimilarityLoss, and SimilarityMarginMSELoss is MarginMSELoss (teacher scores or margins as labels)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.util import pairwise_cos_sim

    model = SentenceTransformer(str(tiny_models["bert"]), device="cpu").eval()  # no dropout: comparable passes
    columns = [["what is a glacier cave", "who wrote hamlet", "capital of france"],
               ["a cave formed within a glacier", "hamlet is a play by shakespeare", "paris is the capital"],
               ["rivers flow to the sea", "a danish prince", "france is in europe"],
               ["snow falls in winter", "plays are staged in theatres", "berlin is a city in germany"]]
    teacher = torch.tensor([[0.9, 0.2, 0.1], [0.8, 0.5, 0.3], [0.7, 0.6, 0.2]])

    def features():  # fresh each call: a forward pass writes its outputs into the feature dicts
        return [model.preprocess(texts) for texts in columns]

    student_t = student_temperature or 0.05
    with torch.no_grad():
        ours = build_loss(model, "kl", 0.05, student_temperature, teacher_temperature, label_weight=0.3)(
            features(), teacher)
        kl = losses.DistillKLDivLoss(model, similarity_fct=pairwise_cos_sim, temperature=0.05,
                                     student_temperature=student_temperature,
                                     teacher_temperature=teacher_temperature)(features(), teacher)
        cross_entropy = losses.MultipleNegativesRankingLoss(model, scale=1 / student_t)(features(), teacher)
        mse = SimilarityMSELoss(model)(features()[:2], teacher[:, :1])
        cosine = losses.CosineSimilarityLoss(model)(features()[:2], teacher[:, 0])
        margin_mse = build_loss(model, "margin_mse")
        library_margin_mse = losses.MarginMSELoss(model, similarity_fct=pairwise_cos_sim)
        margins = teacher[:, :1] - teacher[:, 1:]
        for labels in (teacher, margins):
            torch.testing.assert_close(margin_mse(features(), labels), library_margin_mse(features(), labels),
                                       rtol=1e-5, atol=1e-7)
        with pytest.raises(InputError, match=r"margin_mse rows need 3 teacher scores or 2 margins per row"):
            margin_mse(features(), teacher[:, :1].repeat(1, 4))
    torch.testing.assert_close(ours, kl / student_t ** 2 + 0.3 * cross_entropy, rtol=1e-4, atol=1e-6)
    # the teacher alone (label weight 0): DistillKLDivLoss / T^2, computed one column at a time
    with torch.no_grad():
        alone = build_loss(model, "kl", 0.05, student_temperature, teacher_temperature)(features(), teacher)
    torch.testing.assert_close(alone, kl / student_t ** 2, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(mse, cosine, rtol=1e-5, atol=1e-7)
    # label_negatives="row": the positive (the row's first candidate) against the row's own candidates only, by hand
    with torch.no_grad():
        row = build_loss(model, "kl", 0.05, student_temperature, teacher_temperature, label_weight=0.3,
                         label_negatives="row")(features(), teacher)
        vectors = [model(f)["sentence_embedding"] for f in features()]
        cosines = torch.stack([pairwise_cos_sim(vectors[0], other) for other in vectors[1:]], dim=1)
        by_hand = -(cosines / student_t).log_softmax(dim=1)[:, 0].mean()
    torch.testing.assert_close(row, kl / student_t ** 2 + 0.3 * by_hand, rtol=1e-4, atol=1e-6)


def test_resume_from_checkpoint_continues_exactly(monkeypatch, tmp_path, tiny_models, rows_file):
    full = tmp_path / "full"
    _train(monkeypatch, tiny_models, rows_file, full, "--max_steps", "4", "--save_steps", "2")
    assert resolve_resume_checkpoint("last", full).endswith("checkpoint-4")

    # as if the first run had died after step 2: resume from its checkpoint in another folder
    resumed = tmp_path / "resumed"
    summary = _train(monkeypatch, tiny_models, rows_file, resumed, "--max_steps", "4", "--save_steps", "2",
                     "--resume_from_checkpoint", str(full / "checkpoint-2"))
    assert summary["resumed_from"].endswith("checkpoint-2") and summary["global_step"] == 4
    history = read_json(resumed / "log_history.json")
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]  # steps 1-2 from the checkpoint
    full_weights, resumed_weights = _weights(full), _weights(resumed)
    for name, tensor in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], tensor, atol=1e-6, rtol=1e-5)

    with pytest.raises(InputError, match="no checkpoint"):
        resolve_resume_checkpoint("last", tmp_path / "nothing")
    with pytest.raises(InputError, match="not a checkpoint folder"):
        resolve_resume_checkpoint(str(tmp_path), tmp_path)


def test_unfinished_or_non_training_rows_are_refused(tmp_path, rows_file, capsys):
    with pytest.raises(InputError, match="holds 'scores' rows, not training rows"):
        load_training_rows(rows_file.with_name("scores.jsonl"))
    copy = tmp_path / "rows.jsonl"
    copy.write_bytes(rows_file.read_bytes())
    with pytest.raises(InputError, match="incomplete: no 'rows.jsonl.meta.json' marked complete"):
        load_training_rows(copy)
    meta = read_json(meta_path(rows_file))
    meta_path(copy).write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(InputError, match="incomplete"):
        load_training_rows(copy)
    # the script turns it into a one-line error and exit status 2
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: stage_main("Embedding-Distillation", "train")([
            "--training_rows", str(copy), "--output_dir", str(tmp_path / "m")]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"error: {copy}: incomplete")
    assert not (tmp_path / "m").exists()


def test_rows_of_several_files_train_together(tmp_path, rows_file):
    # --training_rows takes several stage-1 outputs, comma-separated, as in Reranker-Distillation; rows of another
    # teacher setting or other columns are refused, naming the file
    single, meta = load_training_rows(rows_file)
    second = tmp_path / "more.jsonl"
    second.write_bytes(rows_file.read_bytes())
    meta_path(second).write_text(json.dumps(read_json(meta_path(rows_file))))
    both, both_meta = load_training_rows(f"{rows_file},{second}")
    assert len(both) == 2 * len(single) and both.column_names == single.column_names and both_meta == meta
    assert both["query"][len(single):] == single["query"]
    assert len(load_training_rows([rows_file, second], max_rows=3)[0]) == 3
    meta_path(second).write_text(json.dumps({**read_json(meta_path(rows_file)), "query_prompt": "other: "}))
    with pytest.raises(InputError, match=f"{second}: its rows have query_prompt 'other: '"):
        load_training_rows([rows_file, second])


@pytest.mark.slow
def test_torchrun_data_parallel_on_cpu(tmp_path, tiny_models, rows_file, monkeypatch):
    output = tmp_path / "ddp"
    env = repo_env(TMPDIR=str(tmp_path))  # torchrun's own torchelastic_* folder goes with the test's
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(TRAIN_SCRIPT),
               "--student_model", str(tiny_models["bert"]), "--training_rows", str(rows_file), "--output_dir",
               str(output), "--per_device_train_batch_size", "2", "--num_train_epochs", "1", "--logging_steps", "1",
               "--use_cpu", "true"]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = read_json(output / "training_summary.json")
    # 9 rows over 2 processes x 2 rows, last uneven batch dropped: 2 steps make the epoch
    assert summary["global_step"] == 2 and summary["train_metrics"]["epoch"] == 1.0
    assert run.stdout.count("saved the student") == 1  # only rank 0 writes
    # without --use_cpu the CPU Trainer would train 2 unsynchronised copies: refused with a hint
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="--use_cpu true"):
        check_distributed(type("Args", (), {"world_size": 1})())
