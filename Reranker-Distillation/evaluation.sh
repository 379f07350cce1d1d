#!/usr/bin/env bash
# Stage 4: MAP, MRR@10, NDCG@10 and pairs/s of the student before and after training, next to the teacher (from
# its stage-1 scores of the test file), on the first of TEST_FILES; without labels, agreement with the teacher.
# Prints the table; saves JSON, Markdown and a score scatter in EVAL_DIR. Extra arguments go to evaluation.py.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Reranker-Distillation"
source "$HERE/paths.sh"                     # STUDENT_MODEL (before), MODEL_DIR (after), FIRST_TEST_FILE, TEST_SCORES, EVAL_DIR

# Empty = evaluation.py's default (--help).
MAX_QUERIES="${MAX_QUERIES:-}"              # >0: only the first N test queries (as scored in stage 1)
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-}"        # as in train.sh
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-}"
STUDENT_DTYPE="${STUDENT_DTYPE:-}"          # float32: reference numbers; bfloat16 / float16 for deployment speed
SEED="${SEED:-}"                            # as in train.sh (a plain encoder's fresh head starts the same)

args=(--test_files "$FIRST_TEST_FILE" --student_model "$STUDENT_MODEL" --trained_model "$MODEL_DIR"
      --teacher_scores "$TEST_SCORES" --output_dir "$EVAL_DIR" ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"}
      ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} ${EVAL_BATCH_SIZE:+--student_batch_size "$EVAL_BATCH_SIZE"}
      ${STUDENT_DTYPE:+--student_dtype "$STUDENT_DTYPE"} ${SEED:+--seed "$SEED"})
"$PYTHON" "$HERE/evaluation.py" "${args[@]}" "$@"
