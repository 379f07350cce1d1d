#!/usr/bin/env bash
# Stage 1: embed the corpus with EMBEDDER and insert it into the Milvus collection COLLECTION (batched, resumable:
# a re-run inserts only what is missing). Milvus Lite by default (MILVUS_URI=*.db, a local folder); a server or
# cluster with MILVUS_URI=http://host:19530 and MILVUS_TOKEN=user:password. Extra arguments go to build_index.py
# (see --help), e.g. --overwrite, --index_params '{"M": 32}', --tensor_parallel_size 2.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

EMBEDDER="${EMBEDDER:-$RAGDISTILL_ROOT/output/embedding/model}"  # SentenceTransformer: hub id or folder (default: the Embedding-Distillation student)
BACKEND="${BACKEND:-torch}"   # torch | vllm (documents only; fast path on GPUs)
DIM="${DIM:-0}"                               # Matryoshka: keep the first DIM components, re-normalised; 0 = full
CORPUS="${CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"  # BEIR folder, or MTEB reranking files (comma-separated), pooled
SPLIT="${SPLIT:-test}"                        # BEIR qrels split
DISTRACTOR_FILES="${DISTRACTOR_FILES:-}"      # more MTEB files whose passages join the corpus (no queries)
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/milvus}"
MILVUS_URI="${MILVUS_URI:-$OUTPUT_DIR/milvus.db}"  # *.db = Milvus Lite folder; http://host:19530 = server / cluster
export -n MILVUS_URI                          # passed as --milvus_uri: pymilvus rejects a local path in $MILVUS_URI
export MILVUS_TOKEN="${MILVUS_TOKEN:-}"       # server only, e.g. root:Milvus (read from the environment, not argv)
COLLECTION="${COLLECTION:-student}"
INDEX_TYPE="${INDEX_TYPE:-AUTOINDEX}"         # Lite: AUTOINDEX FLAT HNSW HNSW_SQ IVF_FLAT IVF_SQ8; server: also DISKANN, IVF_PQ, ...
METRIC="${METRIC:-COSINE}"                    # COSINE | IP | L2
INDEX_PARAMS="${INDEX_PARAMS:-{\}}"           # JSON build parameters, e.g. {"M": 16, "efConstruction": 200}
DTYPE="${DTYPE:-auto}"                        # auto (bf16 on GPUs / AMX CPUs) | float32 | bfloat16 | float16
BATCH_SIZE="${BATCH_SIZE:-64}"                # texts per forward pass (sentence-transformers)
INSERT_BATCH_SIZE="${INSERT_BATCH_SIZE:-1024}"  # documents looked up, embedded and inserted together (one Ray task each with ENGINE=ray)
ENGINE="${ENGINE:-direct}"                    # direct (this process) | ray (encoder replicas on Ray actors: docs/scaling.md)
NUM_REPLICAS="${NUM_REPLICAS:-1}"             # ENGINE=ray: encoder replicas, e.g. one per GPU
RAY_ADDRESS="${RAY_ADDRESS:-}"                # ENGINE=ray: a running cluster ('auto' on one of its nodes, ray://head:10001); unset = Ray on this machine only

args=(--embedder "$EMBEDDER" --backend "$BACKEND" --dim "$DIM" --corpus "$CORPUS" --split "$SPLIT"
      --milvus_uri "$MILVUS_URI" --collection "$COLLECTION" --index_type "$INDEX_TYPE" --metric "$METRIC"
      --index_params "$INDEX_PARAMS" --dtype "$DTYPE" --batch_size "$BATCH_SIZE"
      --insert_batch_size "$INSERT_BATCH_SIZE" --output_dir "$OUTPUT_DIR"
      --engine "$ENGINE" --num_replicas "$NUM_REPLICAS" --ray_address "$RAY_ADDRESS")
if [ -n "$DISTRACTOR_FILES" ]; then args+=(--distractor_files "$DISTRACTOR_FILES"); fi
"$PYTHON" "$RAGDISTILL_ROOT/Milvus-Optimization/build_index.py" "${args[@]}" "$@"
