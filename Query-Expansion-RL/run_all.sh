#!/usr/bin/env bash
# The whole Query-Expansion-RL module: train a rewriter on TRAIN_CORPUS's queries, then measure it against the
# original query and RM3 on TEST_CORPUS's. Every variable is in paths.sh, train.sh and evaluation.sh; e.g.
#   EMBEDDER=output/embedding/model bash run_all.sh                                  # term policy, CPU
#   POLICY=llm POLICY_MODEL=Qwen/Qwen3-0.6B LORA_R=16 bash run_all.sh                # LLM rewriter, GPU
#   TRAIN_CORPUS=my_beir_folder TEST_CORPUS=my_beir_folder TEACHER_MODEL=BAAI/bge-reranker-v2-m3 bash run_all.sh
# Then put the rewriter in front of the Milvus chain: Milvus-Optimization/search.sh --rewriter output/query_expansion/rewriter
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../scripts/common.sh"
source "$HERE/paths.sh"

banner "1/2 training the rewriter (${POLICY:-term} policy)"
bash "$HERE/train.sh"
banner "2/2 evaluation on held-out queries"
bash "$HERE/evaluation.sh"
