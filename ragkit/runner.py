"""Runs an experiment: validate, load data, plan -> execute -> record, resume.

Order of work, so that mistakes cost nothing:
1. the YAML is validated and expanded (``ragkit.config``); the tracking store, the output and
   cache folders and the executor are checked; the experiment's run lock is taken;
2. every component is constructed and checked and every dataset loads (weights stay unloaded):
   a missing file or bad parameter stops here, before any model loads;
3. **plan** (:mod:`ragkit.units`): the questions each configuration has not answered yet
   (``predictions.jsonl`` on disk) become units: shared retrieval first, then a configuration x a
   checkpoint batch;
4. **execute** (:mod:`ragkit.executors`): the experiment's executor runs the units, in this
   process (``local``) or over a Ray cluster (``ray``), and hands back each unit's predictions;
5. **record** (:mod:`ragkit.recording`), here only: predictions are priced and appended per unit
   (flushed and fsynced, so a killed run resumes at the first unanswered question); a complete
   configuration is scored, written (``scores.parquet``, ``summary.json``) and logged as one MLflow
   child run; a configuration already logged for the same questions is not logged twice.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ragkit.cache import Cache, default_cache_dir, get_cache
from ragkit.cached import CachedRetriever
from ragkit.component import Component
from ragkit.config import ConfigError, Experiment, build_component
from ragkit.predictions_file import append_predictions, read_predictions  # noqa: F401
from ragkit.preflight import check_tracking_store, check_writable_folder
from ragkit.recording import (  # noqa: F401  (the runner's public names before the split)
    ConfigResult,
    ProgressHook,
    Recorder,
    log_summary,
    parquet_safe,
    write_config_file,
)
from ragkit.run_lock import experiment_lock
from ragkit.security import redact
from ragkit.tracking import resolve_tracking_uri
from ragkit.types import stable_hash
from ragkit.units import checkpoint_every, documents_together, plan_units, retrieval_depths  # noqa: F401
from ragkit.worker import UnitBudgetError, Worker, build_generator


@dataclass
class Prepared:
    """An experiment with its data loaded and components built (weights not loaded yet)."""

    experiment: Experiment
    datasets: dict[str, Any]  # dataset hash -> LoadedDataset (limited)
    strategies: list[Any]  # per configuration
    generators: dict[str, Any]  # generator hash -> CachedGenerator
    cache: Cache
    judge: Any = None
    worker: Worker | None = None  # the driver's own worker: it holds every component above
    depths: dict[str, int] = field(default_factory=dict)  # retriever spec hash -> the sweep's deepest k

    @property
    def retrievers(self) -> list[CachedRetriever]:
        return self.worker.retrievers if self.worker is not None else []


def cache_root(experiment: Experiment) -> Path:
    """The one folder every cache of the experiment lives in."""
    return Path(experiment.spec.cache_dir or default_cache_dir()).resolve()


def prepare(experiment: Experiment, *, limit: int | None = None, cache: Cache | None = None) -> Prepared:
    """Construct and check every component, then load data; errors name the file and field.
    Components first: their checks (a model path, a device) are instant, loading data is not.
    Every strategy's retrieval settings then share one retrieval cache per retriever."""
    cache = cache or get_cache(cache_root(experiment))
    generators, strategies, judge = build_components(experiment, cache)
    datasets = load_datasets(experiment, limit=limit)
    worker = Worker(datasets, cache, generators)
    depths = retrieval_depths(strategies)
    for c, strategy in zip(experiment.configurations, strategies, strict=True):
        worker.adopt(c.hash, strategy, depths)
    return Prepared(experiment, datasets, strategies, generators, cache, judge, worker, depths)


