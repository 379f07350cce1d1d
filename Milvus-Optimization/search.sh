#!/usr/bin/env bash
# Stage 2: run every query through a chain: query embedding (the collection's own encoder, on PyTorch or from its
# ONNX / OpenVINO export) -> Milvus top TOP_K -> optional RERANKER over the top RERANK_TOP_K. Writes the TREC run OUTPUT_RUN, its per-query latency lines
# (<run>.latency.jsonl) and metadata (<run>.meta.json). Extra arguments go to search.py (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

CORPUS="${CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"  # where the queries come from (same as stage 1)
SPLIT="${SPLIT:-test}"
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/milvus}"
MILVUS_URI="${MILVUS_URI:-$OUTPUT_DIR/milvus.db}"
export -n MILVUS_URI                          # passed as --milvus_uri: pymilvus rejects a local path in $MILVUS_URI
export MILVUS_TOKEN="${MILVUS_TOKEN:-}"
COLLECTION="${COLLECTION:-student}"           # built by build_index.sh
RERANKER="${RERANKER:-}"                      # CrossEncoder or yes/no LLM reranker; empty = no reranking
RERANKER_BACKEND="${RERANKER_BACKEND:-torch}"  # torch | vllm (LLM rerankers) | onnx | openvino (exported CrossEncoders)
RERANKER_FILE="${RERANKER_FILE:-}"            # onnx/openvino: the exported file in the reranker's folder (empty = its int8 export)
ENCODER_BACKEND="${ENCODER_BACKEND:-torch}"   # query encoder: torch | onnx | openvino (the export stage's files)
ENCODER_FILE="${ENCODER_FILE:-}"              # onnx/openvino: the exported file in the encoder's folder (empty = its int8 export)
RERANKER_INSTRUCTION="${RERANKER_INSTRUCTION:-}"  # yes/no LLM rerankers: the task the teacher scored with (empty = web search default)
TOP_K="${TOP_K:-100}"                         # hits retrieved per query
RERANK_TOP_K="${RERANK_TOP_K:-50}"            # hits the reranker re-scores
SEARCH_PARAMS="${SEARCH_PARAMS:-{\}}"         # JSON, e.g. {"ef": 128} (HNSW) or {"nprobe": 16} (IVF)
DTYPE="${DTYPE:-auto}"                        # query encoder + reranker; auto = bf16 on GPUs, float32 on CPUs
CHAIN_NAME="${CHAIN_NAME:-$COLLECTION}"       # run name (file name and TREC tag)
# CPU latency: OpenMP threads that spin while waiting slow one-query encodes badly whenever another process holds a
# core; sleeping threads cost microseconds (figures: docs/benchmarks/defaults.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
OUTPUT_RUN="${OUTPUT_RUN:-$OUTPUT_DIR/runs/$CHAIN_NAME.trec}"

args=(--corpus "$CORPUS" --split "$SPLIT" --milvus_uri "$MILVUS_URI" --collection "$COLLECTION"
      --top_k "$TOP_K" --rerank_top_k "$RERANK_TOP_K" --search_params "$SEARCH_PARAMS" --dtype "$DTYPE"
      --output_run "$OUTPUT_RUN" --tag "$CHAIN_NAME" --encoder_backend "$ENCODER_BACKEND")
if [ -n "$ENCODER_FILE" ]; then args+=(--encoder_file "$ENCODER_FILE"); fi
if [ -n "$RERANKER" ] && [ -n "$RERANKER_FILE" ]; then args+=(--reranker_file "$RERANKER_FILE"); fi
if [ -n "$RERANKER" ]; then args+=(--reranker "$RERANKER" --reranker_backend "$RERANKER_BACKEND"); fi
if [ -n "$RERANKER" ] && [ -n "$RERANKER_INSTRUCTION" ]; then args+=(--reranker_instruction "$RERANKER_INSTRUCTION"); fi
"$PYTHON" "$RAGDISTILL_ROOT/Milvus-Optimization/search.py" "${args[@]}" "$@"
