"""Result tables: one row per configuration, per-question rows, breakdowns by a field.

``load_results`` / ``load_scores`` read either an experiment's run folders (from its YAML) or an
MLflow parent run, so analyses (``ragkit report``, ``ragkit suggest``) work on finished runs
without re-running anything.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ragkit.breakdown import breakdown, breakdown_fields, name_field  # noqa: F401 (re-exported)
from ragkit.config import flatten, groups_of, lift_resolved, load_experiment, prediction_settings
from ragkit.metric_info import METRICS, label
from ragkit.types import stable_hash

log = logging.getLogger(__name__)

# The accuracy columns a table leads with, most trustworthy first: a judge's verdicts when one was
# configured, the benchmark's own metric (LongBench, L-Eval, RULER, ...), the free-form
# approximation for sentence answers (LaRA), exact needle scores, and
# contains-answer for short-answer QA. EM and contains-answer are 0 on sentence answers by design.
# Labels (and why each leads) are in ragkit.metric_info, the same in every table.
HEADLINES: list[tuple[str, str]] = [
    (m, label(m))
    for m in (
        "summhay_joint",
        "summhay_joint_approx",
        "judge_correct",
        "task_score",
        "longform_approx",
        "needle_exact",
        "needle_recall",
        "ruler_match_all",
        "contains_answer",
    )
]
SHORT_ANSWER = ("contains_answer", "em")
# Citation and Summary-of-a-Haystack columns a table adds after the accuracy ones, when present.
CITATION_COLUMNS = (
    *("summhay_coverage", "summhay_citation", "summhay_coverage_approx", "summhay_citation_approx"),
    *("citation_recall", "citation_precision", "judged_citation_recall", "judged_citation_precision"),
    "cites",
)


# What a retrieval-only run (strategy: retrieve, no answers) leads with.
RETRIEVAL_HEADLINES = ("evidence_recall", "evidence_hit", "mrr")


def headline_metrics(frame: pd.DataFrame) -> list[str]:
    """The accuracy metrics ``frame`` (results or per-question scores) has data for, best first."""
    present = [m for m, _ in HEADLINES if m in frame.columns and frame[m].notna().any()]
    if not present:
        retrieval = [m for m in RETRIEVAL_HEADLINES if m in frame.columns and frame[m].notna().any()]
        if retrieval:
            return retrieval
    free_form = any(m != "contains_answer" for m in present)
    return [m for m in present if not (free_form and m in SHORT_ANSWER)] or ["contains_answer"]


def default_metric(frame: pd.DataFrame) -> str:
    """The metric breakdowns and paired comparisons use when none is named."""
    return headline_metrics(frame)[0]


def results_frame(results: Sequence[Any]) -> pd.DataFrame:
    """Rows from runner ConfigResults."""
    rows = []
    for r in results:
        row = {"config_name": r.configuration.name, "config_hash": r.configuration.hash, "run_id": r.run_id}
        row.update(flatten(r.configuration.resolved))
        row.update(r.summary)
        rows.append(row)
    return pd.DataFrame(rows)


def _without_versions(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_versions(v) for k, v in value.items() if k != "version"}
    if isinstance(value, list | tuple):
        return [_without_versions(v) for v in value]
    return value


def _finished_by_settings(base: Path) -> dict[str, Path]:
    """Finished run folders under ``base`` keyed by their configuration with every component
    ``version`` left out (the newest folder wins): where a ragkit upgrade bumped a version, the
    same settings' earlier results are found here."""
    import yaml

    found: dict[str, Path] = {}
    for summary in sorted(base.glob("*/summary.json"), key=lambda f: f.stat().st_mtime):
        try:
            config = yaml.safe_load((summary.parent / "config.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        settings = prediction_settings(config)
        if isinstance(settings.get("strategy"), dict):  # a run from before the nested settings
            settings["strategy"] = lift_resolved("strategy", settings["strategy"])
        found[stable_hash(_without_versions(settings))] = summary.parent
    return found


def _from_yaml(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[pd.DataFrame, list[Path]]:
    """Rows of the experiment's finished configurations. A configuration not finished under its
    current hash, but finished with the same settings under older component versions, is reported
    from that run with ``older_version`` set (the CLI says so): a version bump must not make
    earlier results vanish from the experiment's report, nor pass them off as current."""
    # read only: nothing is built or imported; ``overrides``: the ``--set`` the run was made with
    experiment = load_experiment(path, list(overrides), allow_code=True)
    base = Path(experiment.spec.output_dir) / experiment.name
    rows, dirs = [], []
    older: dict[str, Path] | None = None
    for c in experiment.configurations:
        run_dir, is_older = base / c.hash, False
        if not (run_dir / "summary.json").exists() and (base / c.legacy_hash / "summary.json").exists():
            run_dir = base / c.legacy_hash  # named by the older key (until the next `ragkit run`)
        if not (run_dir / "summary.json").exists():
            if older is None:
                older = _finished_by_settings(base)
            match = older.get(stable_hash(_without_versions(prediction_settings(c.resolved))))
            if match is None:
                continue
            run_dir, is_older = match, True
        summary_file = run_dir / "summary.json"
        row = {"config_name": c.name, "config_hash": run_dir.name, "run_id": None, "older_version": is_older}
        row["current_scoring_key"] = c.scoring_key
        current = flatten(c.resolved)
        if is_older:  # the settings are the same; the versions are the run's own
            import yaml

            ran_config = yaml.safe_load((run_dir / "config.yaml").read_text())
            if isinstance(ran_config.get("strategy"), dict):  # a run from before the nested settings
                ran_config["strategy"] = lift_resolved("strategy", ran_config["strategy"])
            ran = flatten(ran_config)
            changed = [
                f"{key} {ran.get(key, '-')}->{value}"
                for key, value in current.items()
                if key.endswith("version") and str(ran.get(key, "-")) != str(value)
            ]
            current = {k: ran.get(k) if k.endswith("version") else v for k, v in current.items()}
            row["version_changes"] = ", ".join(changed)
            # no version changed: the same settings written in an older layout (flat retrieval
            # settings), so the run is current
            row["older_version"] = bool(changed)
        row.update(current)
        summary = _read_summary(summary_file)
        if summary is None:
            continue
        row.update({k: v for k, v in summary.items() if k not in ("name", "config_hash")})
        rows.append(row)
        dirs.append(run_dir)
    return pd.DataFrame(rows), dirs


def _read_summary(path: Path) -> dict[str, Any] | None:
    """A run's summary.json, or None (with a warning) when it is damaged: the report goes on without
    that configuration, and `ragkit run` rewrites the file from the predictions."""
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("%s is damaged (%s); left out of the report until `ragkit run` rewrites it", path, exc)
        return None
    if not isinstance(summary, dict):
        log.warning("%s is damaged (not a JSON object); left out of the report", path)
        return None
    return summary


def _read_scores(path: Path) -> pd.DataFrame | None:
    """A run's scores.parquet; None when missing, or damaged (with a warning: `ragkit run`
    rewrites it from the predictions)."""
    if not path.exists():
        return None
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file; all mean the same
        log.warning("%s is damaged (%s); left out until `ragkit run` rewrites it", path, exc)
        return None


def older_versions_note(results: pd.DataFrame, source: str | os.PathLike[str]) -> str:
    """A note when some configurations come from runs of older component versions (see
    ``_from_yaml``), naming the version changes; empty when every result is current."""
    if "older_version" not in results:
        return ""
    older = results[results["older_version"].astype("boolean").fillna(False).astype(bool)]
    if older.empty:
        return ""
    changes = sorted({c for text in older.get("version_changes", []) for c in str(text).split(", ") if c})
    return (
        f"note: {len(older)} of {len(results)} configurations are from runs of older component"
        f" versions ({'; '.join(changes)}): same settings, code that has changed since."
        f" `ragkit run {source}` re-runs them with the current code."
    )


def stale_scores_note(results: pd.DataFrame, source: str | os.PathLike[str]) -> str:
    """A note when some configurations were scored by other scoring settings or code than the
    experiment's current ones (their predictions are current): `ragkit run` re-scores them from
    the saved predictions without generating anything."""
    if "current_scoring_key" not in results:
        return ""
    scored = results.get("scoring_key", pd.Series([None] * len(results), index=results.index))
    stale = results[scored.astype(object).ne(results["current_scoring_key"])]
    if stale.empty:
        return ""
    return (
        f"note: {len(stale)} of {len(results)} configurations were scored by other scoring settings or"
        f" an older ragkit; `ragkit run {source}` re-scores their saved predictions (no generation)."
    )


def _from_mlflow(parent_run_id: str, tracking_uri: str | None = None) -> pd.DataFrame:
    import mlflow

    from ragkit.dashboard import plain_metrics
    from ragkit.tracking import resolve_tracking_uri

    client = mlflow.MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        max_results=5000,
    )
    rows = []
    for run in runs:
        row: dict[str, Any] = {
            "config_name": run.data.tags.get("ragkit.config_name", run.info.run_name),
            "config_hash": run.data.tags.get("ragkit.config_hash"),
            "run_id": run.info.run_id,
        }
        row.update(_nested_params({k: _number(v) for k, v in run.data.params.items()}))
        row.update(plain_metrics(run.data.metrics))
        rows.append(row)
    return pd.DataFrame(rows)


def _nested_params(params: dict[str, Any]) -> dict[str, Any]:
    """Dotted params of a run logged before the retrieval settings were nested ("strategy.k",
    "strategy.retriever.name") under the names they have now ("strategy.retrieval.k", ...)."""
    from ragkit import registry

    try:
        cls = registry.get("strategy", str(params.get("strategy.type")))
    except registry.RegistryError:
        return params
    own = registry.params_model(cls).model_fields
    moved = {}
    for group_name, group in groups_of(cls).items():
        fields = registry.params_model(group).model_fields
        for key in params:
            head = key.split(".")[1] if key.startswith("strategy.") and key.count(".") >= 1 else ""
            if head in fields and head not in own:
                moved[key] = f"strategy.{group_name}.{key.removeprefix('strategy.')}"
    return {moved.get(k, k): v for k, v in params.items()}


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return {"None": None, "True": True, "False": False}.get(value, value)


def is_experiment_file(source: str | os.PathLike[str]) -> bool:
    """Whether a report source names an experiment YAML (else it is an MLflow parent run id)."""
    return str(source).endswith((".yaml", ".yml")) or Path(source).is_file()


def load_results(
    source: str | os.PathLike[str], tracking_uri: str | None = None, overrides: Sequence[str] = ()
) -> pd.DataFrame:
    """One row per finished configuration: dotted params, metrics, config_hash, config_name, run_id.
    ``source`` is an experiment YAML (with ``overrides``, the ``--set`` of its run) or an MLflow
    parent run id."""
    if is_experiment_file(source):
        return _from_yaml(source, overrides)[0]
    return _from_mlflow(str(source), tracking_uri)


def load_scores(
    source: str | os.PathLike[str], tracking_uri: str | None = None, overrides: Sequence[str] = ()
) -> pd.DataFrame:
    """Per-question rows of every finished configuration (with ``config_hash``)."""
    if is_experiment_file(source):
        results, dirs = _from_yaml(source, overrides)
        # Names come from the experiment as it is now (naming rules can change after a run).
        names = dict(zip(results["config_hash"], results["config_name"], strict=True)) if dirs else {}
        frames = [
            frame.assign(config_name=names[d.name])
            for d in dirs
            if (frame := _read_scores(d / "scores.parquet")) is not None
        ]
    else:
        import tempfile

        import mlflow

        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        frames = []
        with tempfile.TemporaryDirectory() as tmp:
            for run_id in _from_mlflow(str(source), tracking_uri)["run_id"]:
                local = client.download_artifacts(run_id, "scores.parquet", tmp)
                frames.append(pd.read_parquet(local))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def format_interval(
    row: pd.Series, metric: str, *, bounds: tuple[str, str] = ("_ci_low", "_ci_high"), digits: int = 3
) -> str:
    """ "value [low, high]" from ``metric`` and its bound columns (``metric`` + ``bounds``)."""
    value = row.get(metric)
    if value is None or pd.isna(value):
        return "-"
    low, high = row.get(f"{metric}{bounds[0]}"), row.get(f"{metric}{bounds[1]}")
    if low is None or pd.isna(low):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits - 1}f}, {high:.{digits - 1}f}]"