def build_components(experiment: Experiment, cache: Cache) -> tuple[dict[str, Any], list[Any], Any]:
    """Generators (by hash, handed ``cache`` and wrapped in the generation cache), one strategy per
    configuration and the judge, each checked (:meth:`Component.check`); no weights load."""
    file = experiment.file
    generators: dict[str, Any] = {}
    strategies = []
    for index, c in enumerate(experiment.configurations):
        gkey = stable_hash(c.resolved["generator"])
        try:
            if gkey not in generators:
                generators[gkey] = build_generator(c.resolved["generator"], cache)
                check_components(generators[gkey].inner, file, "generator")
            strategy = build_component("strategy", c.resolved["strategy"])
        except ConfigError:
            raise
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(file, f"arms[{c.arm}]", f"configuration {index} ({c.name}): {exc}") from exc
        arms = experiment.spec.arms
        check_components(strategy, file, f"arms[{c.arm}]", arms[c.arm] if c.arm < len(arms) else None)
        strategies.append(strategy)
    judge = None
    if experiment.configurations[0].resolved["evaluation"].get("judge"):
        judge = build_generator(experiment.configurations[0].resolved["evaluation"]["judge"], cache)
        check_components(judge.inner, file, "evaluation.judge")
    return generators, strategies, judge


def load_datasets(experiment: Experiment, *, limit: int | None = None) -> dict[str, Any]:
    """Every dataset of the experiment (by hash), limited to ``limit`` questions, checked."""
    file = experiment.file
    limit = limit or experiment.spec.limit
    datasets: dict[str, Any] = {}
    for c in experiment.configurations:
        key = stable_hash(c.resolved["dataset"])
        if key in datasets:
            continue
        try:
            loader = build_component("dataset", c.resolved["dataset"])
            check_components(loader, file, "dataset")
            loaded = loader.load()
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise ConfigError(file, "dataset", f"cannot load dataset: {exc}") from exc
        if not loaded.examples:
            raise ConfigError(
                file, "dataset", "the dataset selection has no questions (check filters and sample)"
            )
        check_examples(loaded, file)
        if limit is not None:
            loaded.examples = loaded.examples[:limit]
        datasets[key] = loaded
    return datasets


def preflight(experiment: Experiment) -> tuple[str, Path]:
    """Everything about the environment a run needs, checked before any data or model loads: the
    tracking store, the output and cache folders. Returns the tracking URI and the runs folder."""
    uri = resolve_tracking_uri(experiment.spec.tracking_uri)
    check_tracking_store(uri, experiment.file)
    output_dir = check_writable_folder(experiment.spec.output_dir, experiment.file, "output_dir")
    check_writable_folder(experiment.spec.cache_dir or default_cache_dir(), experiment.file, "cache_dir")
    return uri, output_dir / experiment.name


def check_examples(loaded: Any, file: Any) -> None:
    """What every loader's data must satisfy for scores to mean anything, whichever loader read it:
    an empty reference answer is "contained" in every answer; a question without documents (and
    no shared corpus) has nothing to retrieve from."""
    empty = [e.id for e in loaded.examples if any(not str(a).strip() for a in e.answers)]
    if empty:
        raise ConfigError(
            file, "dataset", f"{len(empty)} question(s) have an empty reference answer (e.g. {empty[0]!r})"
        )
    if loaded.corpus is None:
        bare = [e.id for e in loaded.examples if not e.documents]
        if bare:
            raise ConfigError(
                file,
                "dataset",
                f"{len(bare)} question(s) have no documents and the dataset has no shared corpus"
                f" (e.g. {bare[0]!r})",
            )


def check_components(component: Any, file: Any, path: str, written: Any = None) -> None:
    """``component.check()`` and that of every component inside it (a strategy's retriever, a
    haystack's base dataset), as a ConfigError naming the field as the file wrote it (``written``:
    the file's mapping at this level; a settings group's fields may sit beside it, flat)."""
    from ragkit.component import Settings

    written = written if isinstance(written, dict) else {}
    for name, value in vars(component).items():
        if isinstance(value, Component) and not name.endswith("_"):
            if isinstance(value, Settings) and name not in written:  # written flat, in the owner
                check_components(value, file, path, written)
            else:
                check_components(value, file, f"{path}.{name}", written.get(name))
    if isinstance(component, Component):
        try:
            component.check()
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            raise ConfigError(file, path, str(exc)) from None


