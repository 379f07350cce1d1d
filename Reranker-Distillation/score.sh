#!/usr/bin/env bash
# Stage 1: the teacher scores every (query, passage) pair of the train and test files (raw logits, one line per
# distinct pair, plus a .meta.json). Interrupted? Run the same command again: it resumes where it stopped.
# Extra arguments go to score.py (see --help), e.g. --max_queries 50, or --num_shards 4 --shard_id 0 (one machine's
# share; then the same command without shard flags joins the shards' .parts folders).
# Several GPUs or a Ray cluster: ENGINE=ray NUM_REPLICAS=8 bash score.sh (docs/scaling.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Reranker-Distillation"
source "$HERE/paths.sh"                     # TRAIN_FILES, TEST_FILES, OUTPUT_DIR, ...
source "$HERE/teacher.sh"                   # TEACHER_MODEL, BACKEND, INSTRUCTION, ...

# Empty = score.py's default (--help).
MAX_QUERIES="${MAX_QUERIES:-}"              # >0: only the first N queries of each file (smoke runs)
ENGINE="${ENGINE:-}"                        # direct (this process) | ray (teacher replicas on Ray actors: docs/scaling.md)
NUM_REPLICAS="${NUM_REPLICAS:-}"            # ENGINE=ray: teacher replicas, e.g. one per GPU (each takes TENSOR_PARALLEL_SIZE GPUs)
RAY_ADDRESS="${RAY_ADDRESS:-}"              # ENGINE=ray: a running cluster ('auto' on one of its nodes, ray://head:10001); unset = Ray on this machine only

args=(--train_files "$TRAIN_FILES" --test_files "$TEST_FILES" --output_dir "$OUTPUT_DIR/teacher_scores"
      ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"} ${ENGINE:+--engine "$ENGINE"}
      ${NUM_REPLICAS:+--num_replicas "$NUM_REPLICAS"} ${RAY_ADDRESS:+--ray_address "$RAY_ADDRESS"})
"$PYTHON" "$HERE/score.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
