#!/usr/bin/env bash
# Sourced by every stage wrapper: finds the repository and the Python to run the stage scripts with.
#   PYTHON=/path/to/python   run with this interpreter (default: the repository's .venv if present, else python3)
RAGDISTILL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$RAGDISTILL_ROOT/.venv/bin/python" ]; then PYTHON="$RAGDISTILL_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
# The stage scripts import the shared package from the repository, installed or not.
export PYTHONPATH="$RAGDISTILL_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# A stage banner: a blank line, a rule and the title, so a reader finds where each stage begins in a long log.
banner() { printf '\n%s\n== %s\n%s\n' "$(printf '=%.0s' {1..100})" "$*" "$(printf '=%.0s' {1..100})"; }

# Variable names renamed when both pipelines took one vocabulary: the old name still works for this release, with one
# line saying so (and is then unset, so that a stage run by run_all.sh does not say it again).
renamed() {
  local old="$1" new="$2"
  if [ -n "${!old:-}" ]; then
    echo "note: $old is deprecated and goes in the next release; use $new (set to $old's value for this run)" >&2
    if [ -z "${!new:-}" ]; then printf -v "$new" '%s' "${!old}"; export "${new?}"; fi
    unset "$old"
  fi
}
renamed TRAIN_FILE TRAIN_FILES
renamed TEST_FILE TEST_FILES
renamed IN_DOMAIN_FILES TEST_FILES
renamed TRAINED_MODEL MODEL_DIR

# BF16=auto: bf16 training where the GPU computes in bf16 (Ampere and later), else fp32 (CPUs, V100, T4).
auto_bf16() {
  if [ "$1" = auto ]; then
    "$PYTHON" -c 'import torch; print(str(torch.cuda.is_available() and torch.cuda.is_bf16_supported()).lower())'
  else
    echo "$1"
  fi
}

# The stage-1 score file of each (comma-separated) input file: $1 = the score folder, $2 = the files.
score_files() {
  local folder="$1" file files out=()
  IFS=, read -ra files <<<"$2"
  for file in "${files[@]}"; do
    file="$(basename "$file")"
    out+=("$folder/${file%%.jsonl*}.scores.jsonl")
  done
  (IFS=,; echo "${out[*]}")
}

# Stage 3 of both pipelines: $1 (train.py) with the student, its rows, MODEL_DIR and the trainer settings the two
# train.sh share (only those set: the script owns the defaults), then the rest of the arguments (the pipeline's own
# flags, TRAIN_ARGS, the user's); on NPROC GPUs through torchrun when NPROC > 1.
# SEEDS (several, comma-separated) trains one student per seed in MODEL_DIR/seed-<seed> and saves the average of
# their weights (a model soup, ragdistill.core.soup) in MODEL_DIR; a member trained with the same arguments is not
# trained again if it reached the end, and resumes from its last checkpoint if it did not.
run_train_stage() {
  local script="$1" launcher=("$PYTHON")
  shift
  if [ "${NPROC:-1}" -gt 1 ]; then launcher=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC"); fi
  local flags=(--student_model "$STUDENT_MODEL" --training_rows "$TRAINING_ROWS"
               --bf16 "$BF16" ${EPOCHS:+--num_train_epochs "$EPOCHS"} ${MAX_STEPS:+--max_steps "$MAX_STEPS"}
               ${BATCH_SIZE:+--per_device_train_batch_size "$BATCH_SIZE"}
               ${GRAD_ACCUM:+--gradient_accumulation_steps "$GRAD_ACCUM"}
               ${LEARNING_RATE:+--learning_rate "$LEARNING_RATE"} ${WARMUP:+--warmup_steps "$WARMUP"}
               ${MAX_SEQ_LENGTH:+--max_seq_length "$MAX_SEQ_LENGTH"} ${LORA_R:+--lora_r "$LORA_R"}
               ${LORA_ALPHA:+--lora_alpha "$LORA_ALPHA"}
               ${LORA_TARGET_MODULES:+--lora_target_modules "$LORA_TARGET_MODULES"}
               ${GRADIENT_CHECKPOINTING:+--gradient_checkpointing "$GRADIENT_CHECKPOINTING"}
               ${SAVE_STEPS:+--save_steps "$SAVE_STEPS"} ${LOGGING_STEPS:+--logging_steps "$LOGGING_STEPS"})
  local seeds=()
  IFS=, read -ra seeds <<<"${SEEDS:-}"
  if [ "${#seeds[@]}" -lt 2 ]; then
    local seed="${seeds[0]:-${SEED:-}}"
    "${launcher[@]}" "$script" "${flags[@]}" --output_dir "$MODEL_DIR" ${seed:+--seed "${seed// /}"} "$@"
    return
  fi
  local seed member arguments rows resume members=()
  for seed in "${seeds[@]}"; do
    seed="${seed// /}" member="$MODEL_DIR/seed-$seed" resume=()
    members+=("$member")
    # a member is reused only if trained with exactly these arguments on the same rows (their stage-1 record): to
    # the end (skipped) or cut short (resumed)
    arguments="$(printf '%s\n' "$script" "${flags[@]}" --seed "$seed" "$@"
                 for rows in ${TRAINING_ROWS//,/ }; do cat "$rows.meta.json" 2>/dev/null || true; done)"
    if [ -f "$member/.arguments" ] && [ "$(cat "$member/.arguments")" = "$arguments" ]; then
      if [ -f "$member/.trained" ]; then echo "seed $seed: trained already ($member)"; continue; fi
      if compgen -G "$member/checkpoint-*" >/dev/null; then resume=(--resume_from_checkpoint last); fi
    fi
    if [ "${#resume[@]}" -eq 0 ]; then
      rm -rf "$member" && mkdir -p "$member" && printf '%s' "$arguments" >"$member/.arguments"
    fi
    "${launcher[@]}" "$script" "${flags[@]}" --output_dir "$member" --seed "$seed" "$@" "${resume[@]}"
    touch "$member/.trained"
  done
  "$PYTHON" -m ragdistill.core.soup --models "$(IFS=,; echo "${members[*]}")" --output_dir "$MODEL_DIR"
}
