#!/usr/bin/env bash
# Sourced by setup.sh and lock.sh: which lock this machine installs, and where its packages come from.
#   RAGDISTILL_VARIANT=cpu|cuda   override the choice (default: cuda where nvidia-smi lists a GPU, else cpu)
#   TORCH_CPU_WHEELS=DIR_OR_URL   where the CPU build of torch (torch==X+cpu) is found (default: pip's find-links,
#                                 from PIP_FIND_LINKS or pip's configuration, else PyTorch's CPU wheel page)
LOCK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/locks"
# The ranges a lock is resolved from (human-edited); each variant adds its vLLM build, requirements-vllm-VARIANT.txt.
LOCK_INPUTS=(requirements.txt requirements-dev.txt requirements-export.txt requirements-ray.txt)
# Every lock targets this platform and Python: the servers the project runs on.
LOCK_TARGET=(--python-platform x86_64-manylinux_2_28 --python-version 3.11)
# torchvision/torchaudio/torchcodec come in as vLLM's dependencies but do not match this torch build and break
# `import vllm`; nothing here uses them, so no lock carries them.
LOCK_OMIT=(--no-emit-package torchvision --no-emit-package torchaudio --no-emit-package torchcodec)

if [ -z "${RAGDISTILL_VARIANT:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then RAGDISTILL_VARIANT=cuda
  else RAGDISTILL_VARIANT=cpu; fi
fi

# package_sources VARIANT: uv arguments naming where that variant's packages come from. PyPI's torch is the CUDA
# build; the CPU variant takes torch's CPU build (no CUDA libraries) from TORCH_CPU_WHEELS.
package_sources() {
  if [ "$1" = cpu ]; then
    local pip_links="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
    echo "--find-links ${TORCH_CPU_WHEELS:-${pip_links:-https://download.pytorch.org/whl/cpu/torch/}}"
  fi
}
