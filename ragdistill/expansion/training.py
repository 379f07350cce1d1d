"""Training a query rewriter on the environment's reward (ragdistill.expansion.environment):

- the term-selection policy (CPU path): GRPO-style policy gradient over subsets of each query's feedback terms
  (ragdistill.expansion.term_policy.train_policy);
- the LLM rewriter (GPU path): TRL's GRPOTrainer, generation through vLLM on a GPU (`use_vllm`) or plain
  `generate` elsewhere, optionally LoRA (merged into the saved model).

Both rewards are the first stage's NDCG@k with the rewrite, graded by labels or by the teacher against the original
query; a rewrite that is empty, too long, a copy of the query or (LLM) has no <answer> earns a counted zero, and the
LLM gets a small format reward for a well-formed answer.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ragdistill.core.arguments import check_choices
from ragdistill.core.errors import InputError
from ragdistill.expansion.environment import EnvironmentArguments, Grader, RetrievalEnvironment
from ragdistill.expansion.rewriters.llm import DEFAULT_MAX_NEW_TOKENS, completion_rewrite, parse_answer, prompt_messages
from ragdistill.expansion.rewriters.term import FEEDBACK_WEIGHTS, TermRewriter
from ragdistill.expansion.term_policy import BASE_FEATURES, TrainingLog, new_policy, train_policy

logger = logging.getLogger(__name__)

POLICIES = ("term", "llm")
# Learning rates by policy: the term policy is a 100-parameter MLP; GRPO on a whole LLM moves it little per step
# (DeepSeekMath and TRL's examples use ~1e-6), LoRA adapters take a larger rate.
LEARNING_RATES = {"term": 0.05, "llm": 1e-6, "llm_lora": 1e-5}
FORMAT_REWARD = 0.1  # a well-formed <answer>: small beside NDCG, so that form never pays more than finding


@dataclass
class PolicyArguments:
    """Which rewriter is trained, and how."""

    policy: str = field(default="term", metadata={
        "help": "term (the term-selection policy; CPU) or llm (an instruct LLM trained by TRL's GRPOTrainer; GPU).",
        "choices": list(POLICIES)})
    output_dir: str = field(default="output/query_expansion/rewriter", metadata={
        "help": "The trained rewriter's folder (rewriter.json, written last), with training.json / training.md."})
    steps: int = field(default=60, metadata={"help": "Policy-gradient steps."})
    queries_per_step: int = field(default=16, metadata={"help": "Queries per step."})
    group_size: int = field(default=8, metadata={
        "help": "Rewrites sampled per query per step (GRPO's group: each is rewarded against the group's mean)."})
    learning_rate: float = field(default=0.0, metadata={
        "help": f"0 = by policy: {LEARNING_RATES['term']} (term), {LEARNING_RATES['llm']} (llm), "
                f"{LEARNING_RATES['llm_lora']} (llm with --lora_r)."})
    seed: int = field(default=0, metadata={"help": "Seeds the policy's start and every sample."})
    # the term policy
    feedback_weights: str = field(default="auto", metadata={
        "help": "term: weight the feedback documents by the embedder's cosine with the query (dense) or by their "
                "BM25 scores (bm25, as RM3); auto = dense where --embedder is set.",
        "choices": ["auto", *FEEDBACK_WEIGHTS]})
    candidate_terms: int = field(default=20, metadata={"help": "term: candidate terms per query."})
    original_weight: float = field(default=0.5, metadata={
        "help": "term: the query's own share of the expanded query's weight (RM3's interpolation)."})
    hidden: int = field(default=16, metadata={"help": "term: hidden units of the policy network."})
    # the LLM policy
    policy_model: str = field(default="Qwen/Qwen3-0.6B", metadata={
        "help": "llm: the instruct causal LM to train (Hub id or local folder)."})
    max_completion_length: int = field(default=DEFAULT_MAX_NEW_TOKENS, metadata={
        "help": "llm: tokens per completion (reasoning and answer)."})
    temperature: float = field(default=1.0, metadata={"help": "llm: sampling temperature of the group."})
    lora_r: int = field(default=0, metadata={"help": "llm: >0 trains LoRA adapters of this rank (merged when saved)."})
    use_vllm: str = field(default="auto", metadata={
        "help": "llm: generate with vLLM (TRL's colocate mode); auto = where a GPU and vLLM are present.",
        "choices": ["auto", "true", "false"]})

    def __post_init__(self):
        check_choices(self)
        for name in ("steps", "queries_per_step", "candidate_terms", "hidden", "max_completion_length"):
            if getattr(self, name) < 1:
                raise InputError(None, f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise InputError(None, f"--group_size must be at least 2 (a group of one has no baseline), got "
                                   f"{self.group_size}")
        if not 0.0 <= self.original_weight <= 1.0:
            raise InputError(None, f"--original_weight must be in [0, 1], got {self.original_weight}")

    def resolved_learning_rate(self) -> float:
        if self.learning_rate > 0:
            return self.learning_rate
        return LEARNING_RATES["llm_lora" if self.policy == "llm" and self.lora_r else self.policy]


@dataclass
class TrainingResult(TrainingLog):
    """The per-step log, and the rewrites that earned a counted zero, by reason."""

    problems: Counter = field(default_factory=Counter)


def train_term_rewriter(environment: RetrievalEnvironment, grader: Grader, queries: dict[str, str],
                        env_args: EnvironmentArguments, args: PolicyArguments) -> tuple[TermRewriter, TrainingResult]:
    """Train the term policy on `queries` (qid -> text); returns the rewriter (not yet saved) and its log."""
    weights = args.feedback_weights
    if weights == "auto":
        weights = "dense" if environment.embedder is not None else "bm25"
    num_features = len(BASE_FEATURES) + (environment.embedder is not None)
    rewriter = TermRewriter(environment.idf, environment.embedder, env_args.embedder, weights, args.candidate_terms,
                            args.original_weight, new_policy(num_features, args.hidden, args.seed))
    qids, texts = list(queries), list(queries.values())
    logger.info("candidate terms of %d training queries (feedback: top %d BM25 documents, %s weights)", len(texts),
                env_args.feedback_documents, weights)
    candidates = rewriter.candidates(texts, environment.feedback(texts, env_args.feedback_documents))

    def rewards_of(qid, text, terms):
        def rewards(masks):
            rewrites = [rewriter.apply(text, terms, mask) for mask in masks]
            found = environment.search(rewrites, env_args.reward_k, env_args.first_stage)
            return grader.ndcg(qid, [[d for d, _ in hits] for hits in found], env_args.reward_k)
        return rewards

    episodes = [(features, rewards_of(qid, text, terms))
                for qid, text, (terms, features) in zip(qids, texts, candidates)]
    if not any(len(features) for features, _ in episodes):
        raise InputError(None, "no training query has a candidate expansion term (their top BM25 documents hold "
                               "no word the query lacks): nothing to choose from")
    log = train_policy(rewriter.policy, episodes, steps=args.steps, queries_per_step=args.queries_per_step,
                       group_size=args.group_size, learning_rate=args.resolved_learning_rate(), seed=args.seed)
    rewriter.policy.eval()
    return rewriter, TrainingResult(log.steps)


def llm_rewards(environment: RetrievalEnvironment, grader: Grader, env_args: EnvironmentArguments,
                problems: Counter):
    """TRL reward functions (retrieval, format): called with the completions and the dataset's columns."""

    def completion_text(completion) -> str:
        return completion[-1]["content"] if isinstance(completion, list) else completion

    def retrieval_reward(completions: Sequence, qid: Sequence[str], query: Sequence[str], **_) -> list[float]:
        rewrites = [completion_rewrite(q, completion_text(c), "rewrite", env_args.max_rewrite_words)
                    for q, c in zip(query, completions)]
        problems.update(r.problem for r in rewrites if r.problem)
        found = environment.search(rewrites, env_args.reward_k, env_args.first_stage)
        problems.update("no_results" for r, hits in zip(rewrites, found) if r.problem is None and not hits)
        rewards = [0.0] * len(rewrites)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, q in enumerate(qid):
            groups[q].append(i)
        for q, members in groups.items():  # one pool per query: the teacher grades a group together
            scores = grader.ndcg(q, [[d for d, _ in found[i]] for i in members], env_args.reward_k)
            for i, score in zip(members, scores):
                rewards[i] = score if rewrites[i].problem is None else 0.0
        return rewards

    def format_reward(completions: Sequence, **_) -> list[float]:
        return [FORMAT_REWARD if parse_answer(completion_text(c)) is not None else 0.0 for c in completions]

    return [retrieval_reward, format_reward]


