#!/usr/bin/env bash
# Stage 1: the teacher scores every (query, passage) pair of the train and test files (raw logits, one line per
# distinct pair, plus a .meta.json). Interrupted? Run the same command again: it resumes where it stopped.
# Extra arguments go to score.py (see --help), e.g. --max_queries 50, or --num_shards 4 --shard_id 0 (one machine's
# share; then the same command without shard flags joins the shards' .parts folders).
# Several GPUs or a Ray cluster: ENGINE=ray NUM_REPLICAS=8 bash score.sh (docs/scaling.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

TEACHER_MODEL="${TEACHER_MODEL:-Qwen/Qwen3-Reranker-8B}"   # yes/no LLM reranker, cross-encoder, or an embedder (BACKEND=bi-encoder)
TRAIN_FILE="${TRAIN_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/train.jsonl}"  # MTEB reranking format
TEST_FILE="${TEST_FILE:-$RAGDISTILL_ROOT/data/stackoverflowdupquestions-reranking/test.jsonl}"     # scored too: the teacher row of stage 4
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/reranker}"   # scores go to $OUTPUT_DIR/teacher_scores
BACKEND="${BACKEND:-auto}"                  # vllm | torch | bi-encoder | auto (vllm if a GPU is found)
INSTRUCTION="${INSTRUCTION:-Given a web search query, retrieve relevant passages that answer the query}"  # describe your task (e.g. "Retrieve duplicate questions from StackOverflow forum")
TEACHER_MAX_LENGTH="${TEACHER_MAX_LENGTH:-0}"   # tokens per prompt, longer documents are cut; 0 = 8192 for Qwen3-Reranker
TEACHER_DTYPE="${TEACHER_DTYPE:-auto}"      # auto | float32 | bfloat16 | float16
TEACHER_BATCH_SIZE="${TEACHER_BATCH_SIZE:-16}"  # torch / bi-encoder backends (vLLM batches by itself)
TEACHER_MAX_BATCH_TOKENS="${TEACHER_MAX_BATCH_TOKENS:-0}"  # torch backend: padded tokens per forward instead of rows; 0 = 16384 on GPU, off on CPU
TEACHER_SHARE_PREFIXES="${TEACHER_SHARE_PREFIXES:-auto}"  # torch backend: each query's prompt prefix computed once; auto = on on CPU, off on GPU | on | off
TENSOR_PARALLEL_SIZE="${TENSOR_PARALLEL_SIZE:-1}"   # vLLM: GPUs per teacher (Qwen3-Reranker-8B: 16 GB of bf16 weights, one 40-80 GB GPU is enough)
MAX_QUERIES="${MAX_QUERIES:-0}"             # >0: only the first N queries of each file (smoke runs)
ENGINE="${ENGINE:-direct}"                  # direct (this process) | ray (teacher replicas on Ray actors: docs/scaling.md)
NUM_REPLICAS="${NUM_REPLICAS:-1}"           # ENGINE=ray: teacher replicas, e.g. one per GPU (each takes TENSOR_PARALLEL_SIZE GPUs)
RAY_ADDRESS="${RAY_ADDRESS:-}"              # ENGINE=ray: a running cluster ('auto' on one of its nodes, ray://head:10001); unset = Ray on this machine only

"$PYTHON" "$RAGDISTILL_ROOT/Reranker-Distillation/score.py" \
  --teacher_model "$TEACHER_MODEL" \
  --train_files "$TRAIN_FILE" \
  --output_dir "$OUTPUT_DIR/teacher_scores" \
  --backend "$BACKEND" \
  --instruction "$INSTRUCTION" \
  --teacher_max_length "$TEACHER_MAX_LENGTH" \
  --teacher_dtype "$TEACHER_DTYPE" \
  --batch_size "$TEACHER_BATCH_SIZE" \
  --max_batch_tokens "$TEACHER_MAX_BATCH_TOKENS" \
  --share_prefixes "$TEACHER_SHARE_PREFIXES" \
  --tensor_parallel_size "$TENSOR_PARALLEL_SIZE" \
  --max_queries "$MAX_QUERIES" \
  --engine "$ENGINE" \
  --num_replicas "$NUM_REPLICAS" \
  --ray_address "$RAY_ADDRESS" \
  --test_files "$TEST_FILE" \
  "$@"
