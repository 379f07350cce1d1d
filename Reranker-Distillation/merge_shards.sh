#!/usr/bin/env bash
# Stage 1, sharded runs: after `bash score.sh --num_shards N --shard_id I` ran for every I, check the
# shards (all present, finished, one run, disjoint) and join them into the files stage 2 reads.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

TRAIN_FILE="${TRAIN_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/train.jsonl}"  # as in score.sh
TEST_FILE="${TEST_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"

"$PYTHON" "$RAGDISTILL_ROOT/Reranker-Distillation/merge_shards.py" \
  --train_files "$TRAIN_FILE" --test_files "$TEST_FILE" \
  --output_dir "$OUTPUT_DIR/teacher_scores" \
  "$@"
