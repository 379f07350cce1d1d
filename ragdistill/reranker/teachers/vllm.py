"""Backend `vllm`: vLLM's pooling runner, for both kinds of reranker.

A yes/no LLM is loaded with vLLM's sequence-classification conversion (`classifier_from_token=["no", "yes"]`, i.e.
one linear row w_yes - w_no on the last hidden state), so the pooled output with the activation off is exactly
logit(yes) - logit(no). We build the prompt ids ourselves and pass them as `TokensPrompt`s to `llm.classify` with
`PoolingParams(use_activation=False)`: the same pooling path `llm.score` takes for cross-encoders, but the tokens
are guaranteed identical to the torch backend's (model-card prompt, document cut, suffix kept). Cross-encoder
teachers go through `llm.score(queries, passages)`, activation off. Prefix caching (on by default) reuses the
system prompt + instruction + query across a query's passages. Each call gets a whole chunk (thousands of prompts);
vLLM's continuous batching does the rest.
"""

from __future__ import annotations

from ragdistill.core.hardware import resolve_dtype
from ragdistill.core.vllm_engine import VLLMArguments, start_engine
from ragdistill.reranker.prompt import Qwen3RerankerPrompts, yes_no_token_ids
from ragdistill.reranker.teachers.base import (
    CROSS_ENCODER,
    YES_NO_LLM,
    ScoredPairs,
    Teacher,
    TeacherSettings,
    pair_token_counts,
)


def vllm_hf_overrides(config: dict) -> dict:
    """vLLM's conversion of a yes/no causal LM into a one-logit classifier: logit(yes) - logit(no)."""
    architecture = config["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")
    overrides = {"architectures": [architecture], "classifier_from_token": ["no", "yes"]}
    if architecture == "Qwen3ForSequenceClassification":
        overrides["is_original_qwen3_reranker"] = True
    else:
        overrides["method"] = "from_2_way_softmax"
    return overrides


def start_yes_no_engine(model: str, config: dict, engine: VLLMArguments, dtype: str, max_length: int):
    return start_engine(model, engine, dtype=dtype, max_model_len=max_length, hf_overrides=vllm_hf_overrides(config))


class VLLMYesNoTeacher(Teacher):
    """A yes/no LLM reranker on vLLM's pooling runner, fed the same prompt ids as the transformers backend."""

    def __init__(self, model: str, llm, dtype: str, max_length: int, instruction: str):
        self.llm = llm
        yes_no_token_ids(llm.get_tokenizer(), model)
        self.prompts = Qwen3RerankerPrompts(llm.get_tokenizer(), instruction, max_length)
        self.settings = TeacherSettings(model, "vllm", YES_NO_LLM, resolve_dtype(dtype), max_length,
                                        instruction=instruction)

    def score(self, pairs):
        from vllm import PoolingParams
        from vllm.inputs import TokensPrompt

        encoded = self.prompts.encode(pairs)
        outputs = self.llm.classify([TokensPrompt(prompt_token_ids=ids) for ids in encoded.input_ids],
                                    pooling_params=PoolingParams(use_activation=False), use_tqdm=False)
        scores = [float(out.outputs.probs[0]) for out in outputs]
        return ScoredPairs(scores, encoded.num_tokens, encoded.document_truncated, encoded.query_truncated)


class VLLMCrossEncoderTeacher(Teacher):
    """A cross-encoder on vLLM: llm.score with the activation off (raw logits), pairs cut to max_length."""

    def __init__(self, model: str, llm, dtype: str, max_length: int):
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.max_length = max_length
        self.settings = TeacherSettings(model, "vllm", CROSS_ENCODER, resolve_dtype(dtype), max_length)

    def score(self, pairs):
        from vllm import PoolingParams

        num_tokens, truncated = pair_token_counts(self.tokenizer, pairs, self.max_length)
        outputs = self.llm.score([q for q, _ in pairs], [p for _, p in pairs],
                                 pooling_params=PoolingParams(use_activation=False),
                                 tokenization_kwargs={"truncate_prompt_tokens": self.max_length}, use_tqdm=False)
        return ScoredPairs([float(out.outputs.score) for out in outputs], num_tokens, truncated)
