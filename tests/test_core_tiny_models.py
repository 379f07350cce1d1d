"""The tiny models are real: the tokenizer has Qwen's special tokens and single-token yes/no, and the models load
through the same classes the pipelines use."""

from __future__ import annotations


def test_tiny_qwen3_tokenizer_and_template(tiny_models):
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_models["qwen3_reranker"])
    for token in ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"]:
        assert len(tokenizer.encode(token, add_special_tokens=False)) == 1, token
    assert len(tokenizer.encode("yes", add_special_tokens=False)) == 1
    assert len(tokenizer.encode("no", add_special_tokens=False)) == 1
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    config = AutoConfig.from_pretrained(tiny_models["qwen3_reranker"])
    assert config.architectures == ["Qwen3ForCausalLM"] and config.head_dim == 64


def test_tiny_models_load_as_students_and_teachers(tiny_models):
    from sentence_transformers import CrossEncoder, SentenceTransformer

    reranker = CrossEncoder(str(tiny_models["qwen3_reranker"]))
    assert type(reranker[-1]).__name__ == "LogitScore"
    embedder = SentenceTransformer(str(tiny_models["qwen3_embedder"]))
    vectors = embedder.encode(["a short text", "another one"], normalize_embeddings=False)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-4  # the model's own Normalize module
    student = CrossEncoder(str(tiny_models["bert"]), num_labels=1)
    assert student.predict([("q", "p")]).shape == (1,)
    assert SentenceTransformer(str(tiny_models["bert"])).encode(["x"]).shape == (1, 64)
