#!/usr/bin/env bash
# Stages 1-2: the teacher embeds every unique query and passage of the training files once and writes soft-label
# rows (teacher cosine similarities) for train.sh; it also scores the test files now, for evaluation.sh, and warns
# if test queries also appear in the training files. Re-running the same command after a crash resumes it. Extra
# arguments go to score.py (see its --help), e.g.
#   ENGINE=ray NUM_REPLICAS=4 bash score.sh       (4 teacher replicas on Ray actors: docs/scaling.md)
#   bash score.sh --num_shards 4 --shard_id 0     (without Ray: one machine's share; then the same command without
#                                                  shard flags joins the shards' .parts folders)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"
source "$HERE/paths.sh"                   # TRAIN_FILES, TEST_FILES, OUT_OF_DOMAIN_FILES, OUTPUT_DIR, TRAINING_ROWS
source "$HERE/teacher.sh"                 # TEACHER_MODEL, BACKEND, INSTRUCTION, ...

# Empty = score.py's default (--help).
FORMAT="${FORMAT:-}"                      # ntuple (1 positive + NUM_NEGATIVES hardest negatives) or triplet
NUM_NEGATIVES="${NUM_NEGATIVES:-}"        # negatives per ntuple row, or all
PAD_NEGATIVES="${PAD_NEGATIVES:-}"        # true: queries with fewer negatives repeat theirs; false: left out
FALSE_NEGATIVE_MARGIN="${FALSE_NEGATIVE_MARGIN:-}"  # input without labels: candidates above this x the top one's similarity are no negatives
KEEP_TEACHER_EMBEDDINGS="${KEEP_TEACHER_EMBEDDINGS:-}"  # true (default): keep them beside TRAINING_ROWS, so other row settings embed nothing; false: do not
SCORE_TEST_FILES="${SCORE_TEST_FILES:-}"  # true: score the test files too (teacher loaded once), cached for stage 4
MAX_QUERIES="${MAX_QUERIES:-}"            # first N training queries only (smoke runs)
ENGINE="${ENGINE:-}"                      # direct (this process) | ray (teacher replicas on Ray actors: docs/scaling.md)
NUM_REPLICAS="${NUM_REPLICAS:-}"          # ENGINE=ray: teacher replicas, e.g. one per GPU
RAY_ADDRESS="${RAY_ADDRESS:-}"            # ENGINE=ray: a running cluster ('auto' on one of its nodes, ray://head:10001); unset = Ray on this machine only

args=(--train_files "$TRAIN_FILES" --test_files "$ALL_TEST_FILES" --output_file "$TRAINING_ROWS"
      --teacher_scores_dir "$OUTPUT_DIR/teacher_scores" ${FORMAT:+--format "$FORMAT"}
      ${NUM_NEGATIVES:+--num_negatives "$NUM_NEGATIVES"} ${PAD_NEGATIVES:+--pad_negatives "$PAD_NEGATIVES"}
      ${FALSE_NEGATIVE_MARGIN:+--false_negative_margin "$FALSE_NEGATIVE_MARGIN"}
      ${KEEP_TEACHER_EMBEDDINGS:+--keep_teacher_embeddings "$KEEP_TEACHER_EMBEDDINGS"}
      ${SCORE_TEST_FILES:+--score_test_files "$SCORE_TEST_FILES"} ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"}
      ${ENGINE:+--engine "$ENGINE"} ${NUM_REPLICAS:+--num_replicas "$NUM_REPLICAS"}
      ${RAY_ADDRESS:+--ray_address "$RAY_ADDRESS"})
"$PYTHON" "$HERE/score.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
