"""Training memory of a Qwen3 student, computed from its shape (no GPU needed): weights, gradients and AdamW states,
whole or with LoRA adapters, and the activations kept for the backward pass, with and without gradient
checkpointing. The module READMEs' memory tables come from this script.

    python benchmarks/training_memory.py                      # Qwen3-Reranker-0.6B / Qwen3-Embedding-0.6B
    python benchmarks/training_memory.py --lora_r 32 --tokens 4096,65536

Assumes the Trainer's usual setup: fp32 weights with --bf16 autocast, AdamW, SDPA attention (no score matrix kept).
Activations per token and layer: the fp32 residual stream and RMSNorm internals (two norms, input and result; the
q/k norms likewise), the bf16 inputs of the projections, q/k/v after rotary embedding, the attention output, and the
MLP's gate, SiLU(gate), up and their product. With checkpointing a layer keeps only its fp32 input, and one layer
is recomputed at a time. An estimate (within tens of percent); CUDA context and allocator slack come on top.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.report import to_markdown

GIB = 2 ** 30


@dataclass
class ShapeArguments:
    hidden_size: int = field(default=1024, metadata={"help": "Qwen3-0.6B: 1024."})
    num_layers: int = field(default=28, metadata={"help": "Qwen3-0.6B: 28."})
    num_heads: int = field(default=16, metadata={"help": "Query heads."})
    num_kv_heads: int = field(default=8, metadata={"help": "Key/value heads."})
    head_dim: int = field(default=128, metadata={"help": "Per head."})
    intermediate_size: int = field(default=3072, metadata={"help": "MLP width."})
    vocab_size: int = field(default=151669, metadata={"help": "Embedding rows (tied with the output layer)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank, adapters on every linear layer of the blocks."})
    tokens: str = field(default="8192,32768,131072", metadata={"help": "Tokens per step (comma-separated)."})


def main(argv: list[str] | None = None) -> None:
    (a,) = parse_args(ShapeArguments, args=argv)
    h, q, k, f = a.hidden_size, a.num_heads * a.head_dim, a.num_kv_heads * a.head_dim, a.intermediate_size
    per_layer = h * q + 2 * h * k + q * h + 3 * h * f + 2 * h + 2 * a.head_dim
    params = a.vocab_size * h + a.num_layers * per_layer + h
    lora = a.num_layers * a.lora_r * ((h + q) + 2 * (h + k) + (q + h) + 2 * (h + f) + (f + h))
    activations = 4 * (2 * h) * 2 + 4 * (q + k) * 2 + 2 * (2 * h) + 2 * (q + 2 * k) + 2 * q + 2 * 4 * f
    checkpointed = a.num_layers * 4 * h + activations
    whole, adapters = 16 * params, 4 * params + 16 * lora
    notes = [f"{params / 1e6:.1f}M parameters; LoRA r={a.lora_r}: {lora / 1e6:.2f}M adapter parameters",
             f"whole model: weights + gradients + AdamW = {whole / GIB:.1f} GiB; LoRA: {adapters / GIB:.1f} GiB",
             f"activations: {activations / 1024:.0f} KiB per token and layer, "
             f"{a.num_layers * activations / 2**20:.1f} MiB per token; with gradient checkpointing "
             f"{checkpointed / 1024:.0f} KiB per token"]
    rows = []
    for tokens in (int(t) for t in a.tokens.split(",")):
        full, ckpt = a.num_layers * activations * tokens, checkpointed * tokens
        rows.append([f"{tokens:,}", *(f"{(base + act) / GIB:.1f} GiB" for base, act in
                                      ((whole, full), (whole, ckpt), (adapters, full), (adapters, ckpt)))])
    print(to_markdown(["tokens per step", "whole model", "whole + checkpointing", f"LoRA r={a.lora_r}",
                       "LoRA + checkpointing"], rows, title="Training memory (computed)", notes=notes))


if __name__ == "__main__":
    run_main(main)
