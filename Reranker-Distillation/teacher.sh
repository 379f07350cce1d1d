#!/usr/bin/env bash
# Sourced by score.sh and run_all.sh: the teacher's settings, as Embedding-Distillation/teacher.sh holds its teacher's.
# Empty = score.py's default (python score.py --help). Sets TEACHER_FLAGS, the stage script's teacher flags.
TEACHER_MODEL="${TEACHER_MODEL:-Qwen/Qwen3-Reranker-8B}"  # yes/no LLM reranker, cross-encoder, or an embedder (BACKEND=bi-encoder)
BACKEND="${BACKEND:-}"                      # vllm | torch | bi-encoder | auto (vllm if a GPU is found)
INSTRUCTION="${INSTRUCTION:-}"              # describe your task (e.g. "Retrieve duplicate questions from StackOverflow forum"); empty: web search
TEACHER_MAX_LENGTH="${TEACHER_MAX_LENGTH:-}"  # tokens per prompt, longer documents are cut; 0 = the model's own (8192 for Qwen3-Reranker)
TEACHER_DTYPE="${TEACHER_DTYPE:-}"          # auto | float32 | bfloat16 | float16
TEACHER_BATCH_SIZE="${TEACHER_BATCH_SIZE:-}"  # torch / bi-encoder backends (vLLM batches by itself)
TEACHER_MAX_BATCH_TOKENS="${TEACHER_MAX_BATCH_TOKENS:-}"  # torch backend: padded tokens per forward instead of rows
TEACHER_SHARE_PREFIXES="${TEACHER_SHARE_PREFIXES:-}"  # torch backend: each query's prompt prefix computed once: auto | on | off
TENSOR_PARALLEL_SIZE="${TENSOR_PARALLEL_SIZE:-}"  # vLLM: GPUs per teacher
TEACHER_ARGS="${TEACHER_ARGS:-}"            # more teacher flags, e.g. "--enforce_eager"

TEACHER_FLAGS=(--teacher_model "$TEACHER_MODEL" ${BACKEND:+--backend "$BACKEND"}
               ${INSTRUCTION:+--instruction "$INSTRUCTION"} ${TEACHER_MAX_LENGTH:+--teacher_max_length "$TEACHER_MAX_LENGTH"}
               ${TEACHER_DTYPE:+--teacher_dtype "$TEACHER_DTYPE"} ${TEACHER_BATCH_SIZE:+--batch_size "$TEACHER_BATCH_SIZE"}
               ${TEACHER_MAX_BATCH_TOKENS:+--max_batch_tokens "$TEACHER_MAX_BATCH_TOKENS"}
               ${TEACHER_SHARE_PREFIXES:+--share_prefixes "$TEACHER_SHARE_PREFIXES"}
               ${TENSOR_PARALLEL_SIZE:+--tensor_parallel_size "$TENSOR_PARALLEL_SIZE"})
# shellcheck disable=SC2206  # TEACHER_ARGS holds several flags, split on spaces
TEACHER_FLAGS+=($TEACHER_ARGS)