def _has(results: pd.DataFrame, column: str) -> bool:
    return column in results.columns and results[column].notna().any()


def truncation_cell(row: pd.Series) -> str:
    """``"7/8 (61% of tokens)"``: questions whose context was cut to fit the window or budget,
    and the mean share of their context's tokens that was dropped; ``-`` where not measured."""
    share, n = row.get("truncated"), int(row.get("n_questions", 0) or 0)
    if share is None or pd.isna(share):
        return "-"
    dropped = row.get("dropped_share")
    tokens = "" if dropped is None or pd.isna(dropped) else f" ({dropped:.0%} of tokens)"
    return f"{round(share * n)}/{n}{tokens}"


def display_table(results: pd.DataFrame) -> pd.DataFrame:
    """The table ``ragkit run`` ends with: configuration, the headline accuracy metrics and F1 with
    95% intervals (EM for short answers), the answer-in-context proxy, how many questions were
    truncated and the share of tokens dropped, generator calls per question (when a configuration
    makes more than one), mean effective context tokens, prefill tokens computed (after prefix
    reuse), FLOPs (when they say more than the tokens), seconds and dollars per question."""
    headlines = headline_metrics(results)
    # Cost columns shown only where they say something: prefill computed when some configuration
    # reused a shared prefix, FLOPs when they do not follow the tokens, dollars when the generator
    # has prices.
    reuse = _differs(results, "prefill_tokens_computed", "effective_context_tokens")
    priced = "dollars" in results and bool((results["dollars"].fillna(0) > 0).any())
    several_calls = _has(results, "calls") and bool((results["calls"] > 1).any())
    retrieval_only = headlines[0] in RETRIEVAL_HEADLINES  # no prompt: passage tokens, not a context cut
    counted_flops = not retrieval_only and _flops_tell_more(results)
    rows = []
    for _, row in results.iterrows():
        out = {"configuration": row["config_name"]}
        out |= {f"{label(m)} [95% CI]": format_interval(row, m) for m in headlines}
        if _has(results, "f1"):  # not for retrieval only (no answers); HotpotQA's official F1: f1_hotpotqa
            out[f"{label('f1')} [95% CI]"] = format_interval(row, "f1")
        if "contains_answer" in headlines:
            out["EM"] = f"{row.get('em', float('nan')):.3f}"
        if _has(results, "answer_in_context"):
            out[f"{label('answer_in_context')} [95% CI]"] = format_interval(row, "answer_in_context")
        if _has(results, "truncated") and not retrieval_only:
            out["truncated"] = truncation_cell(row)
        if several_calls:
            out["calls"] = f"{row.get('calls', float('nan')):.1f}"
        # Beside citation recall, the gold evidence the prompt showed: a citation can only find
        # what was shown, so the gap between the two is the answer's, not retrieval's.
        shown = ("evidence_recall",) if _has(results, "citation_recall") else ()
        out |= {
            f"{label(m)} [95% CI]": format_interval(row, m)
            for m in (*shown, *CITATION_COLUMNS)
            if _has(results, m) and m not in headlines
        }
        if retrieval_only:  # what a prompt would hold: the retrieved passages' tokens
            out["passage tokens"] = f"{row.get('context_tokens', float('nan')):.0f}"
        else:
            out["eff. ctx tokens"] = f"{row.get('effective_context_tokens', float('nan')):.0f}"
        if reuse:
            out["prefill computed"] = f"{row.get('prefill_tokens_computed', float('nan')):.0f}"
        if counted_flops:
            out["FLOPs/question"] = format_flops(row.get("flops"))
        out["s/question"] = f"{row.get('seconds_per_question', float('nan')):.2f}"
        if priced:
            out["$/question"] = format_dollars(row.get("dollars"))
        out["n"] = int(row.get("n_questions", 0) or 0)
        rows.append(out)
    return pd.DataFrame(rows)


