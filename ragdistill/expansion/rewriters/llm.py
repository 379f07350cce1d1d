"""The LLM rewriter: an instruct causal LM (default Qwen/Qwen3-0.6B, trained by GRPO in
ragdistill.expansion.training) writes the rewrite, reasoning first, the query last:
"<think>...</think> <answer>expanded query</answer>", the format DeepRetrieval trained with.

Two prompts:
- 'rewrite': the answer is the new query (what GRPO trains);
- 'query2doc': no training: the model writes a short passage answering the query, and the query joins it, weighted
  as query2doc does for sparse retrieval (the query's terms half the weight, the passage's the other half; the dense
  first stage embeds "query passage").
Generation is greedy, batched, through transformers (any device).
"""

from __future__ import annotations

import copy
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ragdistill.data.bm25 import tokenize
from ragdistill.expansion.feedback import expanded_query
from ragdistill.expansion.reward import MAX_REWRITE_WORDS, rewrite_problem
from ragdistill.expansion.rewriters.base import Feedback, Rewrite, Rewriter, read_record, write_record

PROMPTS = {
    "rewrite": ("You rewrite search queries so that a search engine finds the passages that answer them. Think "
                "briefly inside <think> </think>, then give only the rewritten query inside <answer> </answer>: "
                "keep its meaning, add the words a good answer would contain."),
    "query2doc": ("Write a short passage that answers the question. Think briefly inside <think> </think>, then "
                  "give only the passage inside <answer> </answer>."),
}
DEFAULT_MAX_NEW_TOKENS = 256
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def prompt_messages(query: str, prompt: str = "rewrite") -> list[dict[str, str]]:
    """The chat messages a query becomes (system: the task; user: the query)."""
    return [{"role": "system", "content": PROMPTS[prompt]}, {"role": "user", "content": query}]


def parse_answer(completion: str) -> str | None:
    """The text of the last <answer>...</answer>, stripped; None when there is none."""
    found = _ANSWER.findall(completion)
    return found[-1].strip() if found else None


def completion_rewrite(query: str, completion: str, prompt: str = "rewrite",
                       max_words: int = MAX_REWRITE_WORDS) -> Rewrite:
    """The Rewrite a completion gives, with its problem where it earns nothing."""
    answer = parse_answer(completion)
    if answer is None:
        return Rewrite("", problem="no_answer")
    if prompt == "query2doc":
        if not answer.split():
            return Rewrite("", problem="empty")
        passage = Counter(tokenize(answer))
        return Rewrite(f"{query} {answer}", expanded_query(query, {t: float(c) for t, c in passage.items()}))
    return Rewrite(answer, problem=rewrite_problem(query, answer, max_words))


class LLMRewriter(Rewriter):
    kind = "llm"

    def __init__(self, model: str, prompt: str = "rewrite", max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 batch_size: int = 16, max_words: int = MAX_REWRITE_WORDS, name: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ragdistill.core.hardware import default_device, torch_dtype

        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {sorted(PROMPTS)}, got '{prompt}'")
        self.model_path, self.prompt, self.max_new_tokens = model, prompt, max_new_tokens
        self.batch_size, self.max_words, self.name = batch_size, max_words, name
        self.device = default_device()
        self.tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
        dtype = torch_dtype("auto") if self.device != "cpu" else torch.float32
        self.model = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(self.device).eval()

    def describe(self) -> str:
        return self.name or f"LLM {self.prompt} ({Path(self.model_path).name})"

    def with_prompt(self, prompt: str, name: str | None = None) -> LLMRewriter:
        """The same loaded model asked with another prompt (no second copy of the weights)."""
        if prompt not in PROMPTS:
            raise ValueError(f"prompt must be one of {sorted(PROMPTS)}, got '{prompt}'")
        other = copy.copy(self)
        other.prompt, other.name = prompt, name
        return other

    def complete(self, queries: Sequence[str]) -> list[str]:
        import torch

        completions = []
        for start in range(0, len(queries), self.batch_size):
            texts = [self.tokenizer.apply_chat_template(prompt_messages(q, self.prompt), tokenize=False,
                                                        add_generation_prompt=True)
                     for q in queries[start:start + self.batch_size]]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.no_grad():
                out = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id)
            completions += self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return completions

    def rewrite(self, queries: Sequence[str], feedback: Sequence[Feedback] | None = None) -> list[Rewrite]:
        return [completion_rewrite(q, c, self.prompt, self.max_words) for q, c in zip(queries, self.complete(queries))]

    @classmethod
    def save_record(cls, folder: str | os.PathLike, prompt: str, max_new_tokens: int, extra: dict) -> Path:
        """The record beside a model its trainer saved (extra: 'base_model', the untrained start, and settings)."""
        return write_record(folder, {"kind": cls.kind, "prompt": prompt, "max_new_tokens": max_new_tokens, **extra})


def load_llm_rewriter(folder: str | os.PathLike, untrained: bool = False) -> LLMRewriter:
    record = read_record(folder)
    model = record["base_model"] if untrained else str(folder)
    return LLMRewriter(model, record["prompt"], record["max_new_tokens"],
                       name="LLM rewriter, untrained" if untrained else "LLM rewriter, trained")
