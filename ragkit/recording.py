"""The record step: everything a run leaves behind is written here, by the driver alone.

Executors hand back :class:`~ragkit.units.UnitResult`s in any order, possibly twice (a retried
unit); the :class:`Recorder` prices each question's prediction and writes it once, in plan order,
to ``runs/<experiment>/<config_hash>/predictions.jsonl`` (one write and an fsync per unit, so a
killed run resumes at the first unanswered question), and when a configuration has every answer
it scores it (judges included), writes ``scores.parquet`` and ``summary.json`` and logs one MLflow
child run (not again for the same questions; re-scored predictions update the same run). Workers
never touch these files or the tracking store.

MLflow is opened when the first configuration finishes: a run that stops at its first batch (a
budget smaller than the prompt) leaves no parent run behind, and costs no store set-up.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ragkit.breakdown import LENGTH_COLUMN
from ragkit.budget import price_predictions
from ragkit.config import Configuration, flatten
from ragkit.lengths import document_tokens
from ragkit.predictions_file import append_predictions, read_predictions
from ragkit.run_lock import store_lock
from ragkit.security import redact
from ragkit.tracking import Tracker, questions_hash
from ragkit.types import Prediction, stable_hash
from ragkit.units import Unit, UnitResult, documents_together

log = logging.getLogger(__name__)

ProgressHook = Callable[[str, int, int], None]  # (configuration name, answered, total)


@dataclass
class ConfigResult:
    configuration: Configuration
    run_dir: Path
    summary: dict[str, float]
    scores: pd.DataFrame
    generated: int = 0  # questions answered in this invocation (0: everything came from disk)
    run_id: str | None = None


# -- files ---------------------------------------------------------------------------------------
def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """A prediction record (a line of predictions.jsonl) without what differs between two runs of
    the same configuration: measured seconds, dollars (an hourly price is charged on measured
    seconds), and whether an answer came from the cache (which depends on what ran before, or beside
    it on a cluster). Two executors must agree on the rest."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: strip(v)
                for k, v in value.items()
                if k not in ("cached", "dollars") and not k.endswith("seconds")
            }
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(record)


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


