"""Local vs Ray on a quickstart-size sweep: wall time, Ray's overhead per unit, scaling efficiency.

Runs experiments/quickstart.yaml (SmolLM2; 50 HotpotQA questions x 7 configurations by default)
with fresh output, tracking and generation caches each time, sharing only the de-quantised
weights (so every run loads the model the same way):

  1. the local executor: one process, torch on every core;
  2. Ray, 1 worker of 1 CPU, on a local cluster the run starts (``--skip-one-worker`` skips it);
  3. Ray, 2 workers of 1 CPU each.

Each Ray run's predictions must equal the local run's (all but seconds and cache flags).

Ray's overhead per unit: on each worker, the time between finishing a unit and starting the next
(a worker always has its next unit queued, so this is Ray's own cost: returning the result,
dispatching and deserialising the next unit), median over units; the wait for each actor to
start is reported apart. Scaling efficiency = T(1 worker) / (2 x T(2 workers)).

    python benchmarks/executor.py [--questions 50] [--skip-one-worker] [--set generator=...]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent


def load(questions: int, root: Path, name: str, overrides: list[str]) -> Any:
    from ragkit.config import load_experiment

    run = root / name
    (run / "cache").mkdir(parents=True)
    (run / "cache" / "hf-gguf-meta").symlink_to(root / "weights" / "hf-gguf-meta")
    return load_experiment(
        ROOT / "experiments" / "quickstart.yaml",
        [
            f"dataset.sample={questions}",
            f"output_dir={run / 'runs'}",
            f"cache_dir={run / 'cache'}",
            f"tracking_uri=sqlite:///{run / 'mlflow.db'}",
            *overrides,
        ],
    )


def warm_weights(root: Path, overrides: list[str]) -> None:
    """Convert the generator's GGUF weights once, into the folder every run links to."""
    from ragkit.cache import Cache
    from ragkit.component import bind_cache
    from ragkit.config import build_component, load_experiment

    (root / "weights" / "hf-gguf-meta").mkdir(parents=True)
    experiment = load_experiment(ROOT / "experiments" / "quickstart.yaml", overrides)
    generator = build_component("generator", experiment.configurations[0].resolved["generator"])
    bind_cache(generator, Cache(root / "weights"))
    if hasattr(generator, "_load_model"):
        generator._load_model()


def timed(experiment: Any, executor: Any) -> tuple[float, list[Any]]:
    from ragkit.runner import run_experiment

    started = time.perf_counter()
    results = run_experiment(experiment, executor=executor)
    return time.perf_counter() - started, results


def identical(reference: list[Any], results: list[Any]) -> str:
    from ragkit.recording import comparable

    same = 0
    for a, b in zip(reference, results, strict=True):
        lines = [(r.run_dir / "predictions.jsonl").read_text().splitlines() for r in (a, b)]
        same += [comparable(json.loads(x)) for x in lines[0]] == [comparable(json.loads(x)) for x in lines[1]]
    return f"{same}/{len(reference)} configurations"


def overhead(units: list[dict[str, Any]]) -> dict[str, float]:
    """Per worker, the gap between finishing a unit and starting its next (each worker always
    has its next unit queued, so the gap is Ray's: return, dispatch, (de)serialisation), and
    the wait before a worker's first unit (the actor starting)."""
    by_worker: dict[str, list[dict[str, Any]]] = {}
    for u in sorted(units, key=lambda u: u["started"]):
        by_worker.setdefault(u["worker"], []).append(u)
    ended = {u["key"]: u["started"] + u["seconds"] for u in units}
    gaps, startup = [], []
    for runs in by_worker.values():
        startup.append(runs[0]["started"] - runs[0]["submitted"])
        for previous, unit in itertools.pairwise(runs):
            # ready: the worker is free and the retrieval the unit reads is done elsewhere
            ready = max([ended[previous["key"]], *(ended[k] for k in unit["after"] if k in ended)])
            gaps.append(unit["started"] - ready)
    generation = [u["seconds"] for u in units if not u["key"].startswith("retrieve:")]
    return {
        "overhead_median_s": statistics.median(gaps) if gaps else float("nan"),
        "overhead_p90_s": statistics.quantiles(gaps, n=10)[-1] if len(gaps) > 1 else float("nan"),
        "actor_start_s": statistics.median(startup),
        "unit_median_s": statistics.median(generation),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--skip-one-worker", action="store_true")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override a field")
    args = parser.parse_args()

    from ragkit.executors.local import LocalExecutor
    from ragkit.executors.ray import RayExecutor
    from ragkit.process import configure_process

    configure_process()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ragkit-executor-bench-") as tmp:
        root = Path(tmp)
        warm_weights(root, args.overrides)
        local_s, reference = timed(load(args.questions, root, "local", args.overrides), LocalExecutor())
        units = 0
        rows.append({"run": "local (1 process, 2 torch threads)", "wall s": local_s})
        runs = [] if args.skip_one_worker else [1]
        stats: dict[int, dict[str, float]] = {}
        for workers in [*runs, 2]:
            executor = RayExecutor(workers=workers, num_cpus=1)
            seconds, results = timed(load(args.questions, root, f"ray{workers}", args.overrides), executor)
            stats[workers] = overhead(executor.units_)
            units = len(executor.units_)
            rows.append(
                {
                    "run": f"ray, {workers} worker{'s' * (workers > 1)} x 1 CPU",
                    "wall s": seconds,
                    "same predictions as local": identical(reference, results),
                    **{k: round(v, 3) for k, v in stats[workers].items()},
                }
            )
    import pandas as pd

    frame = pd.DataFrame(rows)
    frame["wall s"] = frame["wall s"].round(1)
    print(f"quickstart sweep: {args.questions} questions x 7 configurations, {units} units per Ray run")
    print(frame.to_string(index=False))
    two = stats[2]
    share = two["overhead_median_s"] / two["unit_median_s"]
    print(
        f"Ray overhead per unit (2 workers): median {two['overhead_median_s'] * 1000:.0f} ms ="
        f" {share:.2%} of a median generation unit ({two['unit_median_s']:.1f} s); target < 5%"
    )
    if 1 in stats:
        one, both = (r["wall s"] for r in rows[1:3])
        print(
            f"scaling efficiency T(1) / (2 x T(2)) = {one / (2 * both):.2f};"
            f" T(local) / T(2) = {local_s / both:.2f}"
        )


if __name__ == "__main__":
    main()
