#!/usr/bin/env bash
# Sourced by score.sh, evaluation.sh, export.sh and run_all.sh: the teacher's settings, read once here so that every
# stage describes the teacher alike and finds the scores stage 1 cached. Empty = the stage script's default (--help).
# Sets TEACHER_FLAGS, the stage script's teacher flags.
TEACHER_MODEL="${TEACHER_MODEL:-Qwen/Qwen3-Embedding-8B}"  # teacher embedder: Hugging Face id or local folder
BACKEND="${BACKEND:-}"                    # vllm (pooling runner, fast on GPUs) | torch (sentence-transformers, anywhere) | auto (vllm if a GPU is found)
INSTRUCTION="${INSTRUCTION:-}"            # query task 'Instruct: {task}\nQuery:'; empty: the model's own query prompt; none: no prompt
TEACHER_MAX_LENGTH="${TEACHER_MAX_LENGTH:-}"  # teacher tokens per text; longer texts are truncated and counted
TEACHER_DTYPE="${TEACHER_DTYPE:-}"        # auto = bf16 on GPUs and CPUs with AMX or AVX512-BF16, else fp32
TEACHER_ARGS="${TEACHER_ARGS:-}"          # more teacher flags, e.g. "--tensor_parallel_size 2 --chunk_size 8192 --enforce_eager"

TEACHER_FLAGS=(--teacher_model "$TEACHER_MODEL" ${BACKEND:+--backend "$BACKEND"}
               ${INSTRUCTION:+--instruction "$INSTRUCTION"} ${TEACHER_MAX_LENGTH:+--teacher_max_length "$TEACHER_MAX_LENGTH"}
               ${TEACHER_DTYPE:+--teacher_dtype "$TEACHER_DTYPE"})
# shellcheck disable=SC2206  # TEACHER_ARGS holds several flags, split on spaces
TEACHER_FLAGS+=($TEACHER_ARGS)
