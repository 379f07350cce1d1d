#!/usr/bin/env bash
# The whole Embedding-Distillation pipeline: teacher scores and training rows (stages 1-2), training (stage 3),
# evaluation (stage 4). Every stage wrapper reads the same variables (paths.sh, teacher.sh, and each stage's own);
# set them in the environment, e.g.
#   TEACHER_MODEL=... STUDENT_MODEL=... BACKEND=torch bash run_all.sh
# e.g. a student of the teacher's own family (its queries take the teacher's instruction prompt; see train.sh):
#   TEACHER_MODEL=Qwen/Qwen3-Embedding-8B STUDENT_MODEL=Qwen/Qwen3-Embedding-0.6B GRADIENT_CHECKPOINTING=true bash run_all.sh
# Stage 5 (export.sh) follows when the student is to be served.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/common.sh"
source "$HERE/paths.sh"
source "$HERE/teacher.sh"

banner "1-2/4 teacher scores and training rows ($TEACHER_MODEL)"
bash "$HERE/score.sh"
banner "3/4 training $STUDENT_MODEL"
bash "$HERE/train.sh"
banner "4/4 evaluation"
bash "$HERE/evaluation.sh"
