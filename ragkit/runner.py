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
from ragkit.budget import price_predictions
from ragkit.cache import Cache, get_cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.config import ConfigError, Configuration, Experiment, build_component, flatten
from ragkit.lengths import document_tokens
from ragkit.retrievers.base import Retriever
from ragkit.tracking import Tracker, check_reachable, questions_hash, resolve_tracking_uri
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
    """Load data and construct every component; errors name the file and field."""
    file = experiment.file
    cache = cache or get_cache(experiment.spec.cache_dir)
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
    generators: dict[str, Any] = {}
    strategies = []
    for index, c in enumerate(experiment.configurations):
        gkey = stable_hash(c.resolved["generator"])
        try:
            if gkey not in generators:
                generators[gkey] = CachedGenerator(
                    build_component("generator", c.resolved["generator"]), cache
                )
            strategies.append(build_component("strategy", c.resolved["strategy"]))
        except (TypeError, ValueError, ImportError) as exc:
            raise ConfigError(file, f"arms[{c.arm}]", f"configuration {index} ({c.name}): {exc}") from exc
    judge = None
    if experiment.configurations[0].resolved["evaluation"].get("judge"):
        judge = CachedGenerator(
            build_component("generator", experiment.configurations[0].resolved["evaluation"]["judge"]), cache
        )
    prepared = Prepared(experiment, datasets, strategies, generators, cache, judge)
    _share_retrieval(prepared)
    return prepared


def _share_retrieval(prepared: Prepared) -> None:
    """Wrap every retriever in a cache that retrieves once at the deepest k asked of it."""
    depth: dict[str, int] = {}
    for strategy in prepared.strategies:
        for name, value in vars(strategy).items():
            if isinstance(value, Retriever) and not name.endswith("_"):
                key = stable_hash(value.spec())
                wanted = (
                    strategy.retrieval_depth()
                    if hasattr(strategy, "retrieval_depth")
                    else getattr(strategy, "k", 0)
                )
                depth[key] = max(depth.get(key, 0), int(wanted or 0))
    for strategy in prepared.strategies:
        for name, value in list(vars(strategy).items()):
            if (
                isinstance(value, Retriever)
                and not isinstance(value, CachedRetriever)
                and not name.endswith("_")
            ):
                wrapped = CachedRetriever(value, prepared.cache, depth[stable_hash(value.spec())])
                setattr(strategy, name, wrapped)
                prepared.retrievers.append(wrapped)


# -- predictions on disk --------------------------------------------------------------------------
def read_predictions(path: Path) -> dict[str, Prediction]:
    """Finished predictions; a line cut by a kill is skipped (that question is redone)."""
    done: dict[str, Prediction] = {}
    if not path.exists():
        return done
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                prediction = Prediction.from_dict(json.loads(line))
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning(
                    "%s:%d: unreadable prediction (interrupted write?); it will be recomputed", path, number
                )
                continue
            done[prediction.example_id] = prediction
    return done


def append_predictions(path: Path, predictions: Sequence[Prediction]) -> None:
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as handle:  # a kill mid-write leaves a line without its newline:
            handle.seek(-1, os.SEEK_END)  # end it, so the next record is not glued onto it
            unterminated = handle.read(1) != b"\n"
        if unterminated:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write("\n")
    with open(path, "a", encoding="utf-8") as handle:
        for p in predictions:
            handle.write(json.dumps(p.to_dict(), ensure_ascii=False, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


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


# -- running -----------------------------------------------------------------------------------------
ProgressHook = Callable[[str, int, int], None]  # (configuration name, done, total)


# Numeric provenance every strategy may record (pruning compression, IterDRAG rounds, routing):
# copied into the per-question scores so summaries and MLflow metrics carry their means.
_SKIP_PROVENANCE = {
    "evidence_recall",
    "dropped_tokens",
    "gold_survived",
    "cached",
    "retrieval_seconds",
    "rerank_seconds",
    "prune_seconds",
}


def _with_extra_scores(scores: pd.DataFrame, examples: Sequence[Any], predictions: Sequence[Prediction]):
    from ragkit.longform import score_frame

    extra = score_frame(examples, predictions)
    if len(extra.columns) > 1:
        scores = scores.merge(extra, on="example_id", how="left")
    columns: dict[str, list[float]] = {}
    for i, p in enumerate(predictions):
        for key, value in p.provenance.items():
            if key in _SKIP_PROVENANCE or key in scores.columns:
                continue
            if isinstance(value, bool | int | float) or value is None:
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
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "config.yaml"
    if not config_file.exists():
        document = {"name": configuration.name, "config_hash": configuration.hash, **configuration.resolved}
        _write_atomic(config_file, lambda p: p.write_text(yaml.safe_dump(document, sort_keys=False)))
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
        predictions = strategy.run(chunk, generator, dataset.corpus)
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
    summary = summarize(scores)
    scores.insert(0, "answer", [p.answer for p in ordered])
    scores.insert(0, "question", [e.question for e in examples])
    scores.insert(2, "references", [" | ".join(e.answers) for e in examples])
    scores["config_hash"] = configuration.hash
    scores["config_name"] = configuration.name
    scores = parquet_safe(scores)
    _write_atomic(run_dir / "scores.parquet", lambda p: scores.to_parquet(p, index=False))
    summary_doc = {"name": configuration.name, "config_hash": configuration.hash, **summary}
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
) -> list[ConfigResult]:
    """Run (or resume) every configuration and log them to MLflow. Returns results in order."""
    uri = resolve_tracking_uri(experiment.spec.tracking_uri)
    check_reachable(uri)  # fail fast, before any data or model loads
    prepared = prepare(experiment, limit=limit)
    tracker = Tracker(uri, experiment.name, experiment.hash)
    logged = tracker.logged_children()
    output_dir = Path(experiment.spec.output_dir) / experiment.name
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
            dataset = prepared.datasets[stable_hash(result.configuration.resolved["dataset"])]
            qhash = questions_hash(e.id for e in dataset.examples)
            key = f"{result.configuration.hash}:{qhash}"
            if key in logged:
                result.run_id, logged_name = logged[key]
                if logged_name != result.configuration.name:
                    tracker.rename(result.run_id, result.configuration.name)
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
    _log_summary(tracker, experiment, table, results)
    tracker.finish()
    return results
