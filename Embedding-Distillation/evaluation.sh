#!/usr/bin/env bash
# Stage 4: the student before and after training, and the teacher, on the in-domain and out-of-domain test files:
# MAP / MRR@10 / NDCG@10 tables (change, relative change, teacher gap closed), agreement with the teacher, encode
# throughput, similarity scatter plots, in EVAL_DIR. The teacher's scores come from the cache stage 1 filled (same
# teacher settings), or are computed once. Extra arguments go to evaluation.py (see its --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"
source "$HERE/paths.sh"                   # STUDENT_MODEL (before), MODEL_DIR (after), TEST_FILES, OUT_OF_DOMAIN_FILES, EVAL_DIR
source "$HERE/teacher.sh"                 # as in score.sh, so that this stage finds the teacher scores it cached

# Empty = evaluation.py's default (--help).
MAX_QUERIES="${MAX_QUERIES:-}"            # >0: only the first N queries of each test file
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-}"      # student tokens per text, before and after alike (as in train.sh)
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-}"
STUDENT_DTYPE="${STUDENT_DTYPE:-}"        # float32: reference numbers; bfloat16 / float16 for deployment speed

args=(--student_model "$STUDENT_MODEL" --trained_model "$MODEL_DIR" --output_dir "$EVAL_DIR"
      --test_files "$TEST_FILES" --out_of_domain_files "$OUT_OF_DOMAIN_FILES"
      --teacher_scores_dir "$OUTPUT_DIR/teacher_scores" ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"}
      ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} ${EVAL_BATCH_SIZE:+--student_batch_size "$EVAL_BATCH_SIZE"}
      ${STUDENT_DTYPE:+--student_dtype "$STUDENT_DTYPE"})
"$PYTHON" "$HERE/evaluation.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
