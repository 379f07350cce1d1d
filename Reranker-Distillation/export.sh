#!/usr/bin/env bash
# Stage 5: the trained student as it would be served: torch fp32 / bf16, ONNX Runtime fp32 (optimised) and int8
# (dynamic), OpenVINO int8 (static, calibrated on training pairs). Exports into the model folder (onnx/, openvino/),
# then measures every variant: MAP, MRR@10, NDCG@10, Spearman vs the teacher, pairs/s at batch 32, p50/p95 latency of
# one pair. Prints the table next to the teacher's row; saves JSON, Markdown and a PNG in $OUTPUT_DIR/export.
# Extra arguments go to export.py (see --help), e.g. --variants torch-fp32,onnx-int8.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

TEST_FILE="${TEST_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"  # as in evaluation.sh
TRAIN_FILE="${TRAIN_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/train.jsonl}"  # calibration pairs
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"
TRAINED_MODEL="${TRAINED_MODEL:-$OUTPUT_DIR/model}"          # train.sh output; the exports go into it
TEST_SCORES="${TEST_SCORES:-$OUTPUT_DIR/teacher_scores/$(basename "${TEST_FILE%%.jsonl*}").scores.jsonl}"  # stage-1 output
MAX_QUERIES="${MAX_QUERIES:-0}"             # >0: only the first N test queries (as scored in stage 1)
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"             # as in train.sh and evaluation.sh
VARIANTS="${VARIANTS:-torch-fp32,torch-bf16,onnx-fp32,onnx-int8,openvino-int8}"
EXPORT_BATCH_SIZE="${EXPORT_BATCH_SIZE:-32}"
# One-request latency: OpenMP threads that spin while waiting slow single calls whenever another process holds a core.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

"$PYTHON" "$RAGDISTILL_ROOT/Reranker-Distillation/export.py" \
  --model "$TRAINED_MODEL" \
  --test_file "$TEST_FILE" \
  --teacher_scores "$TEST_SCORES" \
  --calibration_files "$TRAIN_FILE" \
  --output_dir "$OUTPUT_DIR/export" \
  --variants "$VARIANTS" \
  --max_queries "$MAX_QUERIES" \
  --max_seq_length "$MAX_SEQ_LENGTH" \
  --student_batch_size "$EXPORT_BATCH_SIZE" \
  "$@"
