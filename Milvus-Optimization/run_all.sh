#!/usr/bin/env bash
# The whole Milvus-Optimization measurement: index the corpus once with the student embedder and once with the
# teacher embedder (two collections), run four chains (student; student + student reranker; teacher; teacher +
# teacher reranker; with SERVING_BACKEND=onnx|openvino also the student chains from their int8 exports), and compare
# them side by side: quality, p50/p95 latency per query end to end, index size.
# Every variable can be set in the environment, e.g.
#   STUDENT_EMBEDDER=output/embedding/model TEACHER_EMBEDDER=Qwen/Qwen3-Embedding-8B bash run_all.sh
# An empty STUDENT_RERANKER or TEACHER_RERANKER leaves that reranked chain out; an empty TEACHER_EMBEDDER leaves
# both teacher chains out. Builds resume where they stopped; REBUILD=1 rebuilds both collections from scratch.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/common.sh"

STUDENT_EMBEDDER="${STUDENT_EMBEDDER-$RAGDISTILL_ROOT/output/embedding/model}"  # Embedding-Distillation's trained student
TEACHER_EMBEDDER="${TEACHER_EMBEDDER-Qwen/Qwen3-Embedding-8B}"
STUDENT_RERANKER="${STUDENT_RERANKER-$RAGDISTILL_ROOT/output/reranker/model}"   # Reranker-Distillation's trained student
TEACHER_RERANKER="${TEACHER_RERANKER-Qwen/Qwen3-Reranker-8B}"                   # yes/no LLM reranker or CrossEncoder
STUDENT_BACKEND="${STUDENT_BACKEND:-torch}"  # document embedding: torch | vllm
TEACHER_BACKEND="${TEACHER_BACKEND:-torch}"  # vllm: the fast path for a large teacher on GPUs
STUDENT_DIM="${STUDENT_DIM:-0}"               # Matryoshka truncation of the student's vectors; 0 = full
TEACHER_DIM="${TEACHER_DIM:-0}"
export CORPUS="${CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"  # BEIR folder or MTEB files (pooled)
export SPLIT="${SPLIT:-test}"
export DISTRACTOR_FILES="${DISTRACTOR_FILES:-}"  # e.g. data/wikiqa/train.jsonl.gz: more passages to search through
export OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/milvus}"
export MILVUS_URI="${MILVUS_URI:-$OUTPUT_DIR/milvus.db}"  # Milvus Lite folder, or http://host:19530
export MILVUS_TOKEN="${MILVUS_TOKEN:-}"       # server only, e.g. root:Milvus
export INDEX_TYPE="${INDEX_TYPE:-AUTOINDEX}"
export METRIC="${METRIC:-COSINE}"
export TOP_K="${TOP_K:-100}"
export RERANK_TOP_K="${RERANK_TOP_K:-50}"
export DTYPE="${DTYPE:-auto}"                 # build: bf16 on GPUs / AMX CPUs; search: bf16 on GPUs, fp32 on CPUs
REBUILD="${REBUILD:-0}"                       # 1: drop and rebuild the collections
# onnx | openvino: also run the student chains as deployed, query encoder and reranker from their int8 exports
# (Embedding-Distillation/export.sh, Reranker-Distillation/export.sh); empty: PyTorch only.
SERVING_BACKEND="${SERVING_BACKEND:-}"

build_args=()
if [ "$REBUILD" = 1 ]; then build_args+=(--overwrite); fi
chains=()

banner "1/4 index with the student embedder ($STUDENT_EMBEDDER)"
EMBEDDER="$STUDENT_EMBEDDER" BACKEND="$STUDENT_BACKEND" DIM="$STUDENT_DIM" COLLECTION=student \
  bash "$HERE/build_index.sh" "${build_args[@]}"
if [ -n "$TEACHER_EMBEDDER" ]; then
  banner "2/4 index with the teacher embedder ($TEACHER_EMBEDDER)"
  EMBEDDER="$TEACHER_EMBEDDER" BACKEND="$TEACHER_BACKEND" DIM="$TEACHER_DIM" COLLECTION=teacher \
    bash "$HERE/build_index.sh" "${build_args[@]}"
fi

banner "3/4 search"
run_chain() {  # name collection reranker [backend]
  COLLECTION="$2" CHAIN_NAME="$1" RERANKER="$3" ENCODER_BACKEND="${4:-torch}" RERANKER_BACKEND="${4:-${RERANKER_BACKEND:-torch}}" \
    bash "$HERE/search.sh"
  chains+=("$1=$OUTPUT_DIR/runs/$1.trec")
}
run_chain student student ""
if [ -n "$STUDENT_RERANKER" ]; then run_chain student+student_reranker student "$STUDENT_RERANKER"; fi
if [ -n "$SERVING_BACKEND" ]; then
  run_chain "student@$SERVING_BACKEND" student "" "$SERVING_BACKEND"
  if [ -n "$STUDENT_RERANKER" ]; then
    run_chain "student+student_reranker@$SERVING_BACKEND" student "$STUDENT_RERANKER" "$SERVING_BACKEND"
  fi
fi
if [ -n "$TEACHER_EMBEDDER" ]; then
  run_chain teacher teacher ""
  if [ -n "$TEACHER_RERANKER" ]; then run_chain teacher+teacher_reranker teacher "$TEACHER_RERANKER"; fi
fi

banner "4/4 evaluation"
reference=""
if [ -n "$TEACHER_EMBEDDER" ]; then
  reference=teacher
  if [ -n "$TEACHER_RERANKER" ]; then reference=teacher+teacher_reranker; fi
fi
CHAINS="$(IFS=,; echo "${chains[*]}")" REFERENCE="$reference" bash "$HERE/evaluation.sh"
