#!/usr/bin/env bash
# Stage 2: training rows from the teacher's scores of the train file: per query, the top passages as positives,
# each with its hardest lower-scored passages as negatives, labelled with the teacher scores.
# Extra arguments go to rows.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

TRAIN_FILE="${TRAIN_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/train.jsonl}"  # as in score.sh
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"
TRAIN_SCORES="${TRAIN_SCORES:-$OUTPUT_DIR/teacher_scores/$(basename "${TRAIN_FILE%%.jsonl*}").scores.jsonl}"  # stage-1 output
LOSS="${LOSS:-listnet}"                     # the loss of train.sh decides the default format
case "$LOSS" in listnet|lambda) DEFAULT_FORMAT=listwise ;; *) DEFAULT_FORMAT=ntuple ;; esac
FORMAT="${FORMAT:-$DEFAULT_FORMAT}"         # ntuple | triplet | listwise
TOP_K="${TOP_K:-8}"                         # positives per query (by teacher score)
NUM_NEGATIVES="${NUM_NEGATIVES:-0}"         # negatives per positive (listwise: passages after the top TOP_K); 0 = 32 listwise (every candidate of most reranking sets), else 4
NEGATIVE_SAMPLING="${NEGATIVE_SAMPLING:-hard}"  # hard (next lower-scored) | random
SEED="${SEED:-42}"
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"  # what train.sh reads

"$PYTHON" "$RAGDISTILL_ROOT/Reranker-Distillation/rows.py" \
  --teacher_scores "$TRAIN_SCORES" \
  --output_file "$TRAINING_ROWS" \
  --format "$FORMAT" \
  --top_k "$TOP_K" \
  --num_negatives "$NUM_NEGATIVES" \
  --negative_sampling "$NEGATIVE_SAMPLING" \
  --seed "$SEED" \
  "$@"
