#!/usr/bin/env bash
# Stage 4: MAP, MRR@10, NDCG@10 and pairs/s of the student before and after training, next to the teacher (from
# its stage-1 scores of the test file). Prints the table; saves JSON, Markdown and a score scatter in
# $OUTPUT_DIR/results. Extra arguments go to evaluation.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-reranker-v2-m3}"   # the student before training
TEST_FILE="${TEST_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"  # as in score.sh
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"
TRAINED_MODEL="${TRAINED_MODEL:-$OUTPUT_DIR/model}"          # train.sh output
TEST_SCORES="${TEST_SCORES:-$OUTPUT_DIR/teacher_scores/$(basename "${TEST_FILE%%.jsonl*}").scores.jsonl}"  # stage-1 output
MAX_QUERIES="${MAX_QUERIES:-0}"             # >0: only the first N test queries (as scored in stage 1)
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"             # as in train.sh
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-64}"
STUDENT_DTYPE="${STUDENT_DTYPE:-float32}"   # float32: reference numbers; bfloat16 / float16 for deployment speed
SEED="${SEED:-42}"                          # as in train.sh (a plain encoder's fresh head starts the same)

"$PYTHON" "$RAGDISTILL_ROOT/Reranker-Distillation/evaluation.py" \
  --test_file "$TEST_FILE" \
  --student_model "$STUDENT_MODEL" \
  --trained_model "$TRAINED_MODEL" \
  --teacher_scores "$TEST_SCORES" \
  --output_dir "$OUTPUT_DIR/results" \
  --max_queries "$MAX_QUERIES" \
  --max_seq_length "$MAX_SEQ_LENGTH" \
  --student_batch_size "$EVAL_BATCH_SIZE" \
  --student_dtype "$STUDENT_DTYPE" \
  --seed "$SEED" \
  "$@"
