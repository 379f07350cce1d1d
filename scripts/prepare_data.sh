#!/usr/bin/env bash
# Fetch the MTEB reranking sets (or convert a BEIR folder) into data/<name>/<split>.jsonl, validated, with counts.
# Extra arguments go to scripts/prepare_data.py (see its --help), e.g.
#   bash scripts/prepare_data.sh --source hf --datasets askubuntudupquestions-reranking
#   bash scripts/prepare_data.sh --beir_dir /data/nfcorpus --retriever bm25
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

DATASETS="${DATASETS:-stackoverflowdupquestions-reranking,scidocs-reranking}"  # comma-separated MTEB set names
SOURCE="${SOURCE:-modelscope}"                    # modelscope (MTEB/<name>) or hf (mteb/<name>)
OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/data}" # writes $OUTPUT_DIR/<name>/<split>.jsonl

"$PYTHON" "$RAGDISTILL_ROOT/scripts/prepare_data.py" \
  --datasets "$DATASETS" \
  --source "$SOURCE" \
  --output_dir "$OUTPUT_DIR" \
  "$@"
