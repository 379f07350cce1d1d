#!/usr/bin/env bash
# Stage 2: on TEST_CORPUS's queries, the original query, RM3 and the rewriter's family (untrained and trained) side
# by side, per first stage (BM25; the dense EMBEDDER too where set): NDCG@10, Recall@10/@100, MRR@10, rewrite cost.
# Saves query_expansion.{json,md} in OUTPUT_DIR. Extra arguments go to evaluation.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Query-Expansion-RL"
source "$HERE/paths.sh"

MAX_QUERIES="${MAX_QUERIES:-}"              # >0: only the first N test queries

mapfile -t common < <(common_args)
args=(--corpus "$TEST_CORPUS" --rewriter "$REWRITER_DIR" --output_dir "$OUTPUT_DIR" "${common[@]}"
      ${TEST_DISTRACTORS:+--distractor_files "$TEST_DISTRACTORS"} ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"})
"$PYTHON" "$HERE/evaluation.py" "${args[@]}" "$@"
