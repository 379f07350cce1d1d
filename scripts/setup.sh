#!/usr/bin/env bash
# Create or reuse .venv and bring it to exactly the locked versions (locks/cpu.txt, or locks/cuda.txt where
# nvidia-smi lists a GPU): packages the lock does not name are removed, so a stale .venv comes back to what the
# suite passed with. Idempotent: when neither the lock nor this script changed since the last run it returns at
# once. Other scripts call it.
#   VENV=/path/to/venv   use another virtual environment (default: .venv in the repository)
#   PYTHON=python3.11    the interpreter that creates it (the locks are resolved for Python 3.11)
#   LOCK=/path/lock.txt  install this lock instead (scripts/test.sh --latest does)
#   RAGDISTILL_VARIANT, TORCH_CPU_WHEELS: see scripts/packages.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/packages.sh"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
LOCK="${LOCK:-$LOCK_DIR/$RAGDISTILL_VARIANT.txt}"
[ -f "$LOCK" ] || { echo "setup: no lock file $LOCK (bash scripts/lock.sh writes it)" >&2; exit 1; }

stamp_file="$VENV/.ragdistill-setup-stamp"
stamp="$(cat "$LOCK" "$ROOT/scripts/setup.sh" "$ROOT/scripts/packages.sh" | sha256sum | cut -c1-16)"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  exit 0
fi

echo "setup: bringing $VENV to $LOCK"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# uv installs the lock; the lock itself names uv's version, so the installer is pinned like everything else.
uv_requirement="$(grep -E '^uv==' "$LOCK" | cut -d' ' -f1)"
[ -n "$uv_requirement" ] || { echo "setup: $LOCK names no uv==VERSION" >&2; exit 1; }
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$uv_requirement"
# --compile-bytecode: every later Python process (each stage script, each test's subprocess) then reads compiled
# bytecode instead of compiling torch, transformers and sentence-transformers from source anew, which it does where
# PYTHONDONTWRITEBYTECODE is set (CI images, containers) or site-packages is read-only.
# shellcheck disable=SC2046  # package_sources gives separate arguments
"$VENV/bin/uv" pip sync --quiet --compile-bytecode --python "$VENV/bin/python" $(package_sources "$RAGDISTILL_VARIANT") "$LOCK"
# Make the shared package importable from the stage scripts without a build step.
site_packages="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$site_packages/ragdistill-repo.pth"
"$VENV/bin/python" -c "import torch, sentence_transformers, transformers, vllm, ray.data, ragdistill" \
  || { echo "setup: the installed packages do not import; see the error above" >&2; exit 1; }
echo "$stamp" > "$stamp_file"
echo "setup: done"
