#!/usr/bin/env bash
# Stage 2: training rows from the teacher's scores of the train files: per query, the top passages as positives,
# each with its hardest lower-scored passages as negatives (listwise: every candidate with its score), labelled with
# the teacher's scores. Extra arguments go to rows.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Reranker-Distillation"
source "$HERE/paths.sh"                     # TRAIN_SCORES (stage 1's output), TRAINING_ROWS, ...

# Empty = rows.py's default (--help).
LOSS="${LOSS:-}"                            # train.sh's loss picks the format: ntuple for margin_mse / mse, else listwise
FORMAT="${FORMAT:-}"                        # ntuple | triplet | listwise
if [ -z "$FORMAT" ]; then case "$LOSS" in margin_mse|mse) FORMAT=ntuple ;; esac; fi
TOP_K="${TOP_K:-}"                          # positives per query (by teacher score)
NUM_NEGATIVES="${NUM_NEGATIVES:-}"          # negatives per positive (listwise: passages after the top TOP_K): a count, all, or auto (by format)
NEGATIVE_SAMPLING="${NEGATIVE_SAMPLING:-}"  # hard (next lower-scored) | random
SEED="${SEED:-}"

args=(--teacher_scores "$TRAIN_SCORES" --output_file "$TRAINING_ROWS" ${FORMAT:+--format "$FORMAT"}
      ${TOP_K:+--top_k "$TOP_K"} ${NUM_NEGATIVES:+--num_negatives "$NUM_NEGATIVES"}
      ${NEGATIVE_SAMPLING:+--negative_sampling "$NEGATIVE_SAMPLING"} ${SEED:+--seed "$SEED"})
"$PYTHON" "$HERE/rows.py" "${args[@]}" "$@"