def build_executor(experiment: Experiment) -> Any:
    """The experiment's executor (``executor:`` in the YAML, ``--executor``), checked before any
    data or model loads."""
    executor = build_component("executor", experiment.executor)
    executor.check(experiment.file)
    return executor


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
    wait: bool = False,
    executor: Any = None,
    prepared: Prepared | None = None,
) -> list[ConfigResult]:
    """Run (or resume) every configuration and log them to MLflow. Returns results in order.
    ``wait``: when another run of this experiment holds its lock, wait for it instead of refusing;
    ``executor``: an executor instance (default: the one the experiment names, ``local``);
    ``prepared``: the experiment already prepared (benchmarks that instrument its components)."""
    if executor is None:
        executor = build_executor(experiment)
    else:
        executor.check(experiment.file)
    uri, output_dir = preflight(experiment)  # fail fast: the store, the folders
    with experiment_lock(output_dir, experiment.name, wait=wait):
        return _run_locked(
            experiment,
            uri,
            output_dir,
            limit=limit,
            progress=progress,
            only=only,
            executor=executor,
            prepared=prepared,
        )


def _run_locked(
    experiment: Experiment,
    uri: str,
    output_dir: Path,
    *,
    limit: int | None,
    progress: ProgressHook | None,
    only: Sequence[int] | None,
    executor: Any,
    prepared: Prepared | None,
) -> list[ConfigResult]:
    prepared = prepared or prepare(experiment, limit=limit)
    started = time.perf_counter()
    indices = list(only) if only is not None else range(len(experiment.configurations))
    recorder = Recorder(prepared, output_dir=output_dir, uri=uri, indices=indices, progress=progress)
    tracing = contextlib.ExitStack()
    if experiment.spec.tracking.trace_limit() != 0:
        from ragkit.traces import tracking_uri

        tracing.enter_context(tracking_uri(uri))  # one tracer for every configuration's traces
    try:
        units = plan(prepared, recorder.todo())
        recorder.begin(units)
        try:
            executor.execute(units, prepared, recorder)
        except UnitBudgetError as exc:
            raise _budget_error(experiment, prepared, exc) from None
        results = recorder.results()
    except BaseException:
        if recorder.tracker is not None:
            recorder.tracker.finish("KILLED")
        raise
    finally:
        tracing.close()
    tracker = recorder.opened()
    from ragkit.report import results_frame

    table = results_frame(results)
    tracker.log_parent(
        params={"n_configurations": len(experiment.configurations), "experiment_file": str(experiment.file)},
        artifacts=[],
        texts={
            "experiment.yaml": yaml.safe_dump(redact(experiment.raw), sort_keys=False),
            "results.csv": table.to_csv(index=False),
            "wall_seconds.txt": f"{time.perf_counter() - started:.1f}\n",
        },
    )
    log_summary(tracker, experiment, table, results)
    tracker.finish()
    return results


def _budget_error(experiment: Experiment, prepared: Prepared, exc: UnitBudgetError) -> ConfigError:
    """A prompt larger than its limit, as a configuration error naming the field that set the
    limit: the arm's budget, else the generator's window. (From a cluster the error arrives
    wrapped by Ray; its ``cause`` is the worker's own.)"""
    exc = getattr(exc, "cause", None) or exc
    configuration = experiment.configurations[exc.config_index]
    budget = getattr(prepared.strategies[exc.config_index], "budget", None)
    where = f"arms[{configuration.arm}].budget" if budget is not None else "generator.context_window"
    return ConfigError(experiment.file, where, f"configuration {configuration.name!r}: {exc}")