def lead_note(results: pd.DataFrame) -> str:
    """Which metric the table leads with and why (printed under it)."""
    metric = default_metric(results)
    why = METRICS[metric].leads_because if metric in METRICS else ""
    return f"leading metric: {label(metric)}" + (f" ({why})" if why else "")


def _flops_tell_more(results: pd.DataFrame, spread: float = 1.25) -> bool:
    """Whether FLOPs per question say something effective context tokens do not: their ratio to the
    tokens differs by more than ``spread`` between configurations. It does for GemFilter (the model
    reads every token, but only the filter layers over all of them), different generators, and long
    contexts (attention's quadratic term: at 128k tokens an 8B model spends about twice the FLOPs
    per token of a short RAG prompt); for one generator over short prompts the tokens tell it all,
    and the column is left out of an already wide table."""
    if "flops" not in results or "effective_context_tokens" not in results:
        return False
    flops = pd.to_numeric(results["flops"], errors="coerce")
    tokens = pd.to_numeric(results["effective_context_tokens"], errors="coerce")
    ratio = (flops / tokens)[(flops > 0) & (tokens > 0)]
    return len(ratio) > 1 and float(ratio.max()) > spread * float(ratio.min())


def format_flops(value: Any) -> str:
    """FLOPs with three significant digits and an SI prefix: a 135M model at 4k tokens is ~1.4T a
    question, a 70B model at 128k tokens ~20P."""
    if value is None or pd.isna(value):
        return "-"
    for prefix, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{prefix}"
    return f"{value:.3g}"


