#!/usr/bin/env bash
# Stage 3: train the student CrossEncoder on the stage-2 rows (sentence-transformers CrossEncoderTrainer) and save
# it, with a model card, loss curve and log history, to MODEL_DIR. Extra arguments go to train.py: any
# CrossEncoderTrainingArguments option (--gradient_checkpointing, --eval_strategy, ...), or --resume_from_checkpoint
# last after a stop. NPROC=8 runs on 8 GPUs with torchrun (data parallel; the batch size is per GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Reranker-Distillation"
source "$HERE/paths.sh"                     # STUDENT_MODEL, TRAINING_ROWS, MODEL_DIR, ...

# Two kinds of student:
#   a cross-encoder:        STUDENT_MODEL=BAAI/bge-reranker-v2-m3 (or a plain encoder: a one-logit head is added)
#   a yes/no LLM reranker:  STUDENT_MODEL=Qwen/Qwen3-Reranker-0.6B [INSTRUCTION=...] [LORA_R=16]
#                           [GRADIENT_CHECKPOINTING=true]; it reads the teacher's prompt (its instruction by default)
# Empty = train.py's default (--help; where it differs from Embedding-Distillation's, train.py says why).
INSTRUCTION="${INSTRUCTION:-}"              # yes/no LLM students; empty = the teacher's (recorded by stage 1)
LOSS="${LOSS:-}"                            # listnet (every candidate of a query at once) | margin_mse | lambda | mse
LABEL_WEIGHT="${LABEL_WEIGHT:-}"            # listnet: weight of the data's own labels beside the teacher; 0 = teacher only
EPOCHS="${EPOCHS:-}"
MAX_STEPS="${MAX_STEPS:-}"                  # >0 overrides EPOCHS
BATCH_SIZE="${BATCH_SIZE:-}"                # rows per GPU per step
GRAD_ACCUM="${GRAD_ACCUM:-}"
LEARNING_RATE="${LEARNING_RATE:-}"          # empty (or auto): by the student's head (a new head needs a higher rate)
if [ "$LEARNING_RATE" = auto ]; then LEARNING_RATE=; fi
WARMUP="${WARMUP:-}"                        # warmup: a fraction of the steps (<1) or a number of steps
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-}"        # student tokens per (query, passage), as in evaluation.sh and export.sh
LORA_R="${LORA_R:-}"                        # >0: train LoRA adapters of this rank (merged into the saved model)
LORA_ALPHA="${LORA_ALPHA:-}"                # 0 = 2 x LORA_R
LORA_TARGET_MODULES="${LORA_TARGET_MODULES:-}"
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-}"  # true: recompute activations, far less memory (README)
SAVE_STEPS="${SAVE_STEPS:-}"                # checkpoints in MODEL_DIR/checkpoint-N
LOGGING_STEPS="${LOGGING_STEPS:-}"
SEED="${SEED:-}"
SEEDS="${SEEDS:-}"                          # several, comma-separated (42,1,2): one student per seed, saved as their weight average (a model soup)
BF16="$(auto_bf16 "${BF16:-auto}")"         # true | false | auto (true on GPUs that compute in bf16: Ampere and later)
NPROC="${NPROC:-1}"                         # >1: data parallel on NPROC GPUs (torchrun)
TRAIN_ARGS="${TRAIN_ARGS:-}"                # more trainer flags, e.g. "--eval_file data/x/dev.jsonl --eval_strategy steps"

own=(${INSTRUCTION:+--instruction "$INSTRUCTION"} ${LOSS:+--loss "$LOSS"} ${LABEL_WEIGHT:+--label_weight "$LABEL_WEIGHT"})
# shellcheck disable=SC2086  # TRAIN_ARGS holds several flags
run_train_stage "$HERE/train.py" "${own[@]}" $TRAIN_ARGS "$@"
