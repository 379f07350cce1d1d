#!/usr/bin/env bash
# The test command: set up (or reuse) .venv at the locked versions, lint with ruff, run the test suite.
# Extra arguments go to pytest (after -n and --dist, so they may change them).
#   TEST_WORKERS=N   pytest-xdist workers (default 2); 0: no workers, the suite in one process
#   bash scripts/test.sh --latest [PYTEST_ARGS]   the same, in a throwaway venv resolved afresh from the ranges in
#                                                  requirements*.txt (not the lock): catches the next upstream release
#                                                  that breaks the project before a lock update takes it in
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
VENV="${VENV:-$ROOT/.venv}"
if [ "${1:-}" = "--latest" ]; then
  shift
  source "$ROOT/scripts/packages.sh"
  latest="$(mktemp -d -t ragdistill-latest.XXXXXX)"
  trap 'rm -rf "$latest"' EXIT
  UV="$VENV/bin/uv" bash "$ROOT/scripts/lock.sh" "$latest/locks"
  echo "test: the newest releases the ranges allow, against the lock:"
  # diff exits 1 where the locks differ: under pipefail only grep's status may decide whether anything is newer
  { diff "$LOCK_DIR/$RAGDISTILL_VARIANT.txt" "$latest/locks/$RAGDISTILL_VARIANT.txt" || true; } \
    | grep '^[<>] [A-Za-z]' || echo "  (none newer)"
  VENV="$latest/venv" LOCK="$latest/locks/$RAGDISTILL_VARIANT.txt" bash "$ROOT/scripts/setup.sh"
  VENV="$latest/venv"
fi
cd "$ROOT"
# Tests never reach a model hub: everything they load is built or bundled locally.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/ruff" check .
# Two workers (pytest-xdist), one per core of the 2-core build machine; each takes whole test modules (the largest
# first, xdist's order), so a module's fixtures are built once. TEST_WORKERS=0 runs the suite in this one process.
"$VENV/bin/python" -m pytest -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
