"""Backend `torch` for a yes/no LLM reranker: a sentence-transformers CrossEncoder [Transformer(text-generation),
LogitScore(yes, no)] whose decoder runs our own prompt ids.

The score is (w_yes - w_no) . h in fp32 on the last hidden state h, as vLLM's converted classifier computes it (a
bf16 logit difference falls on bf16's coarse grid, and distinct pairs tie). With `share_prefixes` (on by default on
CPUs) each query's prompt prefix is computed once as a KV cache and only the passages' own tokens run, many queries
a forward pass; otherwise left-padded batches of whole prompts. Batches are length-sorted (padding waste is what
slows unsorted batches), then put back in input order; on GPUs a batch is filled up to a token budget
(`max_batch_tokens`) rather than a fixed row count, since small fixed batches leave a GPU idle.
"""

from __future__ import annotations

from collections.abc import Sequence

from ragdistill.core.errors import InputError
from ragdistill.core.hardware import default_device, resolve_dtype, torch_dtype
from ragdistill.reranker.prompt import Qwen3RerankerPrompts, yes_no_token_ids
from ragdistill.reranker.teachers.base import YES_NO_LLM, ScoredPairs, Teacher, TeacherSettings
from ragdistill.reranker.teachers.batching import (
    MIN_SHARED_PREFIX,
    PAD_TO_MULTIPLE_OF,
    common_prefix_length,
    length_sorted_batches,
    padded_width,
    resolve_max_batch_tokens,
    resolve_share_prefixes,
)


class TransformersYesNoTeacher(Teacher):
    """A yes/no LLM reranker loaded as a sentence-transformers CrossEncoder [Transformer(text-generation),
    LogitScore]; its decoder runs our own prompt ids, and the score head is vLLM's: one fp32 row w_yes - w_no on the
    last hidden state (a bf16 logit difference falls on a coarse grid, and ties)."""

    def __init__(self, model: str, dtype: str, max_length: int, instruction: str, batch_size: int,
                 device: str | None = None, max_batch_tokens: int = 0, share_prefixes: str = "auto"):
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.modules import LogitScore

        self.model = CrossEncoder(model, device=device or default_device(), model_kwargs={"dtype": torch_dtype(dtype)})
        tokenizer = self.model.tokenizer
        yes_id, no_id = yes_no_token_ids(tokenizer, model)
        head = self.model[-1]
        if not isinstance(head, LogitScore) or (head.true_token_id, head.false_token_id) != (yes_id, no_id):
            raise InputError(model, "not a yes/no reranker: sentence-transformers did not load it as "
                                    "[Transformer, LogitScore(yes, no)]")
        network = self.model.transformers_model
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
