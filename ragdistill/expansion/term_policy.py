"""The term-selection policy (Nogueira & Cho, 2017, trained GRPO-style): which feedback terms to add to a query.

For each candidate term of a query's pseudo-relevance feedback (ragdistill.expansion.feedback), a small network
reads the term's features (idf, frequency and coverage in the feedback documents, rank of the first document holding
it, its relevance-model weight, and, when an embedder is given, its cosine similarity to the query) and gives the
probability of adding it; the chosen terms join the query with their relevance-model weights, as RM3 adds its terms
(`selected_query`). A group of `group_size` subsets is sampled per query; each subset's reward is the first stage's
NDCG@10 with the expanded query (ragdistill.expansion.reward); the advantage of a subset is its reward against its group's mean,
divided by the group's standard deviation (GRPO's group baseline), and the policy gradient raises the log-probability
of subsets that did better than their group. Groups whose rewards all tie teach nothing and are counted
(`zero_std_groups`, as TRL's `frac_reward_zero_std`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ragdistill.expansion.feedback import FeedbackTerms, expanded_query

logger = logging.getLogger(__name__)

BASE_FEATURES = ("idf", "frequency", "coverage", "first_rank", "weight")


def term_features(terms: FeedbackTerms, similarity: np.ndarray | None = None) -> torch.Tensor:
    """(terms x features) float32: the feedback statistics (the weight relative to the heaviest candidate term), and
    the term-query cosine when given."""
    heaviest = float(terms.weight.max()) if len(terms.weight) else 1.0
    columns = [terms.idf / 10.0, terms.frequency, terms.coverage, terms.first_rank, terms.weight / (heaviest or 1.0)]
    if similarity is not None:
        columns.append(np.asarray(similarity, dtype=np.float32))
    return torch.tensor(np.stack(columns, axis=1), dtype=torch.float32)


def selected_query(query: str, terms: FeedbackTerms, mask, original_weight: float = 0.5) -> dict[str, float]:
    """The query with the terms `mask` selects, each at its relevance-model weight (RM3's interpolation); none
    selected: the query as it is."""
    chosen = np.asarray(mask, dtype=bool)
    return expanded_query(query, {t: float(w) for t, w, keep in zip(terms.terms, terms.weight, chosen) if keep},
                          original_weight)


class TermPolicy(nn.Module):
    """Features -> the probability of adding each term (a small MLP, one logit per term)."""

    def __init__(self, num_features: int, hidden: int = 16):
        super().__init__()
        self.hidden = hidden
        self.net = nn.Sequential(nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)

    def choose(self, features: torch.Tensor) -> torch.Tensor:
        """The greedy selection (probability above one half): what the trained policy adds at test time."""
        with torch.no_grad():
            return self(features) > 0


def new_policy(num_features: int, hidden: int = 16, seed: int = 0) -> TermPolicy:
    """A policy at its seeded random start (the 'untrained policy' of the tables is rebuilt this way)."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return TermPolicy(num_features, hidden)
    finally:
        torch.random.set_rng_state(generator_state)


@dataclass
class TrainingLog:
    steps: list[dict] = field(default_factory=list)

    def mean_reward(self, first: bool, count: int = 5) -> float:
        """The mean reward of the first (or last) `count` steps."""
        chosen = self.steps[:count] if first else self.steps[-count:]
        return float(np.mean([step["reward"] for step in chosen]))


def train_policy(policy: TermPolicy,
                 queries: Sequence[tuple[torch.Tensor, Callable[[list[torch.Tensor]], Sequence[float]]]],
                 steps: int = 50, queries_per_step: int = 16, group_size: int = 8, learning_rate: float = 0.05,
                 seed: int = 0, progress: bool = True) -> TrainingLog:
    """GRPO-style policy gradient over `queries`: (features, the rewards of a group of selection masks) pairs (a
    group at once: a label-free judge grades the group's results on one pool). Each step samples `queries_per_step`
    queries and `group_size` selections each; returns the per-step mean reward and the share of groups whose rewards
    all tied."""
    from tqdm.auto import tqdm

    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    log = TrainingLog()
    usable = [index for index, (features, _) in enumerate(queries) if len(features)]
    if not usable:
        raise ValueError("no query has a candidate expansion term")
    for step in tqdm(range(steps), desc="policy steps", disable=not progress):
        batch = rng.choice(usable, size=min(queries_per_step, len(usable)), replace=False)
        losses, rewards, zero_std = [], [], 0
        for index in batch:
            features, rewards_of = queries[index]
            logits = policy(features)
            probabilities = torch.sigmoid(logits).detach().expand(group_size, -1)
            masks = torch.bernoulli(probabilities, generator=generator)
            group = torch.tensor(list(rewards_of([mask.bool() for mask in masks])), dtype=torch.float32)
            rewards.append(float(group.mean()))
            spread = group.std()
            if spread < 1e-8:
                zero_std += 1
                continue
            advantages = (group - group.mean()) / spread
            log_probs = -nn.functional.binary_cross_entropy_with_logits(
                logits.expand(group_size, -1), masks, reduction="none").sum(dim=1)
            losses.append(-(advantages * log_probs).mean())
        if losses:
            optimizer.zero_grad()
            torch.stack(losses).mean().backward()
            optimizer.step()
        log.steps.append({"step": step + 1, "reward": float(np.mean(rewards)),
                          "frac_reward_zero_std": zero_std / len(batch)})
    return log
