"""Stage 1: train a query rewriter by reinforcement learning, rewarded by the first stage's retrieval with its rewrite.

The policy (--policy):
- term: the term-selection policy (CPU): which of the query's pseudo-relevance-feedback terms to add; GRPO-style
  policy gradient over sampled subsets (Nogueira & Cho, 2017, with a group baseline);
- llm: an instruct LLM (default Qwen/Qwen3-0.6B) writes "<think>...</think><answer>query</answer>"; TRL's
  GRPOTrainer, vLLM generation on a GPU, plain generate elsewhere, optional LoRA.
The reward: NDCG@10 of the first stage's list for the rewrite, graded by the labels, or label-free by the teacher's
scores against the original query (--grading); empty, too long or copied rewrites earn a counted zero.

    python train.py --corpus data/wikiqa/train.jsonl.gz --distractor_files data/wikiqa/dev.jsonl.gz,data/wikiqa/test.jsonl.gz \
        --embedder output/embedding/model --output_dir output/query_expansion/rewriter
    python train.py --corpus my_beir_folder --teacher_model BAAI/bge-reranker-v2-m3 ...     # no qrels: label-free
    python train.py --policy llm --policy_model Qwen/Qwen3-0.6B --lora_r 16 ...             # GPU

Writes the rewriter (rewriter.json last) with training.json / training.md (reward per step) into --output_dir.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ragdistill.core.cli import parse_args, run_main
from ragdistill.core.jsonl import atomic_open, write_json
from ragdistill.core.report import to_markdown, to_text
from ragdistill.expansion.environment import EnvironmentArguments, Grader, gradable, open_environment, resolve_grading
from ragdistill.expansion.rewriters.base import RECORD
from ragdistill.expansion.training import PolicyArguments, train_llm_rewriter, train_term_rewriter
from ragdistill.reranker.teachers import TeacherArguments, load_teacher
from ragdistill.retrieval.corpus import CorpusArguments

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    corpus_args, env_args, args, teacher_args = parse_args(
        CorpusArguments, EnvironmentArguments, PolicyArguments, TeacherArguments, args=argv,
        defaults={"corpus": "data/wikiqa/train.jsonl.gz", "split": "train", "teacher_model": None})

    # 1. the corpus and the training queries, the environment (BM25 over the corpus, the embedder's corpus vectors),
    #    the grading (labels where there are any, else the teacher)
    retrieval_set, environment = open_environment(
        corpus_args, env_args,
        check=lambda found: resolve_grading(env_args.grading, found, teacher_args.teacher_model))
    grading = resolve_grading(env_args.grading, retrieval_set, teacher_args.teacher_model)
    qids = gradable(retrieval_set, grading)
    qids = qids[:env_args.max_queries] if env_args.max_queries else qids
    queries = {qid: retrieval_set.queries[qid] for qid in qids}
    logger.info("%s; training on %d queries, graded by %s", retrieval_set.summary(), len(queries),
                {"labels": "their labels", "round_trip": "their source documents"}.get(
                    grading, f"the teacher {teacher_args.teacher_model}"))

    # 2. the grader: the labels, or the teacher against the original query; a rewriter this folder held before is
    #    unfinished from here on (its record goes; the new one is written last)
    (Path(args.output_dir) / RECORD).unlink(missing_ok=True)
    teacher = load_teacher(teacher_args) if grading == "teacher" else None
    grader = Grader(environment, retrieval_set, grading, teacher)

    # 3. the policy, trained (an LLM's weights are saved by its trainer)
    settings = {"seed": args.seed, "trained_on": retrieval_set.source, "grading": grading,
                "first_stage": env_args.first_stage, "steps": args.steps}
    if args.policy == "term":
        rewriter, result = train_term_rewriter(environment, grader, queries, env_args, args)
    else:
        result = train_llm_rewriter(environment, grader, queries, env_args, args)

    # 4. the reward per step, printed and saved; then the rewriter's record, last (a folder without it is unfinished)
    first, last = result.mean_reward(True), result.mean_reward(False)
    tied = sum(step["frac_reward_zero_std"] for step in result.steps) / max(len(result.steps), 1)
    notes = [f"{args.policy} policy, {args.steps} steps of {args.queries_per_step} queries x {args.group_size} "
             f"rewrites, first stage {env_args.first_stage}, reward NDCG@{env_args.reward_k} by {grading}",
             f"groups whose rewards all tied (they teach nothing): {tied:.0%}",
             f"rewrites that earned a counted zero: {dict(result.problems) or 'none'}"]
    headers = ["reward, first 5 steps", "reward, last 5 steps", "change"]
    rows = [[f"{first:.4f}", f"{last:.4f}", f"{last - first:+.4f}"]]
    title = "Query rewriter training"
    print(to_text(headers, rows, title=title, notes=notes))
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_json(output / "training.json", {"settings": {**settings, "policy": args.policy}, "notes": notes,
                                          "steps": result.steps, "problems": dict(result.problems)})
    with atomic_open(output / "training.md") as handle:
        handle.write(to_markdown(headers, rows, title=title, notes=notes) + "\n")
    if args.policy == "term":
        rewriter.save(output, settings)
    else:
        from ragdistill.expansion.rewriters.llm import LLMRewriter

        LLMRewriter.save_record(output, "rewrite", args.max_completion_length,
                                {**settings, "base_model": args.policy_model})
    logger.info("saved the rewriter in %s", args.output_dir)


if __name__ == "__main__":
    run_main(main)
