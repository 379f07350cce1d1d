#!/usr/bin/env bash
# Benchmark this project's stages against the original approach, side by side on this machine; writes
# $OUTPUT_DIR/benchmark.md and benchmark.json. Extra arguments go to benchmarks/benchmark.py (see its --help), e.g.
#   bash benchmarks/benchmark.sh --quick
#   bash benchmarks/benchmark.sh --skip reranker-vllm,embedding
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"

OUTPUT_DIR="${OUTPUT_DIR:-$RAGDISTILL_ROOT/results/benchmark}"  # tables, JSON and the built teacher model
PAIRS="${PAIRS:-600}"                                          # WikiQA dev pairs for the reranker teacher paths

"$PYTHON" "$RAGDISTILL_ROOT/benchmarks/benchmark.py" \
  --output_dir "$OUTPUT_DIR" \
  --pairs "$PAIRS" \
  "$@"
