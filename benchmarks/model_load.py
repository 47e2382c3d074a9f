"""Generator start-up: loading a packaged GGUF (de-quantised by transformers on every load) vs
loading the de-quantised weights ragkit caches after the first load.

For each model, in one process: a load with the cache turned off (the GGUF path every run paid
before), a load that writes the cache, and a load from it; then the ratio, each path's first
forward pass (start-up that a load could hide) and whether the cached model's logits are identical.
Uses a temporary cache folder, so nothing of yours is touched.

    python benchmarks/model_load.py                        # SmolLM2-135M and Gemma 3 270M
    python benchmarks/model_load.py --models smollm2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=["smollm2", "gemma3-270m"])
    args = parser.parse_args()

    import pandas as pd
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["RAGKIT_CACHE_DIR"] = tmp  # a fresh cache: nothing of yours is read or written
        for name in args.models:
            gguf, gguf_s = _timed_load(name, cached=False)
            gguf_forward = _first_forward(gguf)
            _, write_s = _timed_load(name, cached=True)
            second, cached_s = _timed_load(name, cached=True)
            cached_forward = _first_forward(second)
            tokens = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
            with torch.no_grad():
                same = torch.equal(gguf(tokens).logits, second(tokens).logits)
            size = sum(f.stat().st_size for f in Path(tmp).rglob("model.safetensors")) / 2**20
            rows.append(
                {
                    "model": name,
                    "GGUF load s": round(gguf_s, 2),
                    "first load + write s": round(write_s, 2),
                    "cached load s": round(cached_s, 2),
                    "speed-up": f"{gguf_s / cached_s:.0f}x",
                    "1st forward s (GGUF / cached)": f"{gguf_forward:.2f} / {cached_forward:.2f}",
                    "identical logits": same,
                    "cache MB (so far)": round(size),
                }
            )
    print(pd.DataFrame(rows).to_string(index=False))


def _first_forward(model: Any) -> float:
    """Seconds of the model's first 256-token forward pass (a lazily read model pays here)."""
    import torch

    tokens = torch.arange(256).unsqueeze(0) % 1000 + 10
    start = time.perf_counter()
    with torch.no_grad():
        model(tokens)
    return time.perf_counter() - start


def _timed_load(name: str, cached: bool) -> tuple[Any, float]:
    """Seconds to load ``name``'s weights (its tokenizer and config are loaded before the clock)."""
    from ragkit.config import build_component, expand_component

    os.environ["RAGKIT_GGUF_WEIGHT_CACHE"] = "1" if cached else "0"
    generator = build_component("generator", expand_component("generator", name, None, "generator")[0])
    generator._load_meta()
    start = time.perf_counter()
    model = generator._load_model()
    return model, time.perf_counter() - start


if __name__ == "__main__":
    main()
