#!/usr/bin/env bash
# Stage 4: the trained student as it would be served: torch fp32 / bf16, ONNX Runtime fp32 (optimised) and int8
# (dynamic), OpenVINO int8 (static, calibrated on training queries and passages). Exports into the model folder
# (onnx/, openvino/), then measures every variant on the first in-domain test file: MAP, MRR@10, NDCG@10, Spearman vs
# the teacher, texts/s at batch 32, p50/p95 latency of one query. Prints the table next to the teacher's row; saves
# JSON, Markdown and a PNG in $OUTPUT_DIR/export. Extra arguments go to export.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"

OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"
MODEL_DIR="${MODEL_DIR:-$OUTPUT_DIR/model}"    # the trained student; the exports go into it
IN_DOMAIN_FILES="${IN_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/test.jsonl}"
TEST_FILE="${TEST_FILE:-${IN_DOMAIN_FILES%%,*}}"  # the first in-domain test file
TRAIN_FILES="${TRAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/validation.jsonl}"  # calibration texts
source "$HERE/teacher.sh"                    # the teacher, as in score.sh: its cached scores are reused
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"      # student tokens per text, as in evaluation.sh
VARIANTS="${VARIANTS:-torch-fp32,torch-bf16,onnx-fp32,onnx-int8,openvino-int8}"
EXPORT_BATCH_SIZE="${EXPORT_BATCH_SIZE:-32}"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"  # one-query latency: no spinning OpenMP threads

args=(--model "$MODEL_DIR" --test_file "$TEST_FILE" --calibration_files "$TRAIN_FILES"
      --teacher_scores_dir "$OUTPUT_DIR/teacher_scores" --output_dir "$OUTPUT_DIR/export" --variants "$VARIANTS"
      --student_batch_size "$EXPORT_BATCH_SIZE" --max_seq_length "$MAX_SEQ_LENGTH")
"$PYTHON" "$HERE/export.py" "${args[@]}" "${TEACHER_FLAGS[@]}" "$@"
