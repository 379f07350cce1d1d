"""Stage 3 (student training) with the tiny BERT student: every loss trains and saves a loadable CrossEncoder with
its card, log history and loss curve; a loss meets the rows it needs; --resume_from_checkpoint continues a run;
torchrun with two processes works."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import dumps, read_json, write_json
from ragdistill.core.mteb import read_samples
from ragdistill.core.resumable import meta_path
from ragdistill.reranker.rows import RowSettings, build_rows
from tests.builders import repo_env
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]


def stage_main(name: str):
    """main(argv) of a Reranker-Distillation stage script, run in this process."""
    return script_main("Reranker-Distillation", name)


@pytest.fixture(scope="module")
def train_script():
    return stage_main("train")


@pytest.fixture(scope="module")
def score_file(tmp_path_factory) -> Path:
    """A finished stage-1 output over real WikiQA texts (scores drawn at random: training mechanics only)."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("scores") / "train.scores.jsonl"
    samples = read_samples(REPO / "data/wikiqa/dev.jsonl.gz")[:6]
    rows = [{"query": s.query, "passage": p, "score": round(rng.gauss(0, 3), 4)} for s in samples for p in s.candidates]
    path.write_text("".join(dumps(r) + "\n" for r in rows))
    write_json(meta_path(path), {"teacher": "tiny-qwen3-reranker", "complete": True})
    return path


def rows_file(score_file: Path, tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"rows-{fmt}.jsonl"
    build_rows([score_file], out, RowSettings(format=fmt, top_k=3, num_negatives=2))
    return out


def train_args(tiny_models, rows: Path, output: Path, *extra: str) -> list[str]:
    return ["--student_model", str(tiny_models["bert"]), "--training_rows", str(rows), "--output_dir", str(output),
            "--per_device_train_batch_size", "2", "--max_steps", "2", "--logging_steps", "1", "--save_strategy", "no",
            "--report_to", "none", "--max_seq_length", "128", "--dataloader_pin_memory", "false", *extra]


@pytest.mark.parametrize("loss,fmt", [("margin_mse", "ntuple"), ("margin_mse", "triplet"), ("listnet", "listwise"),
                                      ("lambda", "listwise"), ("mse", "ntuple")])
def test_each_loss_trains_and_saves_a_cross_encoder(train_script, tiny_models, score_file, tmp_path, loss, fmt):
    from sentence_transformers import CrossEncoder

    output = tmp_path / "model"
    train_script(train_args(tiny_models, rows_file(score_file, tmp_path, fmt), output, "--loss", loss))
    # The final model, in sentence-transformers format, at the top of the output folder.
    assert (output / "config_sentence_transformers.json").exists() and (output / "model.safetensors").exists()
    model = CrossEncoder(str(output))
    assert model.num_labels == 1 and len(model.predict([("a question", "an answer")])) == 1
    card = (output / "README.md").read_text()
    assert "## Distillation" in card and "Teacher: `tiny-qwen3-reranker`" in card and f"Loss: {loss}" in card
    assert f"{fmt} rows from" in card and "train.scores.jsonl" in card
    history = json.loads((output / "log_history.json").read_text())
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2]
    assert (output / "loss_curve.png").stat().st_size > 1000


def test_loss_needs_matching_rows(train_script, tiny_models, score_file, tmp_path):
    rows = rows_file(score_file, tmp_path, "ntuple")
    with pytest.raises(InputError, match="--loss listnet needs listwise rows.*--format listwise"):
        train_script(train_args(tiny_models, rows, tmp_path / "m", "--loss", "listnet"))
    triplets = rows_file(score_file, tmp_path, "triplet")
    with pytest.raises(InputError, match="--loss mse needs ntuple or listwise rows"):
        train_script(train_args(tiny_models, triplets, tmp_path / "m", "--loss", "mse"))
    with pytest.raises(InputError, match="not stage-2 rows"):
        train_script(train_args(tiny_models, score_file, tmp_path / "m"))


