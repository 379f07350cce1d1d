"""A cross-encoder teacher (sequence classification, one logit, like bge-reranker-v2-m3) on vLLM for real:
`llm.score` with the activation off gives the raw logits the transformers backend gives, long pairs cut alike.
Its own module, so only one vLLM engine runs at a time."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.vllm_engine import VLLMArguments, stop_engine
from ragdistill.reranker.scoring import read_pairs
from ragdistill.reranker.teachers import TeacherArguments, VLLMCrossEncoderTeacher, load_teacher

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[1]
# fp32 both sides. Measured on this machine: max |vLLM - transformers| = 2.6e-8 on logits of size ~0.03 (about
# 1e-6 relative; both run the same BERT math with different kernels). 1e-4 absolute leaves room for other CPUs.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def cross_encoder(tiny_models, tmp_path_factory) -> Path:
    """A real BertForSequenceClassification with one label (head_dim 64: vLLM's CPU attention needs >= 64)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    path = tmp_path_factory.mktemp("bert-reranker")
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["bert"])
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=256, max_position_embeddings=512, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def vllm_teacher(cross_encoder):
    options = TeacherArguments(teacher_model=str(cross_encoder), backend="vllm", teacher_dtype="float32")
    teacher = load_teacher(options, VLLMArguments(enforce_eager=True, kv_cache_gb=1.0))  # as score.py starts it
    yield teacher
    stop_engine(teacher.llm)
    del teacher
    gc.collect()


def test_vllm_score_equals_transformers(vllm_teacher, cross_encoder):
    assert isinstance(vllm_teacher, VLLMCrossEncoderTeacher) and vllm_teacher.max_length == 512
    plan = read_pairs(REPO / "data/wikiqa/dev.jsonl.gz", max_queries=4)
    pairs = plan.pairs(range(len(plan)))
    pairs.append((pairs[0][0], " ".join(p for _, p in pairs)))  # far over 512 tokens
    hf_teacher = load_teacher(TeacherArguments(teacher_model=str(cross_encoder), backend="torch",
                                               teacher_dtype="float32"))
    from_vllm, from_hf = vllm_teacher.score(pairs), hf_teacher.score(pairs)
    assert from_vllm.truncated == from_hf.truncated and from_vllm.truncated[-1] and sum(from_vllm.truncated) == 1
    diff = np.abs(np.array(from_vllm.scores) - np.array(from_hf.scores))
    print(f"max |vLLM - transformers| = {diff.max():.3g}")
    assert diff.max() < TOLERANCE
    # Raw logits, not the sigmoid vLLM applies by default (that would sit near 0.5).
    assert all(abs(s) < 0.4 for s in from_vllm.scores)
