"""Runs an experiment: plan -> execute -> record.

Order of work, so that mistakes cost nothing:
1. the YAML is validated and expanded (``ragkit.config``), the tracking store is checked;
2. every dataset loads and every component is constructed (weights stay unloaded): a missing
   file or bad parameter stops here, before any model loads;
3. **plan** (:mod:`ragkit.units`): the questions each configuration has not answered yet
   (``predictions.jsonl`` on disk) become units: shared retrieval first, then a configuration x a
   checkpoint batch;
4. **execute** (:mod:`ragkit.executors`): the experiment's executor runs the units, in this
   process (``local``) or over a Ray cluster (``ray``), and hands back each unit's predictions;
5. **record** (:mod:`ragkit.recording`), here only: predictions are appended per unit (flushed and
   fsynced, so a killed run resumes at the first unanswered question), a complete configuration
   is scored, written (``scores.parquet``, ``summary.json``) and logged as one MLflow child run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragkit.cache import Cache, default_cache_root, get_cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.component import bind_cache
from ragkit.config import ConfigError, Experiment, build_component
from ragkit.recording import (  # noqa: F401  (the runner's public names before the split)
    ConfigResult,
    ProgressHook,
    Recorder,
    append_predictions,
    log_summary,
    parquet_safe,
    read_predictions,
)
from ragkit.tracking import Tracker, check_reachable, resolve_tracking_uri
from ragkit.types import stable_hash
from ragkit.units import checkpoint_every, plan_units, retrieval_depths  # noqa: F401
from ragkit.worker import Worker


@dataclass
class Prepared:
    """An experiment with its data loaded and components built (weights not loaded yet)."""

    experiment: Experiment
    datasets: dict[str, Any]  # dataset hash -> LoadedDataset (limited)
    worker: Worker  # the driver's own worker: every configuration's components, built
    depths: dict[str, int]  # retriever spec hash -> the deepest k the sweep asks of it
    judge: Any = None
    strategies: list[Any] = field(default_factory=list)  # per configuration, from the worker

    @property
    def cache(self) -> Cache:
        return self.worker.cache

    @property
    def generators(self) -> dict[str, CachedGenerator]:
        return self.worker.generators

    @property
    def retrievers(self) -> list[CachedRetriever]:
        return self.worker.retrievers


def cache_root(experiment: Experiment) -> Path:
    """The one folder every cache of the experiment lives in."""
    return Path(experiment.spec.cache_dir or default_cache_root()).resolve()


def prepare(experiment: Experiment, *, limit: int | None = None, cache: Cache | None = None) -> Prepared:
    """Load data and construct every component; errors name the file and field."""
    file = experiment.file
    cache = cache or get_cache(cache_root(experiment))
    limit = limit or experiment.spec.limit
    datasets: dict[str, Any] = {}
    for c in experiment.configurations:
        key = stable_hash(c.resolved["dataset"])
        if key in datasets:
            continue
        try:
            loaded = build_component("dataset", c.resolved["dataset"]).load()
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ConfigError(file, "dataset", f"cannot load dataset: {exc}") from exc
        if not loaded.examples:
            raise ConfigError(
                file, "dataset", "the dataset selection has no questions (check filters and sample)"
            )
        if limit is not None:
            loaded.examples = loaded.examples[:limit]
        datasets[key] = loaded
    worker = Worker(datasets, cache)
    built = []
    for index, c in enumerate(experiment.configurations):
        try:
            worker.generator(c.resolved["generator"])
            built.append(build_component("strategy", c.resolved["strategy"]))
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(file, f"arms[{c.arm}]", f"configuration {index} ({c.name}): {exc}") from exc
    depths = retrieval_depths(built)
    strategies = [
        worker.adopt(c.hash, s, depths) for c, s in zip(experiment.configurations, built, strict=True)
    ]
    judge = None
    if experiment.configurations[0].resolved["evaluation"].get("judge"):
        inner = build_component("generator", experiment.configurations[0].resolved["evaluation"]["judge"])
        bind_cache(inner, cache)
        judge = CachedGenerator(inner, cache)
    return Prepared(experiment, datasets, worker, depths, judge, strategies)


def plan(prepared: Prepared, todo: dict[int, list[str]]) -> list[Any]:
    """The units that answer ``todo`` (configuration index -> unanswered question ids)."""
    experiment = prepared.experiment
    return plan_units(
        experiment.configurations,
        todo,
        strategies=prepared.strategies,
        generators=prepared.generators,
        depths=prepared.depths,
        batch_size=experiment.spec.batch_size,
        cache_root=str(prepared.cache.root),
    )


def run_experiment(
    experiment: Experiment,
    *,
    limit: int | None = None,
    progress: ProgressHook | None = None,
    only: Sequence[int] | None = None,
    executor: Any = None,
    prepared: Prepared | None = None,
) -> list[ConfigResult]:
    """Run (or resume) every configuration and log them to MLflow. Returns results in order.
    ``executor``: an executor instance (default: the one the experiment names, ``local``);
    ``prepared``: the experiment already prepared (benchmarks that instrument its components)."""
    uri = resolve_tracking_uri(experiment.spec.tracking_uri)
    check_reachable(uri)  # fail fast, before any data or model loads
    if executor is None:
        executor = build_component("executor", experiment.executor)
    executor.check(experiment.file)
    prepared = prepared or prepare(experiment, limit=limit)
    tracker = Tracker(uri, experiment.name, experiment.hash)
    output_dir = Path(experiment.spec.output_dir) / experiment.name
    started = time.perf_counter()
    indices = list(only) if only is not None else range(len(experiment.configurations))
    tracing = contextlib.ExitStack()
    if experiment.spec.tracking.trace_limit() != 0:
        from ragkit.traces import tracking_uri

        tracing.enter_context(tracking_uri(uri))  # one tracer for every configuration's traces
    try:
        recorder = Recorder(
            prepared, output_dir=output_dir, tracker=tracker, indices=indices, progress=progress
        )
        units = plan(prepared, recorder.todo())
        recorder.begin(units)
        executor.execute(units, prepared, recorder)
        results = recorder.results()
    except BaseException:
        tracker.finish("KILLED")
        raise
    finally:
        tracing.close()
    from ragkit.report import results_frame

    table = results_frame(results)
    tracker.log_parent(
        params={"n_configurations": len(experiment.configurations), "experiment_file": str(experiment.file)},
        artifacts=[],
        texts={
            "experiment.yaml": yaml.safe_dump(experiment.raw, sort_keys=False),
            "results.csv": table.to_csv(index=False),
            "wall_seconds.txt": f"{time.perf_counter() - started:.1f}\n",
        },
    )
    log_summary(tracker, experiment, table, results)
    tracker.finish()
    return results
