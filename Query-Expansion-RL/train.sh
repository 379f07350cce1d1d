#!/usr/bin/env bash
# Stage 1: train a query rewriter by reinforcement learning on TRAIN_CORPUS's queries, rewarded by the first stage's
# NDCG@10 with the rewrite (graded by the labels, or label-free by TEACHER_MODEL against the original query). Saves
# it to REWRITER_DIR. Extra arguments go to train.py (see --help).
#   POLICY=term   the term-selection policy (CPU, seconds): which pseudo-relevance-feedback terms to add
#   POLICY=llm    an instruct LLM (POLICY_MODEL, default Qwen/Qwen3-0.6B) trained with TRL's GRPOTrainer (GPU)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Query-Expansion-RL"
source "$HERE/paths.sh"

# Empty = train.py's default (--help).
POLICY="${POLICY:-}"                        # term | llm
FIRST_STAGE="${FIRST_STAGE:-}"              # bm25 | dense (the EMBEDDER, exact search): the stage that rewards
STEPS="${STEPS:-}"
GROUP_SIZE="${GROUP_SIZE:-}"                # rewrites per query per step (GRPO's group)
QUERIES_PER_STEP="${QUERIES_PER_STEP:-}"
LEARNING_RATE="${LEARNING_RATE:-}"          # empty: by policy (train.py --help)
POLICY_MODEL="${POLICY_MODEL:-}"            # llm: any causal LM folder or Hub id
LORA_R="${LORA_R:-}"                        # llm: >0 trains LoRA adapters (merged when saved)
MAX_COMPLETION_LENGTH="${MAX_COMPLETION_LENGTH:-}"  # llm: tokens per completion
SEED="${SEED:-}"

mapfile -t common < <(common_args)
args=(--corpus "$TRAIN_CORPUS" --output_dir "$REWRITER_DIR" "${common[@]}"
      ${TRAIN_DISTRACTORS:+--distractor_files "$TRAIN_DISTRACTORS"} ${POLICY:+--policy "$POLICY"}
      ${FIRST_STAGE:+--first_stage "$FIRST_STAGE"} ${STEPS:+--steps "$STEPS"} ${GROUP_SIZE:+--group_size "$GROUP_SIZE"}
      ${QUERIES_PER_STEP:+--queries_per_step "$QUERIES_PER_STEP"} ${LEARNING_RATE:+--learning_rate "$LEARNING_RATE"}
      ${POLICY_MODEL:+--policy_model "$POLICY_MODEL"} ${LORA_R:+--lora_r "$LORA_R"}
      ${MAX_COMPLETION_LENGTH:+--max_completion_length "$MAX_COMPLETION_LENGTH"} ${SEED:+--seed "$SEED"})
"$PYTHON" "$HERE/train.py" "${args[@]}" "$@"
