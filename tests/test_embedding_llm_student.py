"""An LLM embedder as the student (Qwen3-Embedding-0.6B's kind), on tiny Qwen3 embedders: queries carry the
teacher's instruction prompt and documents none, with last-token pooling, the appended end-of-text token and left
padding kept; LoRA adapters train and are merged; the loss falls and the per-query Spearman correlation with the
teacher rises; the saved student embeds alike in sentence-transformers and in vLLM's pooling runner, Matryoshka
dimensions included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.jsonl import read_json
from ragdistill.embedding.teachers import TeacherArguments, load_teacher
from ragdistill.embedding.training import load_student, load_training_rows
from tests import test_embedding_training
from tests.builders import build_qwen3
from tests.builders import stage_main as script_main

REPO = Path(__file__).resolve().parents[1]
rows_file = test_embedding_training.rows_file  # the stage-1 rows of the tiny Qwen3 teacher (8 WikiQA dev queries)
MAX_LENGTH = 96
DIMS = [128, 64, 32]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, rows_file):
    """A tiny Qwen3 embedder of its own seed, trained with LoRA adapters and Matryoshka dimensions."""
    student = build_qwen3(tmp_path_factory.mktemp("student"), embedder=True, seed=5)
    output = tmp_path_factory.mktemp("trained") / "model"
    main = script_main("Embedding-Distillation", "train")
    main(["--student_model", str(student), "--training_rows", str(rows_file), "--output_dir", str(output),
          "--max_seq_length", str(MAX_LENGTH), "--matryoshka_dims", ",".join(map(str, DIMS)), "--max_steps", "30",
          "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--lr_scheduler_type", "constant",
          "--logging_steps", "5", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true", "--seed", "0",
          "--lora_r", "8", "--lora_dropout", "0"])
    return student, output


def agreement(model, rows) -> float:
    """Mean per-row Spearman correlation of the student's cosine similarities with the teacher's labels."""
    from scipy.stats import spearmanr

    columns = [c for c in rows.column_names if c not in ("query", "label")]
    queries = model.encode_query(rows["query"], normalize_embeddings=True)
    similarities = np.stack([(queries * model.encode_document(rows[c], normalize_embeddings=True)).sum(1)
                             for c in columns], 1)
    return float(np.mean([spearmanr(s, t).statistic for s, t in zip(similarities, rows["label"])]))


def test_llm_embedder_student_trains_with_the_teachers_prompts(trained, rows_file):
    from sentence_transformers import SentenceTransformer

    student, output = trained
    rows, meta = load_training_rows(rows_file)
    summary = read_json(output / "training_summary.json")
    # Queries carry the teacher's instruction prompt exactly, documents none; the saved model keeps them.
    assert meta["query_prompt"].startswith("Instruct: ") and meta["document_prompt"] == ""
    assert summary["prompts"] == {"query": meta["query_prompt"]}
    model = SentenceTransformer(str(output), device="cpu")
    assert model.prompts["query"] == meta["query_prompt"] and not model.prompts.get("document")
    # Last-token pooling over a left-padded batch whose texts end in <|endoftext|>, as the teacher's.
    assert model[1].pooling_mode == "lasttoken" and model.tokenizer.padding_side == "left"
    ids = model.tokenizer(["a short text", "a somewhat longer text than that"], padding=True)["input_ids"]
    assert {row[-1] for row in ids} == {model.tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    # LoRA merged: a plain model, no adapters left.
    assert not (output / "adapter_config.json").exists()
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert "LoRA r=8" in summary["lora"]
    # The loss falls, and the student ranks each row's candidates more like the teacher.
    losses = [entry["loss"] for entry in read_json(output / "log_history.json") if "loss" in entry]
    assert len(losses) == 6 and losses[-1] < losses[0]
    before, after = agreement(load_student(str(student), MAX_LENGTH, device="cpu"), rows), agreement(model, rows)
    assert after > before + 0.2, (before, after)


@pytest.mark.vllm
def test_saved_llm_embedder_embeds_alike_in_vllm(trained):
    from sentence_transformers import SentenceTransformer
    from vllm import PoolingParams
    from vllm.inputs import TokensPrompt

    from ragdistill.core.vllm_engine import VLLMArguments

    _, output = trained
    model = SentenceTransformer(str(output), device="cpu")
    texts = [model.prompts["query"] + "What is the capital of France?", "Paris is the capital of France. " * 30,
             "short"]
    served = load_teacher(TeacherArguments(teacher_model=str(output), backend="vllm", teacher_dtype="float32",
                                           teacher_max_length=MAX_LENGTH), VLLMArguments(enforce_eager=True, kv_cache_gb=0.25))
    try:
        np.testing.assert_allclose(served.encode(texts), model.encode(texts), atol=1e-4)
        ids = served.tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]
        assert len(ids[1]) == MAX_LENGTH  # the long passage is cut, its end-of-text token kept
        for dim in DIMS[1:]:
            outputs = served.llm.embed([TokensPrompt(prompt_token_ids=row) for row in ids],
                                       pooling_params=PoolingParams(dimensions=dim), use_tqdm=False)
            np.testing.assert_allclose([o.outputs.embedding for o in outputs],
                                       model.encode(texts, truncate_dim=dim, normalize_embeddings=True), atol=1e-4)
    finally:
        served.close()
