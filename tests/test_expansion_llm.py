"""The LLM rewriter's path on CPU with a tiny random Qwen3 causal LM built in the test: GRPO (TRL's GRPOTrainer,
through ragdistill.expansion.training.grpo_train) learns a dense toy reward; the train and evaluation stages run
with it end to end, its gibberish earning counted zeros, never a crash."""

from __future__ import annotations

from collections import Counter

import pytest

from ragdistill.core.jsonl import read_json
from ragdistill.expansion.rewriters.llm import completion_rewrite, parse_answer, prompt_messages
from ragdistill.expansion.training import PolicyArguments, grpo_train
from tests.builders import build_qwen3, stage_main
from tests.test_expansion_stages import chain_runs, wikiqa_slices  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return build_qwen3(tmp_path_factory.mktemp("lm"), seed=3)


def test_grpo_learns_a_dense_toy_reward(tiny_lm, tmp_path):
    """Reward: the share of completion tokens in a target set that the untrained policy hits about a third of the
    time (its most frequent sampled tokens). With lr 0.01, groups of 8 and 8-token completions, the last three steps'
    reward must clearly exceed the first two steps'."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_lm)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32)
    prompts = [f"Query: question {i} about the city" for i in range(16)]
    torch.manual_seed(0)
    counts: Counter = Counter()
    for prompt in prompts[:8]:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)
        out = model.generate(**ids, do_sample=True, max_new_tokens=8, num_return_sequences=4, top_k=0)
        for row in out[:, ids["input_ids"].shape[1]:]:
            counts.update(row.tolist())
    total, target, covered = sum(counts.values()), set(), 0
    for token, count in counts.most_common():
        if covered / total >= 1 / 3:
            break
        target.add(token)
        covered += count

    def toy_reward(completion_ids, **_):
        return [sum(t in target for t in ids) / max(len(ids), 1) for ids in completion_ids]

    args = PolicyArguments(policy="llm", policy_model=str(tiny_lm), steps=12, queries_per_step=1, group_size=8,
                           learning_rate=0.01, max_completion_length=8, use_vllm="false",
                           output_dir=str(tmp_path / "out"))
    steps = grpo_train([{"prompt": [{"role": "user", "content": p}]} for p in prompts], [toy_reward], args)
    first = sum(s["reward"] for s in steps[:2]) / 2
    last = sum(s["reward"] for s in steps[-3:]) / 3
    assert first < 0.5 and last > first + 0.3, [round(s["reward"], 3) for s in steps]
    assert (tmp_path / "out/config.json").exists()  # the trained policy is saved


@pytest.mark.parametrize(("completion", "rewrite", "problem"), [
    ("<think>x</think><answer>capital city of france paris</answer>", "capital city of france paris", None),
    ("<think>no answer tag</think> paris", "", "no_answer"),
    ("<answer>  </answer>", "", "empty"),
    ("<answer>What is the capital of France</answer>", "What is the capital of France", "copies"),
    ("<answer>" + "word " * 70 + "</answer>", None, "too_long"),
])
def test_completions_become_rewrites_or_counted_zeros(completion, rewrite, problem):
    made = completion_rewrite("what is the capital of france", completion)
    assert made.problem == problem and (rewrite is None or made.text == rewrite)
    assert parse_answer("<answer>a</answer> then <answer>b</answer>") == "b"
    assert prompt_messages("q")[-1] == {"role": "user", "content": "q"}


def test_query2doc_weights_the_query_beside_the_passage():
    made = completion_rewrite("capital france", "<answer>Paris is the capital of France.</answer>", "query2doc")
    assert made.text == "capital france Paris is the capital of France." and made.problem is None
    assert made.weights["capital"] == pytest.approx(0.25 + 0.5 * 1 / 6)  # half the query's, half the passage's


def test_llm_stages_end_to_end(tiny_lm, wikiqa_slices, tiny_models, tmp_path, monkeypatch):  # noqa: F811
    d = wikiqa_slices
    corpus = ["--distractor_files", f"{d / 'dev.jsonl'}"]
    stage_main("Query-Expansion-RL", "train")([
        "--corpus", str(d / "train.jsonl"), *corpus, "--policy", "llm", "--policy_model", str(tiny_lm),
        "--steps", "2", "--queries_per_step", "2", "--group_size", "4", "--max_completion_length", "12",
        "--lora_r", "4", "--max_queries", "6", "--output_dir", str(tmp_path / "rewriter")])
    record = read_json(tmp_path / "rewriter/rewriter.json")
    assert record["kind"] == "llm" and record["base_model"] == str(tiny_lm) and record["max_new_tokens"] == 12
    training = read_json(tmp_path / "rewriter/training.json")
    assert len(training["steps"]) == 2 and sum(training["problems"].values()) > 0  # gibberish earns zeros, counted
    stage_main("Query-Expansion-RL", "evaluation")([
        "--corpus", str(d / "test.jsonl"), *corpus, "--rewriter", str(tmp_path / "rewriter"), "--max_queries", "5",
        "--output_dir", str(tmp_path / "eval")])
    results = read_json(tmp_path / "eval/query_expansion.json")["results"]
    assert [r["method"] for r in results] == ["original query", "RM3 (10 terms, 0.5)", "query2doc, untrained LLM",
                                              "LLM rewriter, untrained", "LLM rewriter, trained"]
    assert all(r["rewrite_ms"] > 0 for r in results[2:])
    assert results[3]["zero_reward_rewrites"] == 5  # a random model writes no <answer>: every rewrite counted
    # the LLM rewriter in front of the Milvus chain: its unusable rewrites fall back to the query as typed, so the
    # run equals the plain chain's, with the rewrite timed
    from ragdistill.retrieval.chain import latency_path, read_latencies, read_trec_run

    runs = chain_runs(str(d / "test.jsonl"), tmp_path / "rewriter", tiny_models["bert"], tmp_path, monkeypatch,
                      "--top_k", 5, "--max_queries", 4)
    assert read_trec_run(runs["rewritten"]) == read_trec_run(runs["plain"])
    assert all(row["rewrite_ms"] > 0 for row in read_latencies(latency_path(runs["rewritten"])))
