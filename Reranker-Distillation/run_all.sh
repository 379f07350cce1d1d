#!/usr/bin/env bash
# The whole Reranker-Distillation pipeline: teacher scores -> training rows -> student training -> evaluation.
# Every stage wrapper reads the same variables (paths.sh, teacher.sh, and each stage's own); set them in the
# environment, e.g.
#   TEACHER_MODEL=Qwen/Qwen3-Reranker-8B STUDENT_MODEL=BAAI/bge-reranker-v2-m3 bash run_all.sh
# or, a student of the teacher's own family (a yes/no LLM reading the teacher's prompt; train.sh lists LORA_R etc.):
#   TEACHER_MODEL=Qwen/Qwen3-Reranker-8B STUDENT_MODEL=Qwen/Qwen3-Reranker-0.6B GRADIENT_CHECKPOINTING=true bash run_all.sh
# Each stage can also be run (and re-run) on its own; stage 1 resumes where it stopped. Stage 5 (export.sh) follows
# when the student is to be served.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/common.sh"
source "$HERE/paths.sh"
source "$HERE/teacher.sh"

banner "1/4 teacher scores ($TEACHER_MODEL)"
bash "$HERE/score.sh"
banner "2/4 training rows"
bash "$HERE/rows.sh"
banner "3/4 training $STUDENT_MODEL"
bash "$HERE/train.sh"
banner "4/4 evaluation"
bash "$HERE/evaluation.sh"
