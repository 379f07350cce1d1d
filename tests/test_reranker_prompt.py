"""The Qwen3-Reranker prompt: exactly the model card's text, one <|im_end|> per turn, the document (not the
suffix) cut to fit max_length, cuts counted."""

from __future__ import annotations

import pytest

from ragdistill.core.errors import InputError
from ragdistill.reranker.prompt import (
    DEFAULT_INSTRUCTION,
    SUFFIX,
    Qwen3RerankerPrompts,
    format_prompt,
    yes_no_token_ids,
)

MODEL_CARD_PROMPT = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n"
    "<Query>: What is the capital of France?\n<Document>: Paris is the capital.<|im_end|>\n"
    "<|im_start|>assistant\n<think>\n\n</think>\n\n"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_models["qwen3_reranker"])


def test_prompt_text_is_the_model_card_one():
    text = format_prompt("What is the capital of France?", "Paris is the capital.")
    assert text == MODEL_CARD_PROMPT
    assert text.count("<|im_end|>") == 2  # system turn and user turn, no doubled end after the document


def test_ids_equal_tokenizing_the_whole_prompt(tokenizer):
    prompts = Qwen3RerankerPrompts(tokenizer, DEFAULT_INSTRUCTION, max_length=512)
    pairs = [("What is the capital of France?", "Paris is the capital."),
             ("Who wrote the novel?", "  It was written in 1851, by an American author.\n(Moby-Dick)")]
    encoded = prompts.encode(pairs)
    for (query, document), ids in zip(pairs, encoded.input_ids):
        assert ids == tokenizer.encode(format_prompt(query, document), add_special_tokens=False)
    assert encoded.document_truncated == [False, False] and encoded.query_truncated == [False, False]


def test_long_document_is_cut_suffix_kept(tokenizer):
    prompts = Qwen3RerankerPrompts(tokenizer, DEFAULT_INSTRUCTION, max_length=120)
    long_document = "The city has a population of about two million people. " * 40
    encoded = prompts.encode([("How many people live in the city?", long_document), ("Short?", "Short.")])
    ids = encoded.input_ids[0]
    assert len(ids) == 120  # exactly max_length, never more
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    assert ids[-len(suffix):] == suffix  # the model still reads its answer after the assistant turn
    text = tokenizer.decode(ids)
    assert "<Query>: How many people live in the city?\n<Document>: The city has" in text
    assert text.count("<|im_end|>") == 2
    assert encoded.document_truncated == [True, False]
    assert encoded.query_truncated == [False, False]
    assert len(encoded.input_ids[1]) < 120


def test_query_longer_than_the_budget_is_reported(tokenizer):
    prompts = Qwen3RerankerPrompts(tokenizer, DEFAULT_INSTRUCTION, max_length=80)
    encoded = prompts.encode([("What is the capital of France? " * 30, "Paris.")])
    assert len(encoded.input_ids[0]) == 80
    assert encoded.document_truncated == [True] and encoded.query_truncated == [True]


def test_max_length_too_small_for_the_template(tokenizer):
    with pytest.raises(ValueError, match="no room"):
        Qwen3RerankerPrompts(tokenizer, DEFAULT_INSTRUCTION, max_length=10)


def test_yes_and_no_must_be_single_tokens(tokenizer, tiny_models):
    yes, no = yes_no_token_ids(tokenizer)
    assert tokenizer.decode([yes]) == "yes" and tokenizer.decode([no]) == "no"

    # A real byte-level BPE that never saw "yes": the word splits into several tokens.
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(["the cat sat on the mat"] * 10, trainers.BpeTrainer(
        vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    with pytest.raises(InputError, match="not a yes/no reranker: 'yes' is 3 tokens"):
        yes_no_token_ids(PreTrainedTokenizerFast(tokenizer_object=raw), "some/model")
