#!/usr/bin/env bash
# Stage 5: the trained student as it would be served: torch fp32 / bf16, ONNX Runtime fp32 (optimised) and int8
# (dynamic), OpenVINO int8 (static, calibrated on training pairs). Exports into MODEL_DIR (onnx/, openvino/), then
# measures every variant on the first of TEST_FILES: MAP, MRR@10, NDCG@10, Spearman vs the teacher, pairs/s, p50/p95
# latency of one pair. Prints the table next to the teacher's row; saves JSON, Markdown and a PNG in
# OUTPUT_DIR/export. Extra arguments go to export.py (see --help), e.g. --variants torch-fp32,onnx-int8.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Reranker-Distillation"
source "$HERE/paths.sh"                     # MODEL_DIR, FIRST_TEST_FILE, TEST_SCORES, TRAIN_FILES (calibration pairs)

# Empty = export.py's default (--help).
MAX_QUERIES="${MAX_QUERIES:-}"              # >0: only the first N test queries (as scored in stage 1)
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-}"        # as in train.sh and evaluation.sh
VARIANTS="${VARIANTS:-}"                    # comma-separated; empty = all five
EXPORT_BATCH_SIZE="${EXPORT_BATCH_SIZE:-}"
# One-request latency: OpenMP threads that spin while waiting slow single calls whenever another process holds a core.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

args=(--model "$MODEL_DIR" --test_file "$FIRST_TEST_FILE" --teacher_scores "$TEST_SCORES"
      --calibration_files "$TRAIN_FILES" --output_dir "$OUTPUT_DIR/export" ${VARIANTS:+--variants "$VARIANTS"}
      ${MAX_QUERIES:+--max_queries "$MAX_QUERIES"} ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"}
      ${EXPORT_BATCH_SIZE:+--student_batch_size "$EXPORT_BATCH_SIZE"})
"$PYTHON" "$HERE/export.py" "${args[@]}" "$@"
