"""What do MLflow traces cost? The quickstart's wall time with traces off, sampled and all.

Runs the experiment once per ``tracking.traces`` mode, each into a fresh output folder and MLflow
store, all on one warm cache (run the experiment once before, or pass ``--warm-up``), so the runs
differ only in what is logged to MLflow. Generation comes from the cache, which makes each run short and
the ratio against it pessimistic; the overhead is also given against the quickstart's cold wall
time (``--cold-wall``, RESULTS.md's 12.8 min by default), the run a user waits for. Target: < 5%.

    RAGKIT_CACHE_DIR=/work/cache-shared python benchmarks/tracing.py [experiments/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import mlflow

from ragkit.config import load_experiment
from ragkit.runner import run_experiment


def run(file: str, mode: str, root: Path) -> tuple[float, int]:
    """Wall seconds of one run with ``tracking.traces = mode`` and the traces it logged."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = [f"tracking.traces={mode}", f"output_dir={root / 'runs'}", f"tracking_uri={uri}"]
    experiment = load_experiment(file, overrides)
    mlflow.MlflowClient(uri).search_experiments()  # create the store's tables before the clock
    started = time.perf_counter()
    run_experiment(experiment)
    seconds = time.perf_counter() - started
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment.name)
    traces = client.search_traces(locations=[found.experiment_id], max_results=5000)
    return seconds, len(traces)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", default="experiments/quickstart.yaml")
    parser.add_argument("--modes", nargs="+", default=["off", "25", "all"])
    parser.add_argument("--warm-up", action="store_true", help="fill the cache with an uncounted run first")
    parser.add_argument("--cold-wall", type=float, default=768.0, help="cold quickstart wall seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.warm_up:
            warm, _ = run(args.experiment, "off", Path(tmp) / "warm-up")
            print(f"warm-up (fills the cache, not counted): {warm:.1f} s")
        rows = [(mode, *run(args.experiment, mode, Path(tmp) / f"mode-{mode}")) for mode in args.modes]
    base = next((s for mode, s, _ in rows if mode == "off"), rows[0][1])
    print("| traces | traces logged | wall s (warm cache) | overhead s | vs warm run | vs cold quickstart |")
    print("| --- | --- | --- | --- | --- | --- |")
    for mode, seconds, traces in rows:
        extra = seconds - base
        print(
            f"| {mode} | {traces} | {seconds:.1f} | {extra:+.1f} | {extra / base:+.1%} |"
            f" {extra / args.cold_wall:+.1%} |"
        )


if __name__ == "__main__":
    main()
