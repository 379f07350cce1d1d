#!/usr/bin/env bash
# The whole Embedding-Distillation pipeline: soft labels (stage 1), training (stage 2), evaluation (stage 3).
# Every variable of the three stage wrappers can be set in the environment; the shared ones are here.
#   TEACHER_MODEL=... STUDENT_MODEL=... BACKEND=torch bash run_all.sh
# e.g. a student of the teacher's own family (its queries take the teacher's instruction prompt; see train.sh):
#   TEACHER_MODEL=Qwen/Qwen3-Embedding-8B STUDENT_MODEL=Qwen/Qwen3-Embedding-0.6B GRADIENT_CHECKPOINTING=true bash run_all.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"

export TEACHER_MODEL="${TEACHER_MODEL:-Qwen/Qwen3-Embedding-8B}"  # teacher embedder
export STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-m3}"              # student SentenceTransformer
export BACKEND="${BACKEND:-vllm}"                                 # teacher backend: vllm or torch
export TRAIN_FILES="${TRAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/validation.jsonl}"
export IN_DOMAIN_FILES="${IN_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/scidocs-reranking/test.jsonl}"
export OUT_OF_DOMAIN_FILES="${OUT_OF_DOMAIN_FILES:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"
export OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"

banner "1/3 teacher scores ($TEACHER_MODEL)"
bash "$HERE/score.sh"
banner "2/3 training $STUDENT_MODEL"
bash "$HERE/train.sh"
banner "3/3 evaluation"
bash "$HERE/evaluation.sh"
