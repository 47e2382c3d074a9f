"""Prefill and decode throughput of each engine on the quickstart prompts, beside this machine's
measured matmul throughput (the physical limit).

Prompts: the full-context prompts (system, 10 HotpotQA paragraphs, question; ~1.5k tokens) of the
first ``--questions`` quickstart questions, the same for every engine, with SmolLM2-135M-Instruct
in float32. Engines: transformers at batch 1 and 16, vLLM's CPU build offline (``vllm.LLM``) and
served (``vllm serve``, through ragkit's ``openai`` generator). Prefix caching is off everywhere:
this measures raw compute (``benchmarks/prefix_reuse.py`` measures reuse).

Every engine runs in a fresh process: it starts (``start s``: load, and for vLLM the engine's
compile, cached under ~/.cache/vllm after the first), answers one real prompt as a warm-up, then
runs all prompts twice: with 1 output token (the prefill, plus one decode step) and with 32; prefill
tokens/s = prompt tokens / the first wall time, decode tokens/s = the extra output tokens / the
extra wall time ("below noise" when that extra time is under 10% of the first pass's: batched
engines decode many streams per step and prefill dominates these prompts). The same method for
every engine, so concurrent engines are not credited with overlapping per-request timings; with
prefix caching off the second pass recomputes every prompt. The server starts just before its
turn (an idle server's workers would share the CPUs with the other engines); its ``start s`` is
the time until it answered. Prefill's fraction of the matmul limit uses FLOPs per prompt token from
the model config (ragkit.budget.call_flops).

    python benchmarks/generation.py                               # transformers only
    python benchmarks/generation.py --engines transformers-1 transformers-16 vllm vllm-server
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _isolated import ROOT, run_isolated

ENGINES = ["transformers-1", "transformers-16", "vllm", "vllm-server"]


def requests(questions: int) -> list:
    """The quickstart's full-context prompts (counted with SmolLM2's tokenizer)."""
    from ragkit.config import build_component, load_experiment
    from ragkit.generators.base import GenerationRequest
    from ragkit.generators.transformers import TransformersGenerator
    from ragkit.strategies.base import Record
    from ragkit.strategies.full_context import FullContext

    experiment = load_experiment(ROOT / "experiments" / "quickstart.yaml")
    dataset = build_component("dataset", experiment.configurations[0].resolved["dataset"]).load()
    counter = TransformersGenerator(model="smollm2")
    strategy = FullContext()
    examples = dataset.examples[:questions]
    return [GenerationRequest(strategy._prepare(Record(e), counter, None)[0]) for e in examples]


def build(engine: str, port: int):
    if engine.startswith("transformers"):
        from ragkit.generators.transformers import TransformersGenerator

        batch = int(engine.split("-")[1])
        return TransformersGenerator(model="smollm2", batch_size=batch, prefix_reuse=False)
    if engine == "vllm":
        from ragkit.generators.vllm import VLLMGenerator

        return VLLMGenerator(model="smollm2", dtype="float32", kv_cache_gb=2, prefix_reuse=False)
    from ragkit.generators.openai import OpenAIGenerator

    return OpenAIGenerator(
        model="smollm2", base_url=f"http://127.0.0.1:{port}/v1", tokenizer="smollm2", concurrency=16,
        timeout=600, prefix_reuse=False,
    )  # fmt: skip


def measure(engine: str, max_new: int, questions: int, port: int) -> dict:
    """One engine in this process: start-up seconds, then a 1-token and a ``max_new``-token pass."""
    import copy

    from ragkit.generators.base import GenerationRequest

    prompts = requests(questions)
    started = time.perf_counter()
    gen = build(engine, port)
    gen.generate([GenerationRequest([{"role": "user", "content": "Hello"}], max_new_tokens=2)])  # load
    start_s = time.perf_counter() - started
    gen.generate([GenerationRequest(prompts[0].messages, max_new_tokens=2)])  # warm-up, a real length
    passes = {}
    for tokens in (1, max_new):
        batch = [copy.copy(request) for request in prompts]
        for request in batch:
            request.max_new_tokens = tokens
        started = time.perf_counter()
        outs = gen.generate(batch)
        passes[tokens] = {
            "input_tokens": sum(o.input_tokens for o in outs),
            "output_tokens": sum(o.output_tokens for o in outs),
            "wall_s": time.perf_counter() - started,
            "answers": [o.text for o in outs],
        }
    return {"start_s": start_s, "first": passes[1], "full": passes[max_new]}


def matmul_gflops(size: int = 2048, seconds: float = 3.0) -> float:
    """Sustained float32 matmul throughput of this machine with torch's default threads."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        torch.mm(a, b)
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def start_server(port: int) -> subprocess.Popen:
    """``scripts/serve_vllm_cpu.sh`` without prefix caching; returns once it answers."""
    import requests as http

    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"ragkit-vllm-serve-{port}.log"
    log = open(log_path, "w")  # noqa: SIM115 (the server writes to it after this returns)
    server = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "serve_vllm_cpu.sh"), "smollm2", str(port),
         "--no-enable-prefix-caching"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 600
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"error: the vLLM server exited ({server.returncode}); see {log.name}")
        try:
            if http.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).ok:
                return server
        except http.RequestException:
            pass
        time.sleep(2)
    os.killpg(server.pid, signal.SIGTERM)
    raise SystemExit(f"error: the vLLM server did not answer in 10 minutes; see {log.name}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=ENGINES[:2], choices=ENGINES)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--max-new", type=int, default=32)
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: ENGINE:MAX_NEW in this process
    args = parser.parse_args()
    if args.one:
        engine, max_new = args.one.split(":")
        print(json.dumps(measure(engine, int(max_new), args.questions, args.port)))
        return

    import pandas as pd

    from ragkit.budget import call_flops
    from ragkit.generators.transformers import TransformersGenerator

    peak = matmul_gflops()
    info = TransformersGenerator(model="smollm2").model_info()
    rows, answers = [], {}
    server, server_start_s = None, 0.0
    try:
        for engine in args.engines:
            if engine == "vllm-server":
                started = time.perf_counter()
                server = start_server(args.port)
                server_start_s = time.perf_counter() - started
            runner = "vllm" if engine == "vllm" else "main"
            common = ["--questions", str(args.questions), "--port", str(args.port)]
            measured = run_isolated(runner, __file__, ["--one", f"{engine}:{args.max_new}", *common])
            first, full = measured["first"], measured["full"]
            prompts = first["input_tokens"]
            prefill_rate = prompts / first["wall_s"]
            # Decode by difference is only a measurement when the extra tokens took clearly more
            # time than the passes' noise: batched engines decode 16 streams at once, and their 31
            # extra steps can vanish inside the variation of a prefill-dominated pass.
            extra_s = full["wall_s"] - first["wall_s"]
            decode_rate: float | str = "below noise"
            if extra_s > 0.1 * first["wall_s"]:
                decode_rate = round((full["output_tokens"] - first["output_tokens"]) / extra_s, 1)
            per_token = call_flops(info, prompts // args.questions, 0) / (prompts // args.questions)
            answers[engine] = full["answers"]
            rows.append(
                {
                    "engine": engine,
                    "start s": round(measured["start_s"] + server_start_s * (engine == "vllm-server")),
                    "prompt tokens": prompts,
                    "output tokens": full["output_tokens"],
                    "wall s": round(full["wall_s"], 1),
                    "prefill tok/s": round(prefill_rate),
                    "decode tok/s": decode_rate,
                    "prefill GFLOP/s": round(prefill_rate * per_token / 1e9, 1),
                    "of matmul peak": f"{prefill_rate * per_token / 1e9 / peak:.0%}",
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: each engine's row
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
    print(f"{args.questions} quickstart full-context prompts, SmolLM2-135M float32, {os.cpu_count()} CPUs")
    print(f"float32 matmul (2048x2048, torch): {peak:.1f} GFLOP/s; {per_token / 1e9:.2f} GFLOP/prompt token")
    print(pd.DataFrame(rows).to_string(index=False))
    reference = "transformers-1" if "transformers-1" in answers else next(iter(answers))
    for engine, texts in answers.items():
        same = sum(a == b for a, b in zip(texts, answers[reference], strict=True))
        print(f"greedy answers identical to {reference}'s: {engine} {same}/{len(texts)}")


if __name__ == "__main__":
    main()
