"""A yes/no LLM reranker as the student (Qwen3-Reranker-0.6B's kind), on tiny Qwen3 models: it reads the teacher's
prompt token for token (cut documents and queries alike) and scores in fp32; every loss trains it towards the
teacher (loss falls, per-query Spearman with the teacher rises); LoRA with gradient checkpointing and bf16 trains
adapters that are merged into the saved model, which loads with CrossEncoder(path) and in vLLM through the
teacher's own sequence-classification conversion, with the same scores."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ragdistill.core.jsonl import dumps, write_json
from ragdistill.core.mteb import read_samples
from ragdistill.core.resumable import meta_path
from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, Qwen3RerankerPrompts, chat_template, template_instruction
from ragdistill.reranker.rows import RowSettings, build_rows
from ragdistill.reranker.teachers import TeacherArguments, load_teacher
from ragdistill.reranker.training import load_student
from tests.builders import build_qwen3
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
MAX_LENGTH = 160
INSTRUCTION = "Given a question, find the passage that answers it"


def per_query_spearman(student: dict, groups: list[dict]) -> float:
    """Mean over queries of the Spearman correlation of the student's and the teacher's scores of its passages."""
    from scipy.stats import spearmanr

    return float(np.mean([spearmanr([student[pair] for pair in teacher], list(teacher.values())).statistic
                          for teacher in groups]))


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    """A tiny Qwen3 reranker of its own seed: the same tokenizer as the teacher, other weights."""
    return build_qwen3(tmp_path_factory.mktemp("student"), seed=7)


@pytest.fixture(scope="module")
def teacher_scores(tiny_models, tmp_path_factory):
    """Stage-1 output of the tiny Qwen3 teacher (transformers backend, fp32) over 6 WikiQA dev queries."""
    samples = read_samples(REPO / "data/wikiqa/dev.jsonl.gz")[:6]
    pairs = [(s.query, p) for s in samples for p in s.candidates]
    teacher = load_teacher(TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="torch",
                                            teacher_dtype="float32", teacher_max_length=MAX_LENGTH,
                                            instruction=INSTRUCTION))
    scores = teacher.score(pairs).scores
    path = tmp_path_factory.mktemp("scores") / "train.scores.jsonl"
    path.write_text("".join(dumps({"query": q, "passage": p, "score": s}) + "\n" for (q, p), s in zip(pairs, scores)))
    write_json(meta_path(path), {"teacher": "tiny-qwen3-reranker", "complete": True, "instruction": INSTRUCTION,
                                 "max_length": MAX_LENGTH})
    return path, dict(zip(pairs, scores)), samples


def test_student_reads_the_teachers_prompt_and_scores_in_fp32(tiny_models):
    pairs = [("What is the capital of France?", "Paris is the capital and most populous city of France."),
             ("Who wrote the novel?", "The novel was written in 1851 by an American author. " * 12),  # document cut
             ("why " * 120, "a passage"),  # even the query is cut
             ("q", "d")]
    model = str(tiny_models["qwen3_reranker"])
    student = load_student(model, MAX_LENGTH, instruction=INSTRUCTION)
    expected = Qwen3RerankerPrompts(student.tokenizer, INSTRUCTION, MAX_LENGTH).encode(pairs)
    assert expected.document_truncated == [False, True, True, False] and expected.query_truncated[2]
    features = student[0].preprocess(pairs)
    got = [row[mask.bool()].tolist() for row, mask in zip(features["input_ids"], features["attention_mask"])]
    assert got == expected.input_ids
    assert template_instruction(student.tokenizer.chat_template) == INSTRUCTION
    # The score is the teacher's logit(yes) - logit(no): the same model through the teacher's code gives the same.
    teacher = load_teacher(TeacherArguments(teacher_model=model, backend="torch", teacher_dtype="float32",
                                            teacher_max_length=MAX_LENGTH,
                                          instruction=INSTRUCTION, share_prefixes="off"))
    scores = student.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    np.testing.assert_allclose(scores.numpy(), teacher.score(pairs).scores, atol=1e-4)
    # In bf16 the output layer runs in fp32: fp32 scores, not bf16's coarse grid.
    bf16 = load_student(model, MAX_LENGTH, dtype=torch.bfloat16, instruction=INSTRUCTION)
    scores = bf16.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_tensor=True)
    assert scores.dtype == torch.float32 and len(set(scores.tolist())) == len(pairs)
    with pytest.raises(ValueError, match="Jinja"):
        chat_template("{% endraw %}")
    assert template_instruction(chat_template(DEFAULT_INSTRUCTION)) == DEFAULT_INSTRUCTION


def train_script():
    return script_main("Reranker-Distillation", "train")


def train(student: Path, rows: Path, output: Path, *extra: str) -> None:
    train_script()(["--student_model", str(student), "--training_rows", str(rows), "--output_dir", str(output),
                    "--max_seq_length", str(MAX_LENGTH), "--per_device_train_batch_size", "4", "--logging_steps", "4",
                    "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true", "--seed", "0",
                    "--dataloader_pin_memory", "false", "--lr_scheduler_type", "constant",
                    "--label_weight", "0", *extra])  # the teacher alone: agreement with it is what is measured


@pytest.mark.parametrize("loss,fmt,steps,lr", [("margin_mse", "ntuple", 24, "1e-4"), ("listnet", "listwise", 24, "1e-4"),
                                               ("lambda", "listwise", 24, "1e-4"), ("mse", "ntuple", 24, "1e-4")])
def test_every_loss_moves_the_student_towards_the_teacher(student, teacher_scores, tmp_path, loss, fmt, steps, lr):
    from sentence_transformers import CrossEncoder

    score_file, teacher, samples = teacher_scores
    rows = tmp_path / "rows.jsonl"
    build_rows([score_file], rows, RowSettings(format=fmt, top_k=3, num_negatives=3))
    groups = [{(s.query, p): teacher[(s.query, p)] for p in s.candidates} for s in samples]
    pairs = list(teacher)

    def agreement(model) -> float:
        return per_query_spearman(dict(zip(pairs, model.predict(pairs, activation_fn=torch.nn.Identity()))), groups)

    before = agreement(load_student(str(student), MAX_LENGTH, instruction=INSTRUCTION))
    output = tmp_path / "model"
    train(student, rows, output, "--loss", loss, "--max_steps", str(steps), "--learning_rate", lr)
    history = [entry["loss"] for entry in json.loads((output / "log_history.json").read_text()) if "loss" in entry]
    assert len(history) == steps // 4 and history[-1] < history[0]
    trained = CrossEncoder(str(output))  # the teacher's prompt travels with the model
    assert template_instruction(trained.tokenizer.chat_template) == INSTRUCTION
    after = agreement(trained)
    assert after > before + 0.2, (before, after)


@pytest.mark.vllm
def test_lora_student_is_merged_and_serves_alike_in_both_servers(student, teacher_scores, tmp_path):
    from sentence_transformers import CrossEncoder

    from ragdistill.core.vllm_engine import VLLMArguments, stop_engine

    score_file, teacher, samples = teacher_scores
    rows = tmp_path / "rows.jsonl"
    build_rows([score_file], rows, RowSettings(format="ntuple", top_k=3, num_negatives=3))
    output = tmp_path / "model"
    train(student, rows, output, "--loss", "margin_mse", "--max_steps", "4", "--learning_rate", "1e-3",
          "--lora_r", "4", "--lora_alpha", "8", "--lora_dropout", "0", "--lora_target_modules", "q_proj,v_proj,up_proj",
          "--gradient_checkpointing", "true", "--bf16", "true")
    # Merged: a plain model folder, no adapter files, and the adapted weights moved.
    assert not (output / "adapter_config.json").exists() and not (output / "adapter_model.safetensors").exists()
    trained = CrossEncoder(str(output), device="cpu")
    assert not any("lora" in name for name, _ in trained.named_parameters())
    base = dict(load_student(str(student), MAX_LENGTH, instruction=INSTRUCTION).named_parameters())
    moved = {re.sub(r".*\.layers\.\d+\.", "", name) for name, p in trained.named_parameters()
             if not torch.equal(p, base[name])}
    assert moved == {"self_attn.q_proj.weight", "self_attn.v_proj.weight", "mlp.up_proj.weight"}
    card = (output / "README.md").read_text()
    for text in ("Teacher: `tiny-qwen3-reranker`", f"Instruction: {INSTRUCTION}", "ntuple rows from", "Loss: margin_mse",
                 "LoRA r=4"):
        assert text in card, text
    # vLLM, through the conversion the teacher uses, scores the saved student as CrossEncoder(path) does (fp32).
    pairs = [(s.query, p) for s in samples[:2] for p in s.candidates] + [("Who wrote it?", "The novel was written. " * 40)]
    from_st = trained.predict(pairs, activation_fn=torch.nn.Identity())
    served = load_teacher(TeacherArguments(teacher_model=str(output), backend="vllm", teacher_dtype="float32",
                                           teacher_max_length=MAX_LENGTH, instruction=INSTRUCTION),
                          VLLMArguments(enforce_eager=True, kv_cache_gb=0.25))
    try:
        scored = served.score(pairs)
    finally:
        stop_engine(served.llm)
    assert scored.truncated[-1]
    np.testing.assert_allclose(scored.scores, from_st, atol=1e-4)