def format_dollars(value: Any) -> str:
    """Dollars with three significant digits: a question costs fractions of a cent."""
    if value is None or pd.isna(value):
        return "-"
    return f"{value:.3g}" if value else "0"


def _differs(results: pd.DataFrame, column: str, than: str) -> bool:
    """Whether ``column`` is present and differs from ``than`` anywhere (a column worth showing)."""
    if column not in results or than not in results:
        return False
    a, b = results[column].astype(float), results[than].astype(float)
    return bool(((a - b).abs() > 0.5).any())


def paired_against(
    scores: pd.DataFrame,
    baseline: str,
    metric: str = "contains_answer",
    *,
    correction: str = "holm",
    seed: int = 0,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every configuration minus ``baseline`` on the questions both answered: the mean difference
    with its 95% paired bootstrap interval, and the test that decides, corrected for the number of
    comparisons in the table (``correction``: holm, bonferroni, bh or none). 0/1 metrics are
    tested with the exact McNemar test on the discordant questions (with few of them the bootstrap
    interval can exclude 0 while McNemar cannot reject: 4-0 of 50 is p = 0.125), graded ones with a
    paired sign-flip permutation test. ``baseline`` is a configuration name or a prefix of its
    config hash. The frame's ``attrs`` hold the number of comparisons and the correction."""
    from ragkit.stats import adjust_pvalues, bootstrap_interval, paired_test, paired_values

    names = scores["config_name"].astype(str)
    chosen = scores[(names == baseline) | scores["config_hash"].astype(str).str.startswith(baseline)]
    if chosen.empty:
        known = ", ".join(sorted(names.unique()))
        raise KeyError(f"no configuration {baseline!r} (a name or config-hash prefix); have: {known}")
    if chosen["config_hash"].nunique() > 1:
        raise KeyError(f"{baseline!r} matches several configurations: give more of the config hash")
    base_hash = chosen["config_hash"].iloc[0]
    rows, pvalues = [], []
    for (config_hash, name), frame in scores.groupby(["config_hash", "config_name"], sort=False):
        if config_hash == base_hash:
            continue
        x, y = paired_values(frame, chosen, metric)
        low, high = bootstrap_interval(x - y, seed=seed)
        test = paired_test(x, y, seed=seed)
        pvalues.append(test["p"])
        discordant = test["discordant"]
        rows.append(
            {
                "configuration": name,
                f"{metric} - baseline": round(float((x - y).mean()), 3),
                "95% CI (bootstrap)": f"[{low:.3f}, {high:.3f}]",
                "n (shared)": len(x),
                "discordant +/-": f"{discordant[0]}/{discordant[1]}" if discordant else "-",
                "test": test["test"],
                "p": test["p"],
            }
        )
    table = pd.DataFrame(rows)
    label = "p (uncorrected)" if correction == "none" else f"p ({correction})"
    if not table.empty:
        adjusted = adjust_pvalues(np.array(pvalues), correction)
        table["p"] = [_p(v) for v in pvalues]
        if correction != "none":
            table[label] = [_p(v) for v in adjusted]
        table["reading"] = [
            f"differs ({t.split()[0]}{'' if correction == 'none' else ', ' + correction})"
            if v < alpha
            else "not distinguishable"
            for v, t in zip(adjusted, table["test"], strict=True)
        ]
    table.attrs.update({"comparisons": len(rows), "correction": correction, "alpha": alpha})
    return table


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def comparisons_note(table: pd.DataFrame) -> str:
    """The line under a paired table: how many comparisons, how they were corrected, which test."""
    m, correction = table.attrs.get("comparisons", len(table)), table.attrs.get("correction", "none")
    how = {
        "holm": "Holm-adjusted p-values (family-wise error rate at 5%)",
        "bonferroni": "Bonferroni-adjusted p-values (family-wise error rate at 5%)",
        "bh": "Benjamini-Hochberg-adjusted p-values (false discovery rate at 5%)",
        "none": "uncorrected p-values: with several comparisons, a false 'differs' is likely",
    }[correction]
    return (
        f"{m} comparisons against the baseline; {how}. 'differs' is decided by the test named (exact"
        " McNemar on the discordant questions for 0/1 metrics, sign-flip permutation for graded ones);"
        " the bootstrap interval shows the size of the difference, uncorrected."
    )


def other_runs_hint(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> str:
    """Why a YAML found no finished configurations, when older ones exist: its configurations hash
    differently now (edited settings, or a component version bumped by a ragkit upgrade). Names the
    folder and the MLflow parent runs that still hold them, which ``ragkit report RUN_ID`` reads."""
    experiment = load_experiment(path, list(overrides), allow_code=True)  # read only
    base = Path(experiment.spec.output_dir) / experiment.name
    current = {c.hash for c in experiment.configurations}
    older = [f.parent.name for f in base.glob("*/summary.json") if f.parent.name not in current]
    if not older:
        return ""
    hint = (
        f" {base} holds {len(older)} finished configurations from other settings or ragkit versions"
        " (a component version changes its configuration hash)."
    )
    try:
        import mlflow

        from ragkit.tracking import resolve_tracking_uri

        client = mlflow.MlflowClient(tracking_uri=resolve_tracking_uri(experiment.spec.tracking_uri))
        found = client.get_experiment_by_name(experiment.name)
        parents = (
            client.search_runs(
                [found.experiment_id],
                filter_string="tags.`ragkit.role` = 'parent'",
                order_by=["attributes.start_time DESC"],
                max_results=3,
            )
            if found
            else []
        )
    except Exception:  # the hint must not hide the real message behind a tracking error
        parents = []
    if parents:
        ids = ", ".join(p.info.run_id for p in parents)
        hint += f" Report them by their MLflow parent run (newest first: {ids}): ragkit report RUN_ID."
    return hint + f" Or re-run: ragkit run {path}."