def test_student_path_must_exist(train_script, tiny_models, score_file, tmp_path):
    rows = rows_file(score_file, tmp_path, "ntuple")
    args = train_args(tiny_models, rows, tmp_path / "m", "--loss", "margin_mse")
    args[1] = str(tmp_path / "missing-student")
    with pytest.raises(InputError, match="student model path does not exist"):
        train_script(args)


def test_resume_from_checkpoint(train_script, tiny_models, score_file, tmp_path):
    rows = rows_file(score_file, tmp_path, "listwise")
    output = tmp_path / "model"
    first = train_args(tiny_models, rows, output, "--save_strategy", "steps", "--save_steps", "2")
    train_script(first)
    checkpoint = output / "checkpoint-2"
    assert (checkpoint / "trainer_state.json").exists()
    # Mark the checkpoint's state: if training really continues from it, the mark is carried into the history.
    state = read_json(checkpoint / "trainer_state.json")
    state["log_history"].insert(0, {"resumed_from": "checkpoint-2", "step": 0})
    write_json(checkpoint / "trainer_state.json", state)
    # "last" = the newest checkpoint in --output_dir (or give the checkpoint folder itself).
    second = [*first, "--resume_from_checkpoint", "last"]
    second[second.index("--max_steps") + 1] = "4"
    train_script(second)
    history = json.loads((output / "log_history.json").read_text())
    assert history[0] == {"resumed_from": "checkpoint-2", "step": 0}
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2, 3, 4]
    assert read_json(output / "checkpoint-4" / "trainer_state.json")["global_step"] == 4
    assert (output / "model.safetensors").exists()


