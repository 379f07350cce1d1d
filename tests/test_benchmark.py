"""The benchmark's measuring tools (FLOP counts, peak memory, the original approaches re-implemented) and a smoke
run of benchmarks/benchmark.py on tiny sizes (vLLM left out: its paths need an engine start per path)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))  # the benchmark's tools live beside it, outside the package
import benchmarking as bench  # noqa: E402

PAIRS = [("what is the capital of france", "Paris is the capital and most populous city of France."),
         ("what is the capital of france", "The war ended in 1945 after six years of fighting."),
         ("why is the sky blue", "Sunlight is scattered by the molecules of the atmosphere, blue light the most.")]


def test_non_embedding_parameters_count_the_real_model(tiny_models):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_models["qwen3_reranker"])
    shape = bench.TransformerShape.from_config(model.config.to_dict())
    embeddings = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    assert shape.non_embedding_parameters() == sum(p.numel() for p in model.parameters()) - embeddings


def test_forward_flops_formula():
    shape = bench.TransformerShape(hidden_size=4, num_layers=2, num_heads=2, num_kv_heads=1, head_dim=2,
                                   intermediate_size=8, vocab_size=100)
    # per layer: q 4x4 + k, v 2 x 4x2 + o 4x4 = 48; MLP 3 x 4x8 = 96; norms 2x4 + 2x2 = 12 -> 156; x2 + final 4
    assert shape.non_embedding_parameters() == 316
    assert shape.forward_flops([3, 5]) == 2 * 316 * 8 + 4 * 2 * 4 * (9 + 25)
    # Tokens served from a prefix cache are not computed; the computed ones attend to every position.
    assert shape.forward_flops([5], cached=[4]) == 2 * 316 * 1 + 4 * 2 * 4 * (1 * 5)
    assert bench.padded_tokens([3, 5, 2, 2], [[0, 1], [2, 3]]) == 2 * 5 + 2 * 2


def test_paper_ceiling_numbers():
    assert bench.QWEN3_8B.non_embedding_parameters() == pytest.approx(6.95e9, rel=0.01)
    paper = bench.paper_ceiling([100, 120])
    assert paper["flops_per_pair"] == pytest.approx(bench.QWEN3_8B.forward_flops([100, 120]) / 2)
    assert paper["ceiling_pairs_per_second"] == pytest.approx(800e12 / paper["flops_per_pair"])
    assert paper["original_pairs_per_second"] == pytest.approx(593_522 / 5940)
    assert paper["original_mfu"] == pytest.approx(paper["original_pairs_per_second"] / paper["ceiling_pairs_per_second"])


def test_8b_shape_builds_where_it_runs_in_bf16():
    """--teacher_shape qwen3-8b (and --embedding_teacher qwen3-8b) is Qwen3-Reranker-8B's shape, built on the device
    in bf16; checked on the meta device (no weights), and refused without a GPU."""
    import runpy

    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from ragdistill.core.errors import InputError
    from ragdistill.core.hardware import has_cuda

    script = runpy.run_path(str(REPO / "benchmarks/benchmark.py"), run_name="benchmark_script")
    shape = script["TEACHER_SHAPES"]["qwen3-8b"]
    config = Qwen3Config(vocab_size=16000, hidden_size=shape["hidden_size"], num_hidden_layers=shape["num_layers"],
                         num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
                         head_dim=shape["head_dim"], intermediate_size=shape["intermediate_size"],
                         tie_word_embeddings=False)
    with bench.built_on("meta", "bfloat16"):
        model = Qwen3ForCausalLM(config)
    assert torch.get_default_dtype() == torch.float32  # restored
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.bfloat16)}
    embeddings = model.model.embed_tokens.weight.numel() + model.lm_head.weight.numel()
    assert sum(p.numel() for p in model.parameters()) - embeddings == bench.QWEN3_8B.non_embedding_parameters()
    if not has_cuda():
        for flag in ("teacher_shape", "embedding_teacher"):
            with pytest.raises(InputError, match="qwen3-8b needs a GPU"):
                script["BenchmarkArguments"](**{flag: "qwen3-8b"})


def test_run_measured_reports_the_commands_own_peak_memory():
    held = b"x" * (300 << 20)  # a large parent must not inflate the child's figure (RSS survives fork + exec)
    allocate = [sys.executable, "-c", "import time; data = b'y' * (150 << 20); time.sleep(0.2)"]
    big = bench.run_measured(allocate)
    small = bench.run_measured([sys.executable, "-c", "pass"])
    failed = bench.run_measured([sys.executable, "-c", "import sys; print('bad'); sys.exit(3)"])
    assert len(held) == 300 << 20
    assert big.returncode == 0 and 150 << 20 <= big.peak_rss_bytes < 280 << 20
    assert small.peak_rss_bytes < 100 << 20
    assert failed.returncode == 3 and "bad" in failed.output


def test_matmul_ceiling_is_the_fastest_kernels_rate():
    import torch

    rates = bench.matmul_rates("float32", size=256, repeats=2, seconds=0.05)
    assert "torch.matmul" in rates and all(math.isfinite(r) and r > 1e8 for r in rates.values())
    # On CPUs oneDNN is timed too: on AMD, PyTorch's float32 matmul (MKL) runs at half of what oneDNN reaches.
    assert ("oneDNN linear" in rates) == torch.backends.mkldnn.is_available()
    assert bench.matmul_ceiling("float32", size=256, repeats=1, seconds=0.05) > 1e8


def test_original_vllm_prompt_closes_the_user_turn_twice_and_cuts_before_the_suffix(tiny_models):
    from transformers import AutoTokenizer

    from ragdistill.reranker.prompt import SUFFIX

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3_reranker"])
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    full, cut = (bench.original_vllm_prompts(tokenizer, PAIRS, "Find answers", n) for n in (8192, 30))
    text = tokenizer.decode(full[0])
    assert text.startswith("<|im_start|>system\n") and "<|im_end|>\n<|im_end|>\n<|im_start|>assistant" in text
    assert "<Instruct>: Find answers\n\n<Query>: what is the capital of france\n\n<Document>: Paris" in text
    assert all(ids[-len(suffix):] == suffix for ids in full + cut)
    assert all(len(ids) == 30 + len(suffix) for ids in cut) and full[0][:30] == cut[0][:30]


def test_original_transformers_scores_are_the_sigmoid_of_stage1_logits(tiny_models):
    model = str(tiny_models["qwen3_reranker"])
    original = bench.time_original_transformers(model, PAIRS, "float32", 512, "Find answers", warmup=1)
    stage1 = bench.time_stage1_transformers(model, PAIRS, "float32", 512, "Find answers", batch_size=2, warmup=1)
    # Same prompt ids (the model card's transformers prompt is stage 1's), so P(yes) = sigmoid(logit difference).
    assert original.lengths == stage1.lengths
    for probability, logit in zip(original.scores, stage1.scores):
        assert probability == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-5)
    assert len(set(stage1.scores)) == len(PAIRS)  # distinct inputs give distinct scores: nothing is stubbed
    assert original.batches == [[0, 1, 2]]  # unsorted, as given
    if stage1.batches:  # padded length-sorted batches (GPUs)
        assert sorted(i for batch in stage1.batches for i in batch) == [0, 1, 2] and len(stage1.batches) == 2
        assert min(stage1.lengths[i] for i in stage1.batches[0]) >= max(stage1.lengths[i] for i in stage1.batches[1])
    else:  # CPUs: shared prompt prefixes computed once, their tokens counted as cached
        assert "shared prefixes" in stage1.label and len(stage1.cached) == len(PAIRS)
    assert original.seconds > 0 and stage1.seconds > 0


def test_embedding_loop_and_stage1_give_the_same_labels(tiny_models, tmp_path):
    result = bench.time_embedding_labels(str(tiny_models["qwen3_embedder"]), str(REPO / "data/wikiqa/dev.jsonl.gz"),
                                         max_queries=2, dtypes=["float32"], workdir=str(tmp_path))
    assert result["loop_encodes"] == 3 * result["triplets"] > 0
    stage1 = result["stage1"]["float32"]
    assert stage1["texts_embedded"] == result["unique_texts"] < result["loop_encodes"]
    assert stage1["max_abs_label_difference_vs_loop"] < 1e-5  # labels are rounded to 6 decimals
    assert stage1["texts_per_second"] == pytest.approx(stage1["texts_embedded"] / stage1["seconds"])
    config = json.loads((tiny_models["qwen3_embedder"] / "config.json").read_text())
    parameters = bench.TransformerShape.from_config(config).non_embedding_parameters()
    assert stage1["model_flops"] > 2 * parameters * 8 * stage1["texts_embedded"]  # 2 x parameters a token, >8 a text


def test_synthetic_scores_are_a_finished_stage1_output(tmp_path):
    from ragdistill.core.jsonl import read_jsonl
    from ragdistill.core.resumable import require_complete

    path = tmp_path / "scores.jsonl"
    assert bench.write_synthetic_scores(path, num_queries=4, passages_per_query=3, texts=[f"t{i}" for i in range(9)]) == 12
    rows = read_jsonl(path)
    assert require_complete(path)["num_pairs"] == 12
    assert [row["query"] for row in rows] == sorted((row["query"] for row in rows), key=lambda q: int(q.split("#")[1]))
    assert all(len({r["passage"] for r in rows if r["query"] == q}) == 3 for q in {r["query"] for r in rows})


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path, capsys):
    import runpy

    output = tmp_path / "bench"
    main = runpy.run_path(str(REPO / "benchmarks/benchmark.py"), run_name="benchmark_script")["main"]
    # in this process (--no_isolate: every section here too), as `python benchmarks/benchmark.py ARGS` runs it
    main(["--quick", "--no_isolate", "--skip", "reranker-vllm", "--pairs", "6", "--transformers_pairs", "6",
          "--embedding_teacher", "tiny", "--embedding_queries", "1", "--training_queries", "100",
          "--evaluation_queries", "2", "--student", "tiny", "--dtypes", "float32", "--output_dir", str(output)])
    printed = capsys.readouterr().out
    result = json.loads((output / "benchmark.json").read_text())
    assert result["complete"] and not result["errors"] and "reranker-vllm" in result["skipped"]
    hf = result["sections"]["reranker-transformers"]["float32"]
    assert hf["original"]["pairs"] == hf["stage1"]["pairs"] == 6 and 0 < hf["stage1"]["mfu"] < 1
    assert hf["max_abs_difference_original_vs_sigmoid_stage1"] < 1e-4
    assert result["sections"]["training-rows"]["scored_pairs"] == 3000
    met = {t["target"]: t["met"] for t in result["targets"]}
    assert any("transformers stage 1 >= 2.5x" in name for name in met) and all(v in (True, False) for v in met.values())
    markdown = (output / "benchmark.md").read_text()
    assert "| stage | baseline | this project | ratio | utilisation |" in markdown and "## Targets" in markdown
    assert "Targets" in printed and "saved" in printed


def test_quality_table_adds_the_mean_and_range_of_seeded_runs():
    import quality

    def run(experiment: str, after: float, **seed: int) -> dict:
        entry = {"before": 0.70, "after": after, "teacher": 0.80, "relative_change": (after - 0.70) / 0.70,
                 "share_of_teacher": after / 0.80, "gap_closed": (after - 0.70) / 0.10}
        return {"pipeline": "embedding", "experiment": experiment, "what": "w", "train": "t.jsonl", "train_minutes": 2.0,
                "wikiqa/test (in-domain)": entry, **seed}

    rows = [run("label_free", 0.74), run("label_free", 0.76, seed=1), run("label_free", 0.78, seed=2),
            run("default", 0.75)]  # a single run: no mean row
    [mean] = quality.seed_means(rows)
    entry = mean["wikiqa/test (in-domain)"]
    assert mean["experiment"] == "label_free (mean of seeds default, 1, 2)"
    assert entry["after"] == pytest.approx(0.76) and entry["gap_closed"] == pytest.approx(0.6)
    assert entry["range"] == (0.74, 0.78)
    table = quality.markdown(rows)
    assert "| label_free (seed 2) |" in table and "0.7600 (0.7000 -> 0.8000; gap 60%, range 0.7400-0.7800)" in table
    with pytest.raises(SystemExit, match="--seeds takes comma-separated integers"):
        quality.main(["--seeds", "1,x"])