def train_llm_rewriter(environment: RetrievalEnvironment, grader: Grader, queries: dict[str, str],
                       env_args: EnvironmentArguments, args: PolicyArguments) -> TrainingResult:
    """GRPO (TRL) on `queries`, rewarded by the environment; saves the trained model (LoRA merged) and its tokenizer
    into args.output_dir."""
    if len(queries) < args.queries_per_step:  # TRL's sampler drops an incomplete step: nothing would train
        raise InputError(None, f"{len(queries)} training queries, fewer than --queries_per_step "
                               f"{args.queries_per_step}: lower it or give more queries")
    problems: Counter = Counter()
    rows = [{"prompt": prompt_messages(text), "qid": qid, "query": text} for qid, text in queries.items()]
    steps = grpo_train(rows, llm_rewards(environment, grader, env_args, problems), args)
    return TrainingResult(steps, problems)


def grpo_train(rows: list[dict], reward_funcs: list, args: PolicyArguments) -> list[dict]:
    """TRL's GRPOTrainer over `rows` ({"prompt": chat messages, ...columns the rewards read}) with `args`' policy
    model, group, rate and steps; saves the model (LoRA merged) and tokenizer to args.output_dir; returns the
    per-step log: "reward" the first reward function's mean (the retrieval reward), the others' means by name,
    their weighted sum ("total_reward"), frac_reward_zero_std, completion length."""
    import importlib.util

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from ragdistill.core.hardware import has_cuda, resolve_dtype

    cuda = has_cuda()
    use_vllm = (args.use_vllm == "true" or
                (args.use_vllm == "auto" and cuda and importlib.util.find_spec("vllm") is not None))
    if use_vllm and not cuda:
        raise InputError(None, "--use_vllm true needs a GPU (TRL's vLLM generation); use false on CPU")
    if use_vllm and importlib.util.find_spec("vllm") is None:
        raise InputError(None, "--use_vllm true needs vLLM installed (pip install vllm), or use false")
    output = Path(args.output_dir)
    config = GRPOConfig(
        output_dir=str(output / "trainer"), use_cpu=not cuda, bf16=cuda and resolve_dtype("auto") == "bfloat16",
        max_steps=args.steps, learning_rate=args.resolved_learning_rate(), num_generations=args.group_size,
        # one query's group per forward/backward pass, the step's queries accumulated: TRL then generates the
        # whole step's completions at once (its generation batch) and trains on them group by group, so memory
        # holds one group's activations, not the step's
        per_device_train_batch_size=args.group_size, gradient_accumulation_steps=args.queries_per_step,
        max_completion_length=args.max_completion_length, temperature=args.temperature, top_k=0, beta=0.0,
        use_vllm=use_vllm, vllm_mode="colocate", logging_steps=1, save_strategy="no", report_to="none",
        seed=args.seed, disable_tqdm=False)
    peft_config = None
    if args.lora_r:
        from peft import LoraConfig

        peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    tokenizer = AutoTokenizer.from_pretrained(args.policy_model)
    trainer = GRPOTrainer(model=args.policy_model, reward_funcs=reward_funcs, args=config,
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer, peft_config=peft_config)
    trainer.train()
    model = trainer.model
    if peft_config is not None:
        model = model.merge_and_unload()
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    # TRL's "reward" is the weighted sum of every reward function; each one's mean is logged apart
    names = [getattr(f, "__name__", f"reward_{i}") for i, f in enumerate(reward_funcs)]
    return [{"step": entry["step"], "reward": entry.get(f"rewards/{names[0]}/mean", entry["reward"]),
             "total_reward": entry["reward"], **{name: entry.get(f"rewards/{name}/mean") for name in names[1:]},
             "frac_reward_zero_std": entry.get("frac_reward_zero_std", 0.0),
             "completion_length": entry.get("completions/mean_length")}
            for entry in trainer.state.log_history if "reward" in entry]
