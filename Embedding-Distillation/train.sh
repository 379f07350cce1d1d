#!/usr/bin/env bash
# Stage 2: train the student SentenceTransformer on the teacher's soft labels (DistillKLDivLoss by default) and save
# it, with a model card, loss curve and log history, to MODEL_DIR. Extra arguments go to train.py: every
# SentenceTransformerTrainingArguments flag works, e.g. --resume_from_checkpoint last, --eval_strategy steps.
# NPROC=8 runs on 8 GPUs with torchrun (data parallel; the batch size is per GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"

# Two kinds of student:
#   an encoder:        STUDENT_MODEL=BAAI/bge-m3 (any SentenceTransformer: Hugging Face id or local folder)
#   an LLM embedder:   STUDENT_MODEL=Qwen/Qwen3-Embedding-0.6B [LORA_R=16] [GRADIENT_CHECKPOINTING=true];
#                      its queries take the teacher's instruction prompt, documents none
STUDENT_MODEL="${STUDENT_MODEL:-BAAI/bge-m3}"
LORA_R="${LORA_R:-0}"                   # >0: train LoRA adapters of this rank (merged into the saved model)
LORA_ALPHA="${LORA_ALPHA:-0}"           # 0 = 2 x LORA_R
LORA_TARGET_MODULES="${LORA_TARGET_MODULES:-all-linear}"
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-false}"  # true: recompute activations, far less memory (README)
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/embedding}"
TRAINING_ROWS="${TRAINING_ROWS:-$OUTPUT_DIR/training_rows.jsonl}"  # stage-1 rows
MODEL_DIR="${MODEL_DIR:-$OUTPUT_DIR/model}"    # trained student + checkpoints
LOSS="${LOSS:-kl}"                      # kl (DistillKLDivLoss), margin_mse or mse
TEMPERATURE="${TEMPERATURE:-0.05}"      # kl: sharp, since cosines span a narrow range (1.0 = nearly uniform targets)
LABEL_WEIGHT="${LABEL_WEIGHT:-}"        # kl: weight of the data's own labels (in-batch negatives) beside the teacher; 0 = teacher only; empty = 0.5 with kl
MATRYOSHKA_DIMS="${MATRYOSHKA_DIMS:-}"  # e.g. 1024,512,256 to also train truncated embeddings; empty = off
EPOCHS="${EPOCHS:-1}"
BATCH_SIZE="${BATCH_SIZE:-16}"          # rows per GPU per step (each row = query + 1 + NUM_NEGATIVES passages)
GRAD_ACCUM="${GRAD_ACCUM:-1}"
LEARNING_RATE="${LEARNING_RATE:-1e-4}"  # measured on WikiQA with a 22M student (module README); lower it for large students
WARMUP="${WARMUP:-0.1}"                 # warmup steps, or a fraction (< 1) of all steps
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-512}"
BF16="${BF16:-auto}"                    # auto: true on GPUs with bf16, else false (fp32)
SAVE_STEPS="${SAVE_STEPS:-500}"         # checkpoint every N steps (resume with --resume_from_checkpoint last)
LOGGING_STEPS="${LOGGING_STEPS:-10}"    # loss logged (and plotted) every N steps
SEED="${SEED:-42}"
NPROC="${NPROC:-1}"                     # GPUs; > 1 launches torchrun
TRAIN_ARGS="${TRAIN_ARGS:-}"            # more trainer flags, e.g. "--max_steps 100 --eval_file data/x/dev.jsonl"

if [ "$BF16" = auto ]; then
  BF16="$("$PYTHON" -c 'import torch; print(str(torch.cuda.is_available() and torch.cuda.is_bf16_supported()).lower())')"
fi
launcher=("$PYTHON")
if [ "$NPROC" -gt 1 ]; then launcher=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC"); fi
# shellcheck disable=SC2086  # TRAIN_ARGS holds several flags
"${launcher[@]}" "$HERE/train.py" \
  --student_model "$STUDENT_MODEL" --training_rows "$TRAINING_ROWS" --output_dir "$MODEL_DIR" \
  --loss "$LOSS" --temperature "$TEMPERATURE" ${LABEL_WEIGHT:+--label_weight "$LABEL_WEIGHT"} --matryoshka_dims "$MATRYOSHKA_DIMS" --max_seq_length "$MAX_SEQ_LENGTH" \
  --num_train_epochs "$EPOCHS" --per_device_train_batch_size "$BATCH_SIZE" --gradient_accumulation_steps "$GRAD_ACCUM" \
  --learning_rate "$LEARNING_RATE" --warmup_steps "$WARMUP" --bf16 "$BF16" --seed "$SEED" \
  --lora_r "$LORA_R" --lora_alpha "$LORA_ALPHA" --lora_target_modules "$LORA_TARGET_MODULES" \
  --gradient_checkpointing "$GRADIENT_CHECKPOINTING" \
  --logging_steps "$LOGGING_STEPS" --save_strategy steps --save_steps "$SAVE_STEPS" --save_total_limit 2 \
  $TRAIN_ARGS "$@"
