#!/usr/bin/env bash
# Stage 1: the teacher embeds every unique query and passage of the training files once and writes soft-label rows
# (teacher cosine similarities) for train.sh; it also scores the test files now, for evaluation.sh, and warns if
# test queries also appear in the training files. Re-running the same command after a crash resumes it. Extra
# arguments go to score.py (see its --help), e.g.
#   ENGINE=ray NUM_REPLICAS=4 bash score.sh       (4 teacher replicas on Ray actors: docs/scaling.md)
#   bash score.sh --num_shards 4 --shard_id 0     (without Ray: one machine's share; then the same command without
#                                                  shard flags joins the shards' .parts folders)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"

# The teacher: TEACHER_MODEL, BACKEND, INSTRUCTION, TEACHER_MAX_LENGTH, TEACHER_DTYPE, TEACHER_ARGS sit in teacher.sh,
# shared with evaluation.sh and export.sh (same settings, so they reuse the scores cached here).
source "$HERE/teacher.sh"
TRAIN_FILES="${TRAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/validation.jsonl}"  # comma-separated MTEB files
IN_DOMAIN_FILES="${IN_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/test.jsonl}"
OUT_OF_DOMAIN_FILES="${OUT_OF_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"
SCORE_TEST_FILES="${SCORE_TEST_FILES:-true}"  # true: score the test files too (teacher loaded once), cached for stage 3
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"  # the rows train.sh reads
FORMAT="${FORMAT:-ntuple}"                # ntuple (1 positive + NUM_NEGATIVES hardest negatives) or triplet
NUM_NEGATIVES="${NUM_NEGATIVES:-8}"       # negatives per ntuple row, or all
PAD_NEGATIVES="${PAD_NEGATIVES:-true}"    # true: queries with fewer negatives repeat theirs; false: left out
MAX_QUERIES="${MAX_QUERIES:-0}"           # first N training queries only (smoke runs); 0 = all
ENGINE="${ENGINE:-direct}"                # direct (this process) | ray (teacher replicas on Ray actors: docs/scaling.md)
NUM_REPLICAS="${NUM_REPLICAS:-1}"         # ENGINE=ray: teacher replicas, e.g. one per GPU
RAY_ADDRESS="${RAY_ADDRESS:-}"            # ENGINE=ray: a running cluster ('auto' on one of its nodes, ray://head:10001); unset = Ray on this machine only

args=(--train_files "$TRAIN_FILES" --output_file "$TRAINING_ROWS" --format "$FORMAT"
      --num_negatives "$NUM_NEGATIVES" --pad_negatives "$PAD_NEGATIVES" --max_queries "$MAX_QUERIES"
      --teacher_scores_dir "$OUTPUT_DIR/teacher_scores" --test_files "$IN_DOMAIN_FILES,$OUT_OF_DOMAIN_FILES"
      --score_test_files "$SCORE_TEST_FILES" --engine "$ENGINE" --num_replicas "$NUM_REPLICAS" --ray_address "$RAY_ADDRESS")
"$PYTHON" "$HERE/score.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
