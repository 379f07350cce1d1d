"""The Qwen3-Reranker prompt, built as token ids, with the document (never the suffix) cut to fit the length.

Qwen3-Reranker is a causal LM asked a yes/no question; its relevance score is logit("yes") - logit("no") at the
last position. The prompt is the one on its model card:

    <|im_start|>system
    Judge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the
    answer can only be "yes" or "no".<|im_end|>
    <|im_start|>user
    <Instruct>: {instruction}
    <Query>: {query}
    <Document>: {document}<|im_end|>
    <|im_start|>assistant
    <think>

    </think>

(one <|im_end|> per turn: the template is written out, not produced by a chat template plus a suffix). As on the
model card, the prefix, the body and the suffix are tokenized separately and only the body is cut: the prompt is
`prefix + body[:budget] + suffix` with `budget = max_length - len(prefix) - len(suffix)`, so it never exceeds
`max_length` and always ends with the suffix the model reads its answer after. The document is at the end of the
body, so it is what gets cut; a query so long that even the document's first token does not fit is cut too. Both
cases are counted and reported, never silent.

Every backend (vLLM, transformers) is fed these same ids, so they score exactly the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SYSTEM_PROMPT = ('Judge whether the Document meets the requirements based on the Query and the Instruct provided. '
                 'Note that the answer can only be "yes" or "no".')
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
PREFIX = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n"
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
YES_TOKEN, NO_TOKEN = "yes", "no"


def format_body(query: str, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def format_prompt(query: str, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The full prompt as text (for reading and tests; the backends use `Qwen3RerankerPrompts.encode`)."""
    return PREFIX + format_body(query, document, instruction) + SUFFIX


@dataclass
class EncodedPrompts:
    """Token ids of a batch of prompts and what truncation did to them."""

    input_ids: list[list[int]]
    document_truncated: list[bool]  # the document lost tokens to fit max_length
    query_truncated: list[bool]  # even the query/instruction did not fit; the document was dropped entirely

    @property
    def num_tokens(self) -> list[int]:
        return [len(ids) for ids in self.input_ids]


class Qwen3RerankerPrompts:
    """Builds Qwen3-Reranker prompt token ids for (query, document) pairs."""

    def __init__(self, tokenizer, instruction: str = DEFAULT_INSTRUCTION, max_length: int = 8192):
        self.tokenizer = tokenizer
        self.instruction = instruction
        self.max_length = max_length
        self.prefix_ids = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_ids = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.body_budget = max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if self.body_budget < 1:
            raise ValueError(f"max_length {max_length} leaves no room for the query and document: the fixed prompt "
                             f"parts alone take {len(self.prefix_ids) + len(self.suffix_ids)} tokens")

    def encode(self, pairs: Sequence[tuple[str, str]]) -> EncodedPrompts:
        """Token ids for each (query, document) pair, body cut to the budget, suffix kept."""
        bodies = [format_body(query, document, self.instruction) for query, document in pairs]
        # The offsets tell where the document starts, to tell a cut document from a cut query.
        encoded = self.tokenizer(bodies, add_special_tokens=False, return_offsets_mapping=True,
                                 return_attention_mask=False, verbose=False)
        input_ids, document_cut, query_cut = [], [], []
        for body, ids, offsets, (_, document) in zip(bodies, encoded["input_ids"], encoded["offset_mapping"], pairs):
            cut = len(ids) > self.body_budget
            if cut:
                document_start = len(body) - len(document)
                # A token ending after the document starts holds document text; if the first kept-out token
                # already ended before the document start, the query itself was cut.
                query_cut.append(offsets[self.body_budget][1] <= document_start)
                ids = ids[: self.body_budget]
            else:
                query_cut.append(False)
            document_cut.append(cut)
            input_ids.append(self.prefix_ids + ids + self.suffix_ids)
        return EncodedPrompts(input_ids, document_cut, query_cut)


def yes_no_token_ids(tokenizer, path: str | None = None) -> tuple[int, int]:
    """The ids of "yes" and "no"; each must be a single token, or the logit difference means nothing."""
    from ragdistill.core.errors import InputError

    ids = []
    for word in (YES_TOKEN, NO_TOKEN):
        pieces = tokenizer.encode(word, add_special_tokens=False)
        if len(pieces) != 1:
            raise InputError(path, f"not a yes/no reranker: '{word}' is {len(pieces)} tokens in its tokenizer, "
                                   "expected exactly one")
        ids.append(pieces[0])
    return ids[0], ids[1]


# --- the same prompt for a sentence-transformers CrossEncoder (a yes/no LLM student) -----------------------------

_RAW, _END_RAW = "{% raw %}", "{% endraw %}"
_ROLE = '{{{{ messages | selectattr("role", "eq", "{}") | map(attribute="content") | first }}}}'
_INSTRUCT = "<Instruct>: "
_QUERY = "\n<Query>: "


def chat_template(instruction: str = DEFAULT_INSTRUCTION) -> str:
    """This prompt as a chat template for sentence-transformers' CrossEncoder, which maps a (query, document) pair
    to a "query" and a "document" message. The fixed text sits in raw blocks, so the ids are those of
    `Qwen3RerankerPrompts.encode` (the special tokens and newlines end every pre-token on both sides). A pair longer
    than max_length is cut at max_length by the tokenizer, then sentence-transformers writes the template's fixed
    tail (SUFFIX) back over the last tokens: prefix + body[:budget] + suffix, the teacher's truncation. Saved with
    the student (chat_template.jinja), so `CrossEncoder(path)` reads the teacher's prompt with no code of ours."""
    if "{%" in instruction or "%}" in instruction:
        raise ValueError(f"the instruction may not contain Jinja block delimiters: {instruction!r}")
    return (_RAW + PREFIX + _INSTRUCT + instruction + _QUERY + _END_RAW + _ROLE.format("query")
            + _RAW + "\n<Document>: " + _END_RAW + _ROLE.format("document") + _RAW + SUFFIX + _END_RAW)


def template_instruction(template: str | None) -> str | None:
    """The instruction of a template `chat_template` wrote (a saved student's), None for any other template."""
    start = _RAW + PREFIX + _INSTRUCT
    if not isinstance(template, str) or not template.startswith(start):
        return None
    instruction = template[len(start):].split(_QUERY + _END_RAW, 1)[0]
    return instruction if template == chat_template(instruction) else None
