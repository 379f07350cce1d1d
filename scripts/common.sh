#!/usr/bin/env bash
# Sourced by every stage wrapper: finds the repository and the Python to run the stage scripts with.
#   PYTHON=/path/to/python   run with this interpreter (default: the repository's .venv if present, else python3)
RAGDISTILL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$RAGDISTILL_ROOT/.venv/bin/python" ]; then PYTHON="$RAGDISTILL_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
# The stage scripts import the shared package from the repository, installed or not.
export PYTHONPATH="$RAGDISTILL_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"
# A stage banner: a blank line, a rule and the title, so a reader finds where each stage begins in a long log.
banner() { printf '\n%s\n== %s\n%s\n' "$(printf '=%.0s' {1..100})" "$*" "$(printf '=%.0s' {1..100})"; }
