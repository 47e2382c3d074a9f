"""Does a sweep pay for retrieval once? Does a re-run of a finished sweep generate anything?

Runs a 2-retriever x 4-k RAG sweep (BM25 and dense MiniLM, k in 1, 2, 4, 8) on HotpotQA with a
fresh cache and measures the seconds spent inside the retrievers, against the same retrievers
running only their largest configuration (k=8) with another fresh cache. Target: sweep <= 1.3x.
Then it re-runs the finished sweep and counts generator calls and retriever calls (target: 0).

The generator is the scripted one by default (retrieval is what is measured; generation would
only add noise); ``--generator smollm2`` uses the real model.

    python benchmarks/sweep_cache.py [--questions 100] [--generator smollm2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd

from ragkit.cache import Cache
from ragkit.config import load_experiment
from ragkit.runner import prepare, run_experiment


def experiment(questions: int, ks: list[int], generator: str, root: Path) -> dict:
    gen = {"type": "scripted", "default": "yes"} if generator == "scripted" else generator
    return {
        "name": "sweep-cache-bench",
        "dataset": {"use": "hotpotqa-distractor", "sample": questions, "partition": "eval"},
        "generator": gen,
        "arms": [{"strategy": "rag", "retriever": ["bm25", "dense-minilm"], "k": ks}],
        "output_dir": str(root / "runs"),
        "tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
    }


def timed_run(spec: dict, cache_dir: Path) -> tuple[dict[str, float], dict[str, int], int]:
    """Run every configuration; seconds and calls inside each inner retriever, generator calls."""
    loaded = load_experiment(spec)
    prepared = prepare(loaded, cache=Cache(cache_dir))  # every stage caches there (embeddings too)
    seconds: dict[str, float] = {}
    for wrapped in {id(r): r for r in prepared.retrievers}.values():
        inner = wrapped.inner
        name = inner.registry_name + ("" if inner.registry_name != "dense" else "-minilm")
        original = inner.retrieve

        def timed(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                seconds[_name] = seconds.get(_name, 0.0) + time.perf_counter() - start

        inner.retrieve = timed
        seconds.setdefault(name, 0.0)
    run_experiment(loaded, prepared=prepared)
    calls = {}
    for r in {id(r): r for r in prepared.retrievers}.values():
        key = r.inner.registry_name + ("" if r.inner.registry_name != "dense" else "-minilm")
        calls[key] = calls.get(key, 0) + r.calls_
    generated = sum(g.generated_ for g in prepared.generators.values())
    return seconds, calls, generated


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=100)
    parser.add_argument("--generator", default="scripted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sweep_spec = experiment(args.questions, [1, 2, 4, 8], args.generator, root / "sweep")
        single_spec = experiment(args.questions, [8], args.generator, root / "single")
        # the largest configuration alone first, then the sweep, each with a cold cache; the dense
        # model load is paid inside both (first retrieve call), so it cancels out of the ratio
        single, _, _ = timed_run(single_spec, root / "cache-single")
        sweep, sweep_calls, sweep_generated = timed_run(sweep_spec, root / "cache-sweep")
        again, again_calls, again_generated = timed_run(sweep_spec, root / "cache-sweep")
    rows = []
    for name in sorted(sweep):
        rows.append(
            {
                "retriever": name,
                "largest config alone (s)": round(single[name], 2),
                "2x4 sweep, this retriever's 4 configs (s)": round(sweep[name], 2),
                "ratio": round(sweep[name] / single[name], 3) if single[name] else float("nan"),
                "target": "<= 1.3",
                "queries sent (sweep)": sweep_calls[name],
                "queries sent (re-run)": again_calls[name],
            }
        )
    total_single, total_sweep = sum(single.values()), sum(sweep.values())
    rows.append(
        {
            "retriever": "all",
            "largest config alone (s)": round(total_single, 2),
            "2x4 sweep, this retriever's 4 configs (s)": round(total_sweep, 2),
            "ratio": round(total_sweep / total_single, 3),
            "target": "<= 1.3",
            "queries sent (sweep)": sum(sweep_calls.values()),
            "queries sent (re-run)": sum(again_calls.values()),
        }
    )
    print(pd.DataFrame(rows).to_string(index=False))
    print(f"\nquestions: {args.questions}; generator: {args.generator}")
    print(
        f"generations in the sweep: {sweep_generated}; in the re-run of the finished sweep: {again_generated}"
    )
    print(f"re-run retrieval seconds: {sum(again.values()):.3f} (every result from the cache)")


if __name__ == "__main__":
    main()
