"""Executes an experiment: validate, load data, run every configuration with caches, resume.

Order of work, so that mistakes cost nothing:
1. the YAML is validated and expanded (``ragkit.config``), the tracking store is checked;
2. every dataset loads and every component is constructed (weights stay unloaded) — a missing
   file or bad parameter stops here, before any model loads;
3. configurations run one after another; each appends finished predictions to
   ``runs/<experiment>/<config_hash>/predictions.jsonl`` batch by batch (flushed and fsynced), so a
   killed run resumes at the first unanswered question and loses at most one batch;
4. a finished configuration is scored, written (``scores.parquet``, ``summary.json``) and logged
   as an MLflow child run; a configuration already logged for the same questions is not logged
   twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ragkit.breakdown import LENGTH_COLUMN
from ragkit.budget import BudgetError, price_predictions
from ragkit.cache import Cache, default_cache_dir, get_cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.component import Component
from ragkit.config import ConfigError, Configuration, Experiment, build_component, flatten
from ragkit.lengths import document_tokens
from ragkit.predictions_file import append_predictions, read_predictions
from ragkit.preflight import check_tracking_store, check_writable_folder
from ragkit.run_lock import experiment_lock, store_lock
from ragkit.security import redact
from ragkit.tracking import Tracker, questions_hash, resolve_tracking_uri
from ragkit.types import Prediction, stable_hash

log = logging.getLogger(__name__)


@dataclass
class ConfigResult:
    configuration: Configuration
    run_dir: Path
    summary: dict[str, float]
    scores: pd.DataFrame
    generated: int = 0  # questions answered in this invocation (0: everything came from disk)
    run_id: str | None = None


@dataclass
class Prepared:
    """An experiment with its data loaded and components built (weights not loaded yet)."""

    experiment: Experiment
    datasets: dict[str, Any]  # dataset hash -> LoadedDataset (limited)
    strategies: list[Any]
    generators: dict[str, Any]  # generator hash -> CachedGenerator
    cache: Cache
    judge: Any = None
    retrievers: list[CachedRetriever] = field(default_factory=list)


def prepare(experiment: Experiment, *, limit: int | None = None, cache: Cache | None = None) -> Prepared:
    """Construct and check every component, then load data; errors name the file and field.
    Components first: their checks (a model path, a device) are instant, loading data is not."""
    cache = cache or get_cache(experiment.spec.cache_dir)
    generators, strategies, judge = build_components(experiment, cache)
    datasets = load_datasets(experiment, limit=limit)
    prepared = Prepared(experiment, datasets, strategies, generators, cache, judge)
    _share_retrieval(prepared)
    return prepared


def build_components(experiment: Experiment, cache: Cache) -> tuple[dict[str, Any], list[Any], Any]:
    """Generators (by hash, wrapped in the generation cache), one strategy per configuration and
    the judge, each checked (:meth:`Component.check`); no weights load."""
    file = experiment.file
    generators: dict[str, Any] = {}
    strategies = []
    for index, c in enumerate(experiment.configurations):
        gkey = stable_hash(c.resolved["generator"])
        try:
            if gkey not in generators:
                built = build_component("generator", c.resolved["generator"])
                check_components(built, file, "generator")
                generators[gkey] = CachedGenerator(built, cache)
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
        built = build_component("generator", experiment.configurations[0].resolved["evaluation"]["judge"])
        check_components(built, file, "evaluation.judge")
        judge = CachedGenerator(built, cache)
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


def _share_retrieval(prepared: Prepared) -> None:
    """Wrap the retriever of every retrieval setting the strategies declare in a cache that
    retrieves once at the deepest k any configuration asks of it."""
    settings = [r for strategy in prepared.strategies for r in strategy.retrievers()]
    depth: dict[str, int] = {}
    for setting in settings:
        key = stable_hash(setting.retriever.spec())
        depth[key] = max(depth.get(key, 0), setting.depth())
    for setting in settings:
        if not isinstance(setting.retriever, CachedRetriever):
            key = stable_hash(setting.retriever.spec())
            setting.retriever = CachedRetriever(setting.retriever, prepared.cache, depth[key])
            prepared.retrievers.append(setting.retriever)


def documents_together(examples: Sequence[Any]) -> list[Any]:
    """``examples`` with those over the same documents next to each other (in order of first
    appearance; results keep the dataset's order). A document's questions then reach the generator
    together, in one call or consecutive ones, so an engine computes their shared prompt prefix
    (system text and documents, before the question) once. Questions without their own documents
    (a shared corpus) keep their order."""
    groups: dict[Any, list[Any]] = {}
    for i, example in enumerate(examples):
        key = tuple(d.id for d in example.documents) or ("#", i)
        groups.setdefault(key, []).append(example)
    return [e for group in groups.values() for e in group]


def checkpoint_every(batch_size: int, generator: Any) -> int:
    """Questions per runner batch (predictions reach disk after each): the experiment's
    ``batch_size``, but never more than the generator batches itself. A generator that takes one
    32k-token prompt at a time would otherwise run 16 questions (an hour on a CPU) before the
    first write, and a kill would lose them all."""
    own = getattr(generator, "batch_size", None)
    size = max(1, batch_size)
    return min(size, own) if isinstance(own, int) and own >= 1 else size


def parquet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing Python types (a dataset's meta field that is 3 in one record and "1,2" in
    another, as LaRA's ``context_order``) cannot be written by Arrow: they become strings."""
    import pyarrow as pa

    out = frame.copy()
    for column in out.columns:
        if out[column].dtype != object:
            continue
        try:
            pa.array(out[column], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            out[column] = out[column].map(lambda v: None if v is None else str(v))
    return out


def _write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
    tmp = path.with_name(f"tmp_{path.name}")
    writer(tmp)
    os.replace(tmp, path)


def write_config_file(path: Path, configuration: Configuration) -> None:
    """The resolved configuration beside its predictions (credentials in URLs redacted); written
    when missing and rewritten when it does not read back as this configuration (a damaged file)."""
    document = {"name": configuration.name, "config_hash": configuration.hash, **configuration.resolved}
    document = redact(document)
    try:
        existing = yaml.safe_load(path.read_text(encoding="utf-8"))
        if isinstance(existing, dict) and existing.get("config_hash") == configuration.hash:
            return
        if path.exists():
            log.warning("%s is damaged or belongs to another configuration; rewriting it", path)
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        log.warning("%s is damaged; rewriting it", path)
    _write_atomic(path, lambda p: p.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8"))


# -- running -----------------------------------------------------------------------------------------
ProgressHook = Callable[[str, int, int], None]  # (configuration name, done, total)


def _with_extra_scores(scores: pd.DataFrame, examples: Sequence[Any], predictions: Sequence[Prediction]):
    from ragkit.longform import score_frame

    extra = score_frame(examples, predictions)
    if len(extra.columns) > 1:
        scores = scores.merge(extra, on="example_id", how="left")
    # A strategy's own per-question measures (pruning compression, IterDRAG rounds, routing) and
    # the context it showed become score columns, so summaries and MLflow metrics carry their means.
    columns: dict[str, list[float]] = {}
    for i, p in enumerate(predictions):
        values = {"context_tokens": p.provenance.context_tokens, **p.provenance.measures}
        for key, value in values.items():
            if key not in scores.columns:
                columns.setdefault(key, [float("nan")] * len(predictions))[i] = (
                    float("nan") if value is None else float(value)
                )
    for key, values in columns.items():
        if any(v == v for v in values):  # at least one non-NaN
            scores[key] = values
    return scores


def run_configuration(
    prepared: Prepared,
    index: int,
    *,
    output_dir: Path,
    progress: ProgressHook | None = None,
) -> ConfigResult:
    from ragkit.metrics import score, summarize

    experiment = prepared.experiment
    configuration = experiment.configurations[index]
    strategy = prepared.strategies[index]
    dataset = prepared.datasets[stable_hash(configuration.resolved["dataset"])]
    generator = prepared.generators[stable_hash(configuration.resolved["generator"])]
    run_dir = output_dir / configuration.hash
    legacy = output_dir / configuration.legacy_hash
    if not run_dir.exists() and legacy.is_dir():  # a folder named by the older key: keep its work
        os.replace(legacy, run_dir)
        (run_dir / "config.yaml").unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_config_file(run_dir / "config.yaml", configuration)
    predictions_path = run_dir / "predictions.jsonl"
    done = read_predictions(predictions_path)
    examples = dataset.examples
    todo = documents_together([e for e in examples if e.id not in done])
    batch = checkpoint_every(experiment.spec.batch_size, generator)
    generated = 0
    if progress:
        progress(configuration.name, len(examples) - len(todo), len(examples))
    for start in range(0, len(todo), batch):
        chunk = todo[start : start + batch]
        try:
            predictions = strategy.run(chunk, generator, dataset.corpus)
        except BudgetError as exc:
            budget = getattr(strategy, "budget", None)
            where = f"arms[{configuration.arm}].budget" if budget is not None else "generator.context_window"
            raise ConfigError(
                experiment.file, where, f"configuration {configuration.name!r}: {exc}"
            ) from None
        if len(predictions) != len(chunk):
            raise RuntimeError(
                f"{type(strategy).__name__} returned {len(predictions)} predictions for {len(chunk)}"
            )
        price_predictions(predictions, generator)
        append_predictions(predictions_path, predictions)
        done.update({p.example_id: p for p in predictions})
        generated += len(chunk)
        if progress:
            progress(configuration.name, len(examples) - len(todo) + start + len(chunk), len(examples))
    ordered = [done[e.id] for e in examples]
    scores = score(examples, ordered)
    scores = _with_extra_scores(scores, examples, ordered)
    scores[LENGTH_COLUMN] = document_tokens(examples, generator, dataset.corpus)  # for --by length
    if prepared.judge is not None:
        from ragkit.citation_judge import judge_citations
        from ragkit.judge import judge as run_judge
        from ragkit.summhay import judge_summaries

        # Answers graded against references, cited statements against their passages (when the
        # strategy asked for citations), summaries against the insights they should cover.
        for grade in (run_judge, judge_citations, judge_summaries):
            verdicts = grade(examples, ordered, prepared.judge, cache=prepared.cache)
            if len(verdicts) and len(verdicts.columns) > 1:
                scores = scores.merge(verdicts, on="example_id", how="left")
    summary = summarize(scores, seed=configuration.seed)
    scores.insert(0, "answer", [p.answer for p in ordered])
    scores.insert(0, "question", [e.question for e in examples])
    scores.insert(2, "references", [" | ".join(e.answers) for e in examples])
    scores["config_hash"] = configuration.hash
    scores["config_name"] = configuration.name
    scores = parquet_safe(scores)
    _write_atomic(run_dir / "scores.parquet", lambda p: scores.to_parquet(p, index=False))
    summary_doc = {
        "name": configuration.name,
        "config_hash": configuration.hash,
        "scoring_key": configuration.scoring_key,
        **summary,
    }
    _write_atomic(run_dir / "summary.json", lambda p: p.write_text(json.dumps(summary_doc, indent=2)))
    return ConfigResult(configuration, run_dir, summary, scores, generated)


def _log_traces(tracker: Tracker, result: ConfigResult, examples: Sequence[Any], limit: int | None) -> None:
    """The configuration's question traces (the first ``limit``); a tracing failure is reported,
    never fatal: the predictions and the run are already safe."""
    from ragkit.traces import log_traces

    if limit == 0 or result.run_id is None:
        return
    try:
        predictions = read_predictions(result.run_dir / "predictions.jsonl")
        rows = result.scores.set_index("example_id", drop=False)
        log_traces(
            tracker.uri,
            experiment_id=tracker.experiment_id,
            run_id=result.run_id,
            configuration=result.configuration.name,
            config_hash=result.configuration.hash,
            examples=examples,
            predictions=[predictions[e.id] for e in examples],
            scores=[rows.loc[e.id].to_dict() for e in examples],
            limit=limit,
        )
    except Exception as exc:  # any MLflow or store error
        log.warning("traces of %s were not logged to MLflow: %s", result.configuration.name, exc)


def _log_summary(
    tracker: Tracker, experiment: Experiment, table: pd.DataFrame, results: list[ConfigResult]
) -> None:
    """The parent run's summary tables, plots and curves (ragkit.dashboard); reported, never fatal."""
    from ragkit.dashboard import log_parent_summary

    try:
        scores = pd.concat([r.scores for r in results], ignore_index=True) if results else pd.DataFrame()
        log_parent_summary(
            tracker.client,
            tracker.parent_id,
            experiment=experiment.name,
            results=table,
            scores=scores,
            breakdown=experiment.spec.evaluation.breakdown,
        )
    except Exception as exc:  # a summary part that cannot be drawn
        log.warning("the MLflow summary of %s was not logged: %s", experiment.name, exc)


def run_experiment(
    experiment: Experiment,
    *,
    limit: int | None = None,
    progress: ProgressHook | None = None,
    only: Sequence[int] | None = None,
    wait: bool = False,
) -> list[ConfigResult]:
    """Run (or resume) every configuration and log them to MLflow. Returns results in order.
    ``wait``: when another run of this experiment holds its lock, wait for it instead of refusing."""
    uri, output_dir = preflight(experiment)  # fail fast: the store, the folders
    with experiment_lock(output_dir, experiment.name, wait=wait):
        return _run_locked(experiment, uri, output_dir, limit=limit, progress=progress, only=only)


def _run_locked(
    experiment: Experiment,
    uri: str,
    output_dir: Path,
    *,
    limit: int | None,
    progress: ProgressHook | None,
    only: Sequence[int] | None,
) -> list[ConfigResult]:
    prepared = prepare(experiment, limit=limit)
    # MLflow is opened when the first configuration has finished: a run that stops at its first
    # batch (a budget smaller than the prompt) leaves no parent run behind, and costs no store set-up
    tracker: Tracker | None = None
    logged: dict[str, tuple[str, str, str]] = {}

    def opened() -> Tracker:
        nonlocal tracker, logged
        if tracker is None:
            with store_lock(uri):
                tracker = Tracker(uri, experiment.name, experiment.hash)
            logged = tracker.logged_children()
        return tracker

    results = []
    started = time.perf_counter()
    indices = list(only) if only is not None else range(len(experiment.configurations))
    tracing = contextlib.ExitStack()
    if experiment.spec.tracking.trace_limit() != 0:
        from ragkit.traces import tracking_uri

        tracing.enter_context(tracking_uri(uri))  # one tracer for every configuration's traces
    try:
        for index in indices:
            result = run_configuration(prepared, index, output_dir=output_dir, progress=progress)
            tracker = opened()
            dataset = prepared.datasets[stable_hash(result.configuration.resolved["dataset"])]
            qhash = questions_hash(e.id for e in dataset.examples)
            key = f"{result.configuration.hash}:{qhash}"
            if key in logged:
                result.run_id, logged_name, scored_by = logged[key]
                if logged_name != result.configuration.name:
                    tracker.rename(result.run_id, result.configuration.name)
                if scored_by != result.configuration.scoring_key:  # re-scored: same run, new scores
                    tracker.update_scores(
                        result.run_id,
                        metrics=result.summary,
                        scoring_key=result.configuration.scoring_key,
                        artifacts=[result.run_dir / "scores.parquet", result.run_dir / "summary.json"],
                    )
            else:
                result.run_id = tracker.log_configuration(
                    name=result.configuration.name,
                    config_hash=result.configuration.hash,
                    questions_hash=qhash,
                    params=flatten(result.configuration.resolved),
                    metrics=result.summary,
                    tags={
                        "ragkit.dataset_revision": dataset.revision,
                        "ragkit.seed": str(experiment.spec.seed),
                        "ragkit.scoring_key": result.configuration.scoring_key,
                    },
                    artifacts=[
                        result.run_dir / "config.yaml",
                        result.run_dir / "scores.parquet",
                        result.run_dir / "summary.json",
                        result.run_dir / "predictions.jsonl",
                    ],
                )
                _log_traces(tracker, result, dataset.examples, experiment.spec.tracking.trace_limit())
            results.append(result)
    except BaseException:
        if tracker is not None:
            tracker.finish("KILLED")
        raise
    finally:
        tracing.close()
    tracker = opened()
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
    _log_summary(tracker, experiment, table, results)
    tracker.finish()
    return results
