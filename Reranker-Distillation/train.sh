#!/usr/bin/env bash
# Stage 3: train the student CrossEncoder on the stage-2 rows (sentence-transformers CrossEncoderTrainer).
# The final model lands in $OUTPUT_DIR/model. Extra arguments go to train.py: any CrossEncoderTrainingArguments
# option (--gradient_checkpointing, --eval_strategy, ...), or --resume_from_checkpoint last after a stop.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

# Two kinds of student:
#   a cross-encoder:        STUDENT_MODEL=BAAI/bge-reranker-v2-m3 (or a plain encoder: a one-logit head is added)
#   a yes/no LLM reranker:  STUDENT_MODEL=Qwen/Qwen3-Reranker-0.6B [INSTRUCTION=...] [LORA_R=16]
#                           [GRADIENT_CHECKPOINTING=true]; it reads the teacher's prompt (its instruction by default)
STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-reranker-v2-m3}"
INSTRUCTION="${INSTRUCTION:-}"              # yes/no LLM students; empty = the teacher's (recorded by stage 1)
LORA_R="${LORA_R:-0}"                       # >0: train LoRA adapters of this rank (merged into the saved model)
LORA_ALPHA="${LORA_ALPHA:-0}"               # 0 = 2 x LORA_R
LORA_TARGET_MODULES="${LORA_TARGET_MODULES:-all-linear}"
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-false}"   # true: recompute activations, far less memory (README)
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"     # stage-2 output
LOSS="${LOSS:-listnet}"                     # listnet (every candidate of a query at once) | margin_mse | lambda | mse
EPOCHS="${EPOCHS:-3}"                       # 3: measured on WikiQA (857 queries, 54 steps per epoch), module README
MAX_STEPS="${MAX_STEPS:--1}"                # >0 overrides EPOCHS
BATCH_SIZE="${BATCH_SIZE:-16}"              # rows per GPU per step
GRAD_ACCUM="${GRAD_ACCUM:-1}"
LEARNING_RATE="${LEARNING_RATE:-auto}"      # auto: 1e-4 for a plain encoder (new head), 1e-5 for a trained reranker
LABEL_WEIGHT="${LABEL_WEIGHT:-}"            # listnet: weight of the data's own labels beside the teacher; 0 = teacher only; empty = 0.5 with listnet on rows that carry them
WARMUP="${WARMUP:-0.1}"                     # warmup: a fraction of the steps (<1) or a number of steps
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"             # student tokens per (query, passage)
BF16="${BF16:-auto}"                        # true | false | auto (true when nvidia-smi finds a GPU; use false on V100/T4)
SAVE_STEPS="${SAVE_STEPS:-500}"             # checkpoints in $OUTPUT_DIR/model/checkpoint-N
LOGGING_STEPS="${LOGGING_STEPS:-10}"
SEED="${SEED:-42}"
NPROC="${NPROC:-1}"                         # >1: data parallel on NPROC GPUs (torchrun)
TRAIN_ARGS="${TRAIN_ARGS:-}"                # more trainer flags, e.g. "--eval_file data/x/dev.jsonl --eval_strategy steps"

if [ "$BF16" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then BF16=true; else BF16=false; fi
fi
if [ "$LEARNING_RATE" = auto ]; then
  LEARNING_RATE="$("$PYTHON" -c 'import sys; from ragdistill.reranker.training import default_learning_rate as lr
print(lr(sys.argv[1]))' "$STUDENT_MODEL")"
fi
LAUNCH=("$PYTHON")
if [ "$NPROC" -gt 1 ]; then LAUNCH=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC"); fi

# shellcheck disable=SC2086  # TRAIN_ARGS holds several flags
"${LAUNCH[@]}" "$RAGDISTILL_ROOT/Reranker-Distillation/train.py" \
  --student_model "$STUDENT_MODEL" \
  --training_rows "$TRAINING_ROWS" \
  --output_dir "$OUTPUT_DIR/model" \
  --loss "$LOSS" \
  --num_train_epochs "$EPOCHS" \
  --max_steps "$MAX_STEPS" \
  --per_device_train_batch_size "$BATCH_SIZE" \
  --gradient_accumulation_steps "$GRAD_ACCUM" \
  --learning_rate "$LEARNING_RATE" \
  ${LABEL_WEIGHT:+--label_weight "$LABEL_WEIGHT"} \
  --warmup_steps "$WARMUP" \
  --max_seq_length "$MAX_SEQ_LENGTH" \
  ${INSTRUCTION:+--instruction "$INSTRUCTION"} \
  --lora_r "$LORA_R" --lora_alpha "$LORA_ALPHA" --lora_target_modules "$LORA_TARGET_MODULES" \
  --gradient_checkpointing "$GRADIENT_CHECKPOINTING" \
  --bf16 "$BF16" \
  --save_steps "$SAVE_STEPS" \
  --save_total_limit 2 \
  --logging_steps "$LOGGING_STEPS" \
  --seed "$SEED" \
  --report_to none \
  $TRAIN_ARGS "$@"