@pytest.mark.slow
def test_torchrun_two_processes(tiny_models, score_file, tmp_path):
    rows = rows_file(score_file, tmp_path, "listwise")
    output = tmp_path / "model"
    # --use_cpu: data parallel over CPU processes (gloo); on GPUs torchrun alone gives one GPU per process.
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(REPO / "Reranker-Distillation/train.py"), *train_args(tiny_models, rows, output), "--use_cpu", "true"]
    env = repo_env(OMP_NUM_THREADS="1", TMPDIR=str(tmp_path))  # torchrun's torchelastic_* folder goes with the test's
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (output / "model.safetensors").exists() and (output / "loss_curve.png").exists()
    history = json.loads((output / "log_history.json").read_text())
    # Two ranks of batch 2: each step consumes 4 rows (one process would take 2), so an epoch has n // 4 steps.
    num_rows = len(rows.read_text().splitlines())
    assert history[0]["epoch"] == pytest.approx(1 / (num_rows // 4))
    assert history[-1]["step"] == 2 and "train_runtime" in history[-1]
    assert result.stdout.count("saved the student to") == 1  # written by rank 0 only


def test_default_learning_rate_follows_the_head(train_script, tiny_models, score_file, tmp_path):
    # train.py without --learning_rate: a plain encoder gets a new head and the higher rate, a reranker keeps its own
    from ragdistill.reranker.training import default_learning_rate

    assert default_learning_rate(str(tiny_models["bert"])) == 1e-4
    assert default_learning_rate(str(tiny_models["qwen3_reranker"])) == 1e-5
    output = tmp_path / "model"
    train_script(train_args(tiny_models, rows_file(score_file, tmp_path, "listwise"), output, "--warmup_steps", "0",
                            "--lr_scheduler_type", "constant"))
    rates = [entry["learning_rate"] for entry in json.loads((output / "log_history.json").read_text())
             if "learning_rate" in entry]
    assert rates and all(rate == pytest.approx(1e-4) for rate in rates)


def test_head_learning_rate_through_the_trainer_flag(tiny_models, score_file, tmp_path):
    # the README's way to give a new head its own rate: sentence-transformers' --learning_rate_mapping (a
    # TRAIN_ARGS flag) with the pattern "classifier" puts exactly the head's weights in groups at that rate
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments

    from ragdistill.core.cli import parse_args
    from ragdistill.reranker.losses import build_loss
    from ragdistill.reranker.training import load_student, load_training_rows

    student = load_student(str(tiny_models["bert"]), 128, device="cpu")
    dataset, _ = load_training_rows([str(rows_file(score_file, tmp_path, "listwise"))], "listnet")
    (args,) = parse_args(CrossEncoderTrainingArguments, args=[
        "--output_dir", str(tmp_path / "model"), "--learning_rate", "1e-4", "--report_to", "none", "--use_cpu", "true",
        "--learning_rate_mapping", '{"classifier": 1e-3}'])
    trainer = CrossEncoderTrainer(model=student, args=args, train_dataset=dataset, loss=build_loss(student, "listnet"))
    optimizer = trainer.create_optimizer()
    head = {id(p) for p in student.transformers_model.classifier.parameters()}
    rate = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert sum(len(group["params"]) for group in optimizer.param_groups) == len(rate)
    assert set(rate) == {id(p) for p in student.parameters() if p.requires_grad}
    assert {rate[i] for i in head} == {1e-3} and {r for i, r in rate.items() if i not in head} == {1e-4}


def test_label_term_beside_the_teacher(tiny_models, tmp_path):
    # --label_weight w: ListNet on the teacher's scores (exactly sentence-transformers' ListNetLoss) plus w x the
    # cross-entropy against the data's positives; a query without a positive adds no label term
    import torch
    from sentence_transformers.cross_encoder.losses import ListNetLoss

    from ragdistill.reranker.losses import build_loss
    from ragdistill.reranker.training import load_student

    student = load_student(str(tiny_models["bert"]), 64, device="cpu").eval()  # no dropout: comparable passes
    queries = ["what is a glacier cave", "who wrote it"]
    documents = [["ice cave in a glacier", "a river", "snow"], ["an author", "a book"]]
    teacher = [torch.tensor([3.0, 1.0, -1.0]), torch.tensor([0.5, 2.0])]
    relevance = [[1.0, 0.0, 1.0], [0.0, 0.0]]
    with torch.no_grad():
        terms = build_loss(student, "listnet", label_weight=0.5)([queries, documents, relevance], teacher)
        in_pieces = build_loss(student, "listnet", 3, label_weight=0.5)([queries, documents, relevance], teacher)
        plain = ListNetLoss(student)([queries, documents], teacher)
        scores = [student.predict([(queries[0], d) for d in documents[0]], activation_fn=torch.nn.Identity(),
                                  convert_to_tensor=True).float()]
    torch.testing.assert_close(terms["teacher"], plain, atol=1e-6, rtol=1e-6)
    # query 1: half the positives' mass each, over the 2 queries of the batch; query 2 has no positive
    expected = -(0.5 * scores[0].log_softmax(0)[0] + 0.5 * scores[0].log_softmax(0)[2]) / 2
    torch.testing.assert_close(terms["labels"], 0.5 * expected, atol=1e-5, rtol=1e-5)
    for term in terms:  # --mini_batch_size 3 (forward passes of 3 and 2 pairs, not 2, 2 and 1): the same terms
        torch.testing.assert_close(in_pieces[term], terms[term], atol=1e-6, rtol=1e-6)
    assert build_loss(student, "listnet").__class__ is ListNetLoss  # weight 0: the library's loss, unchanged


def test_label_weight_needs_rows_with_relevance(train_script, tiny_models, score_file, tmp_path):
    rows = rows_file(score_file, tmp_path, "listwise")  # its stage-1 metadata names no input file: no relevance
    with pytest.raises(InputError, match="have none: re-run stage 2"):
        train_script(train_args(tiny_models, rows, tmp_path / "m", "--loss", "listnet", "--label_weight", "0.5"))
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(dumps({**row, "relevance": [0.0] * len(row["documents"])}) + "\n"
                                for row in map(json.loads, rows.read_text().splitlines())))
    with pytest.raises(InputError, match=f"{rows}: --label_weight needs the data's labels"):  # one file of two
        train_script(train_args(tiny_models, f"{labelled},{rows}", tmp_path / "m", "--label_weight", "0.5"))
    with pytest.raises(InputError, match="--label_weight goes with --loss listnet"):
        train_script(train_args(tiny_models, rows_file(score_file, tmp_path, "ntuple"), tmp_path / "m",
                                "--loss", "margin_mse", "--label_weight", "0.5"))


def test_label_term_trains_end_to_end(train_script, tiny_models, score_file, tmp_path):
    # rows whose stage-1 metadata names the scored MTEB file carry relevance; --label_weight trains on it and logs
    # both terms
    from ragdistill.core.hashing import file_digest
    from ragdistill.core.jsonl import write_jsonl

    source = tmp_path / "train.jsonl"
    write_jsonl(source, [s.as_dict() for s in read_samples(REPO / "data/wikiqa/dev.jsonl.gz")[:6]])
    scores = tmp_path / "train.scores.jsonl"
    scores.write_bytes(score_file.read_bytes())
    write_json(meta_path(scores), {**read_json(meta_path(score_file)), "input": str(source),
                                   "input_digest": file_digest(source)})
    rows = tmp_path / "rows.jsonl"
    build_rows([scores], rows, RowSettings(format="listwise", top_k=3, num_negatives=20))
    output = tmp_path / "model"
    train_script(train_args(tiny_models, rows, output, "--loss", "listnet", "--label_weight", "0.5"))
    logged = [entry for entry in read_json(output / "log_history.json") if "loss" in entry]
    assert logged and all(entry["teacher"] > 0 and entry["labels"] > 0 for entry in logged)
    assert all(entry["loss"] == pytest.approx(entry["teacher"] + entry["labels"], rel=1e-3) for entry in logged)


def test_default_label_weight_follows_the_rows(score_file, tmp_path, caplog):
    # unset: DEFAULT_LABEL_WEIGHT with listnet on rows that carry relevance; rows without it train on the teacher
    # alone, and a warning names the file; other losses have no label term; a given weight is kept
    from ragdistill.reranker.training import DEFAULT_LABEL_WEIGHT, default_label_weight

    plain = rows_file(score_file, tmp_path, "listwise")
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(dumps({**row, "relevance": [1.0] + [0.0] * (len(row["documents"]) - 1)}) + "\n"
                                for row in map(json.loads, plain.read_text().splitlines())))
    assert default_label_weight("listnet", None, [str(labelled)]) == DEFAULT_LABEL_WEIGHT > 0
    with caplog.at_level("WARNING"):
        assert default_label_weight("listnet", None, [str(labelled), str(plain)]) == 0.0
    assert f"{plain}: the rows carry no data labels" in caplog.text
    assert default_label_weight("lambda", None, [str(labelled)]) == 0.0
    assert default_label_weight("listnet", 0.0, [str(labelled)]) == 0.0
    assert default_label_weight("listnet", 2.0, [str(plain)]) == 2.0  # refused later, by load_training_rows


def test_eval_file_is_evaluated_during_training(train_script, tiny_models, score_file, tmp_path):
    output = tmp_path / "model"
    dev = Path(__file__).resolve().parents[1] / "data/wikiqa/dev.jsonl.gz"
    train_script(train_args(tiny_models, rows_file(score_file, tmp_path, "listwise"), output, "--loss", "listnet",
                            "--eval_file", str(dev), "--eval_max_queries", "3", "--eval_strategy", "steps",
                            "--eval_steps", "2"))
    history = json.loads((output / "log_history.json").read_text())
    evaluated = [entry for entry in history if any(key.endswith("ndcg@10") for key in entry)]
    assert [entry["step"] for entry in evaluated] == [2]
    assert 0 < next(value for key, value in evaluated[0].items() if key.endswith("ndcg@10")) <= 1
