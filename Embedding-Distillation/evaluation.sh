#!/usr/bin/env bash
# Stage 3: the student before and after training, and the teacher, on the in-domain and out-of-domain test files:
# MAP / MRR@10 / NDCG@10 tables (change, relative change, teacher gap closed), encode throughput, similarity scatter
# plots. The teacher's scores come from the cache stage 1 filled (same teacher settings), or are computed once.
# Extra arguments go to evaluation.py (see its --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"

STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-m3}"  # the student before training
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"
MODEL_DIR="${MODEL_DIR:-$OUTPUT_DIR/model}"    # the student after training
EVAL_DIR="${EVAL_DIR:-$OUTPUT_DIR/evaluation}" # results.json, results.md, scatter PNGs
IN_DOMAIN_FILES="${IN_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/test.jsonl}"
OUT_OF_DOMAIN_FILES="${OUT_OF_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"
# The teacher: its variables (TEACHER_MODEL, BACKEND, INSTRUCTION, ...) sit in teacher.sh, shared with score.sh and
# export.sh, so that this stage finds the teacher scores score.sh cached.
source "$HERE/teacher.sh"
STUDENT_DTYPE="${STUDENT_DTYPE:-float32}"    # student dtype while evaluating
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"      # student tokens per text, before and after alike (as in train.sh)
EVAL_BATCH_SIZE="${EVAL_BATCH_SIZE:-32}"

args=(--student_model "$STUDENT_MODEL" --trained_model "$MODEL_DIR" --output_dir "$EVAL_DIR"
      --in_domain_files "$IN_DOMAIN_FILES" --out_of_domain_files "$OUT_OF_DOMAIN_FILES"
      --teacher_scores_dir "$OUTPUT_DIR/teacher_scores" --student_dtype "$STUDENT_DTYPE"
      --student_batch_size "$EVAL_BATCH_SIZE" --max_seq_length "$MAX_SEQ_LENGTH")
"$PYTHON" "$HERE/evaluation.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
