#!/usr/bin/env bash
# Stage 3: the chains side by side: Recall@10/@100, NDCG@10, MRR@10 from the qrels, p50/p95 query latency, index
# size. Prints the table and saves retrieval_chains.json / .md / .png in OUTPUT_DIR. Extra arguments go to
# evaluation.py (see --help), e.g. --qrels my_qrels.tsv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

CORPUS="${CORPUS:-$RAGDISTILL_ROOT/data/wikiqa/test.jsonl.gz}"  # gives the qrels (same as stages 1 and 2)
SPLIT="${SPLIT:-test}"
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/output/milvus}"
CHAINS="${CHAINS:-student=$OUTPUT_DIR/runs/student.trec}"  # name=run pairs, comma-separated
REFERENCE="${REFERENCE:-}"                    # the chain others are compared with (e.g. the teacher's)
TITLE="${TITLE:-Retrieval chains on Milvus}"

args=(--corpus "$CORPUS" --split "$SPLIT" --chains "$CHAINS" --output_dir "$OUTPUT_DIR" --title "$TITLE")
if [ -n "$REFERENCE" ]; then args+=(--reference "$REFERENCE"); fi
"$PYTHON" "$RAGDISTILL_ROOT/Milvus-Optimization/evaluation.py" "${args[@]}" "$@"
