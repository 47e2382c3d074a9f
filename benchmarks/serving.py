"""The serving-cost model (ragkit.serving) against what this machine measures.

1. This machine as an accelerator: sustained float32 matmul FLOP/s (torch, 2048x2048) and memory
   bandwidth (copying a 512 MB tensor: read + write) -- the numbers behind ``gpus/cpu.yaml``.
2. SmolLM2-135M in float32: measured prefill seconds (one forward pass over T prompt tokens) and
   decode seconds (32 greedy steps from the KV cache) at T = 1k, 2k, 4k, next to the model's
   bounds on a hardware entry made of the numbers in 1. A bound is a roofline, so measured /
   bound >= 1; how far above 1 says how much of the peak the engine reaches.
3. The KV-cache and concurrency figures of the bundled GPUs for SmolLM2 and Gemma 3 270M at 4k.

    python benchmarks/serving.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from generation import matmul_gflops  # the same peak measurement as the throughput benchmark


def bandwidth_gb_s(megabytes: int = 512, seconds: float = 3.0) -> float:
    """Sustained copy bandwidth: each copy reads and writes the tensor once."""
    import torch

    a = torch.ones(megabytes * 1_000_000 // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        b.copy_(a)
        runs += 1
    return 2 * a.numel() * 4 * runs / (time.perf_counter() - started) / 1e9


def measure_model(lengths: list[int], new_tokens: int = 32) -> list[dict]:
    import torch

    from ragkit.generators.transformers import TransformersGenerator

    generator = TransformersGenerator(model="smollm2", dtype="float32", device="cpu")
    model = generator._load_model()
    rows = []
    for length in lengths:
        ids = torch.randint(100, 40_000, (1, length))
        with torch.inference_mode():
            model(ids[:, :64])  # warm-up
            started = time.perf_counter()
            out = model(ids, use_cache=True)
            prefill = time.perf_counter() - started
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
            started = time.perf_counter()
            for _ in range(new_tokens):
                step = model(token, past_key_values=cache, use_cache=True)
                cache, token = step.past_key_values, step.logits[:, -1:].argmax(-1)
            decode = time.perf_counter() - started
        rows.append({"tokens": length, "prefill s": prefill, "decode s": decode})
    return rows, generator.model_info()


def main() -> None:
    import pandas as pd

    from ragkit.serving import Hardware, format_bytes, load_hardware, serving

    peak, bandwidth = matmul_gflops(), bandwidth_gb_s()
    print(f"this machine: float32 matmul {peak:.1f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s")
    here = Hardware(
        name="this machine",
        memory_gb=24,
        bandwidth_gb_s=bandwidth,
        peak_tflops={"float32": peak / 1000},
        dtype="float32",
        source="measured",
    )
    measured, info = measure_model([1024, 2048, 4096])
    rows = []
    for m in measured:
        question = {"input": m["tokens"], "computed": m["tokens"], "output": 32, "calls": 1}
        bound = serving(info, here, [question])
        rows.append(
            {
                "prompt tokens": m["tokens"],
                "prefill s (measured)": round(m["prefill s"], 2),
                "prefill s ≥ (model)": round(bound.prefill_seconds, 2),
                "prefill ratio": round(m["prefill s"] / bound.prefill_seconds, 2),
                "decode s, 32 tokens (measured)": round(m["decode s"], 2),
                "decode s ≥ (model)": round(bound.decode_seconds, 3),
                "decode ratio": round(m["decode s"] / bound.decode_seconds, 1),
            }
        )
    print(pd.DataFrame(rows).to_string(index=False))

    from ragkit.generators.transformers import TransformersGenerator

    table = []
    for model in ("smollm2", "gemma3-270m"):
        model_info = TransformersGenerator(model=model).model_info()
        for gpu in ("h100", "h200", "a100", "l4", "cpu"):
            hardware = load_hardware(gpu)
            fig = serving(model_info, hardware, [{"input": 4096, "computed": 4096, "output": 32, "calls": 1}])
            table.append(
                {
                    "model": model,
                    "gpu": gpu,
                    "dtype": hardware.dtype,
                    "weights": format_bytes(fig.weights_bytes),
                    "KV/token": format_bytes(fig.kv_bytes_per_token),
                    "KV at 4k": format_bytes(fig.kv_bytes_per_question),
                    "max concurrent": fig.max_concurrency,
                    "prefill s ≥": f"{fig.prefill_seconds:.2g}",
                    "decode s ≥": f"{fig.decode_seconds:.2g}",
                    "q/s ≤": round(fig.questions_per_second, 1),
                }
            )
    print(pd.DataFrame(table).to_string(index=False))


if __name__ == "__main__":
    main()