def write_atomic(path: Path, writer: Callable[[Path], None]) -> None:
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
    write_atomic(path, lambda p: p.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8"))


# -- scores --------------------------------------------------------------------------------------
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


# -- the recorder --------------------------------------------------------------------------------
@dataclass
class _Configuration:
    """One configuration's recording state."""

    index: int
    configuration: Configuration
    run_dir: Path
    examples: list[Any]
    done: dict[str, Prediction]
    generated: int = 0
    next_batch: int = 0
    pending: dict[int, list[Prediction]] = field(default_factory=dict)  # finished out of order
    opened: bool = False
    result: ConfigResult | None = None

    @property
    def predictions_path(self) -> Path:
        return self.run_dir / "predictions.jsonl"

    def todo(self) -> list[str]:
        """Unanswered question ids in the order they are answered (documents together)."""
        return [e.id for e in documents_together([e for e in self.examples if e.id not in self.done])]


class Recorder:
    """Writes what units return; scores and logs each configuration once it is complete."""

    def __init__(
        self,
        prepared: Any,
        *,
        output_dir: Path,
        uri: str,
        indices: Sequence[int],
        progress: ProgressHook | None = None,
    ) -> None:
        self.prepared = prepared
        self.uri = uri
        self.progress = progress
        self.tracker: Tracker | None = None  # opened when the first configuration finishes
        self.logged: dict[str, tuple[str, str, str]] = {}
        self.units: dict[str, Unit] = {}
        self.recorded: set[str] = set()
        self.states: dict[int, _Configuration] = {}
        for index in indices:
            configuration = prepared.experiment.configurations[index]
            run_dir = output_dir / configuration.hash
            legacy = output_dir / configuration.legacy_hash
            if not run_dir.exists() and legacy.is_dir():  # a folder named by the older key: keep its work
                os.replace(legacy, run_dir)
                (run_dir / "config.yaml").unlink(missing_ok=True)
            examples = prepared.datasets[stable_hash(configuration.resolved["dataset"])].examples
            done = read_predictions(run_dir / "predictions.jsonl")
            self.states[index] = _Configuration(index, configuration, run_dir, examples, done)

    def opened(self) -> Tracker:
        """The tracking store's parent run, opened (under the store lock) on first use."""
        if self.tracker is None:
            experiment = self.prepared.experiment
            with store_lock(self.uri):
                self.tracker = Tracker(self.uri, experiment.name, experiment.hash)
            self.logged = self.tracker.logged_children()
        return self.tracker

    def todo(self) -> dict[int, list[str]]:
        """Configuration index -> its unanswered question ids, in the order they are answered."""
        return {index: state.todo() for index, state in self.states.items()}

    def begin(self, units: Sequence[Unit]) -> None:
        """Expect ``units``; a configuration with nothing left to answer is finished now."""
        self.units.update({u.key: u for u in units})
        for state in self.states.values():
            self._report(state)
            if not state.todo():
                self._finish(state)

    def unit_progress(self, unit: Unit, answered: int) -> None:
        """Progress inside a running unit (executors that can see it report it)."""
        if unit.kind == "generate":
            self._report(self.states[unit.config_index], answered)

    def record(self, result: UnitResult) -> None:
        """Store one unit's results: its cache entries, then its predictions, priced, in plan
        order (a unit seen before, e.g. retried after its worker was lost, is ignored)."""
        unit = self.units[result.key]
        if result.journal is not None:
            result.journal.store(self.prepared.cache)
        if result.key in self.recorded or unit.kind != "generate":
            self.recorded.add(result.key)
            return
        self.recorded.add(result.key)
        state = self.states[unit.config_index]
        state.pending[unit.batch] = result.predictions
        self._open(state)
        generator = self._generator(state)
        while state.next_batch in state.pending:
            fresh = [p for p in state.pending.pop(state.next_batch) if p.example_id not in state.done]
            price_predictions(fresh, generator)
            append_predictions(state.predictions_path, fresh)
            state.done.update({p.example_id: p for p in fresh})
            state.generated += len(fresh)
            state.next_batch += 1
        self._report(state)
        if not state.todo():
            self._finish(state)

    def results(self) -> list[ConfigResult]:
        unfinished = [s.configuration.name for s in self.states.values() if s.result is None]
        if unfinished:
            raise RuntimeError(f"the executor returned without finishing: {', '.join(unfinished)}")
        return [self.states[i].result for i in sorted(self.states)]  # type: ignore[misc]

    # -- internals -------------------------------------------------------------------------------
    def _generator(self, state: _Configuration) -> Any:
        return self.prepared.generators[stable_hash(state.configuration.resolved["generator"])]

    def _open(self, state: _Configuration) -> None:
        """The run folder and its config.yaml, made when the configuration first records."""
        if not state.opened:
            state.run_dir.mkdir(parents=True, exist_ok=True)
            write_config_file(state.run_dir / "config.yaml", state.configuration)
            state.opened = True

    def _report(self, state: _Configuration, running: int = 0) -> None:
        if self.progress is not None:
            answered = len(state.done) + sum(len(p) for p in state.pending.values()) + running
            self.progress(state.configuration.name, min(answered, len(state.examples)), len(state.examples))

    def _finish(self, state: _Configuration) -> None:
        self._open(state)
        result = self._score(state)
        self._log(result)
        state.result = result

    def _score(self, state: _Configuration) -> ConfigResult:
        from ragkit.metrics import score, summarize

        configuration, examples = state.configuration, state.examples
        prepared = self.prepared
        ordered = [state.done[e.id] for e in examples]
        scores = score(examples, ordered)
        scores = _with_extra_scores(scores, examples, ordered)
        dataset = prepared.datasets[stable_hash(configuration.resolved["dataset"])]
        # the question's document length, for ``report --by length``
        scores[LENGTH_COLUMN] = document_tokens(examples, self._generator(state), dataset.corpus)
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
        run_dir = state.run_dir
        write_atomic(run_dir / "scores.parquet", lambda p: scores.to_parquet(p, index=False))
        summary_doc = {
            "name": configuration.name,
            "config_hash": configuration.hash,
            "scoring_key": configuration.scoring_key,
            **summary,
        }
        write_atomic(run_dir / "summary.json", lambda p: p.write_text(json.dumps(summary_doc, indent=2)))
        return ConfigResult(configuration, run_dir, summary, scores, state.generated)

    def _log(self, result: ConfigResult) -> None:
        """One MLflow child run per configuration and question set: an earlier one is reused
        (renamed when the naming rules changed, its scores updated when they were re-scored)."""
        tracker = self.opened()
        configuration = result.configuration
        dataset = self.prepared.datasets[stable_hash(configuration.resolved["dataset"])]
        qhash = questions_hash(e.id for e in dataset.examples)
        key = f"{configuration.hash}:{qhash}"
        if key in self.logged:
            result.run_id, logged_name, scored_by = self.logged[key]
            if logged_name != configuration.name:
                tracker.rename(result.run_id, configuration.name)
            if scored_by != configuration.scoring_key:  # re-scored: same run, new scores
                tracker.update_scores(
                    result.run_id,
                    metrics=result.summary,
                    scoring_key=configuration.scoring_key,
                    artifacts=[result.run_dir / "scores.parquet", result.run_dir / "summary.json"],
                )
            return
        result.run_id = tracker.log_configuration(
            name=configuration.name,
            config_hash=configuration.hash,
            questions_hash=qhash,
            params=flatten(configuration.resolved),
            metrics=result.summary,
            tags={
                "ragkit.dataset_revision": dataset.revision,
                "ragkit.seed": str(self.prepared.experiment.spec.seed),
                "ragkit.scoring_key": configuration.scoring_key,
            },
            artifacts=[
                result.run_dir / "config.yaml",
                result.run_dir / "scores.parquet",
                result.run_dir / "summary.json",
                result.run_dir / "predictions.jsonl",
            ],
        )
        self.logged[key] = (result.run_id, configuration.name, configuration.scoring_key)
        log_traces(tracker, result, dataset.examples, self.prepared.experiment.spec.tracking.trace_limit())


def log_traces(tracker: Tracker, result: ConfigResult, examples: Sequence[Any], limit: int | None) -> None:
    """The configuration's question traces (the first ``limit``); a tracing failure is reported,
    never fatal: the predictions and the run are already safe."""
    from ragkit.traces import log_traces as log_question_traces

    if limit == 0 or result.run_id is None:
        return
    try:
        predictions = read_predictions(result.run_dir / "predictions.jsonl")
        rows = result.scores.set_index("example_id", drop=False)
        log_question_traces(
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


def log_summary(tracker: Tracker, experiment: Any, table: pd.DataFrame, results: list[ConfigResult]) -> None:
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
