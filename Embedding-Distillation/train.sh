#!/usr/bin/env bash
# Stage 3: train the student SentenceTransformer on the teacher's soft labels (DistillKLDivLoss by default) and save
# it, with a model card, loss curve and log history, to MODEL_DIR. Extra arguments go to train.py: every
# SentenceTransformerTrainingArguments flag works, e.g. --resume_from_checkpoint last, --eval_strategy steps.
# NPROC=8 runs on 8 GPUs with torchrun (data parallel; the batch size is per GPU).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
HERE="$RAGDISTILL_ROOT/Embedding-Distillation"
source "$HERE/paths.sh"                   # STUDENT_MODEL, TRAINING_ROWS, MODEL_DIR, ...

# Two kinds of student:
#   an encoder:        STUDENT_MODEL=BAAI/bge-m3 (any SentenceTransformer: Hugging Face id or local folder)
#   an LLM embedder:   STUDENT_MODEL=Qwen/Qwen3-Embedding-0.6B [LORA_R=16] [GRADIENT_CHECKPOINTING=true];
#                      its queries take the teacher's instruction prompt, documents none
# Empty = train.py's default (--help; where it differs from Reranker-Distillation's, train.py says why).
LOSS="${LOSS:-}"                          # kl (DistillKLDivLoss), margin_mse or mse
TEMPERATURE="${TEMPERATURE:-}"            # kl: sharp, since cosines span a narrow range (1.0 = nearly uniform targets)
LABEL_WEIGHT="${LABEL_WEIGHT:-}"          # kl: weight of the data's own labels (in-batch negatives) beside the teacher; 0 = teacher only
LABEL_NEGATIVES="${LABEL_NEGATIVES:-}"    # kl with labels: batch (default) | row: the positive against its row's negatives only
SELF_DISTILLATION_WEIGHT="${SELF_DISTILLATION_WEIGHT:-}"  # kl: weight of the starting student on the pairs the teacher does not judge (holds what it knew); 0 = off
MATRYOSHKA_DIMS="${MATRYOSHKA_DIMS:-}"    # e.g. 1024,512,256 to also train truncated embeddings
EPOCHS="${EPOCHS:-}"
MAX_STEPS="${MAX_STEPS:-}"                # >0 overrides EPOCHS
BATCH_SIZE="${BATCH_SIZE:-}"              # rows per GPU per step (each row = query + 1 + NUM_NEGATIVES passages); empty: 16 with the label term, 4 for the teacher alone
GRAD_ACCUM="${GRAD_ACCUM:-}"
LEARNING_RATE="${LEARNING_RATE:-}"        # measured with a 22M-parameter student (module README); lower it for large students
WARMUP="${WARMUP:-}"                      # warmup steps, or a fraction (< 1) of all steps
MAX_SEQ_LENGTH="${MAX_SEQ_LENGTH:-}"      # student tokens per text, as in evaluation.sh and export.sh
LORA_R="${LORA_R:-}"                      # >0: train LoRA adapters of this rank (merged into the saved model)
LORA_ALPHA="${LORA_ALPHA:-}"              # 0 = 2 x LORA_R
LORA_TARGET_MODULES="${LORA_TARGET_MODULES:-}"
GRADIENT_CHECKPOINTING="${GRADIENT_CHECKPOINTING:-}"  # true: recompute activations, far less memory (README)
SAVE_STEPS="${SAVE_STEPS:-}"              # checkpoint every N steps (resume with --resume_from_checkpoint last)
LOGGING_STEPS="${LOGGING_STEPS:-}"        # loss logged (and plotted) every N steps
SEED="${SEED:-}"
SEEDS="${SEEDS:-}"                        # several, comma-separated (42,1,2): one student per seed, saved as their weight average (a model soup)
BF16="$(auto_bf16 "${BF16:-auto}")"       # true | false | auto (true on GPUs that compute in bf16: Ampere and later)
NPROC="${NPROC:-1}"                       # GPUs; > 1 launches torchrun
TRAIN_ARGS="${TRAIN_ARGS:-}"              # more trainer flags, e.g. "--eval_file data/x/dev.jsonl --eval_strategy steps"

own=(${LOSS:+--loss "$LOSS"} ${TEMPERATURE:+--temperature "$TEMPERATURE"} ${LABEL_WEIGHT:+--label_weight "$LABEL_WEIGHT"}
     ${LABEL_NEGATIVES:+--label_negatives "$LABEL_NEGATIVES"} ${MATRYOSHKA_DIMS:+--matryoshka_dims "$MATRYOSHKA_DIMS"}
     ${SELF_DISTILLATION_WEIGHT:+--self_distillation_weight "$SELF_DISTILLATION_WEIGHT"})
# shellcheck disable=SC2086  # TRAIN_ARGS holds several flags
run_train_stage "$HERE/train.py" "${own[@]}" $TRAIN_ARGS "$@"
