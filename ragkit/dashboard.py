"""What the MLflow UI shows for an experiment: metric names, the parent run's summary, the landing page.

- Child-run metrics are logged as ``group/name`` (``accuracy/contains_answer``, ``cost/seconds_per_question``,
  ``interval/f1_ci_low``): MLflow's chart view makes one collapsible section per prefix, so accuracy,
  F1, effective context, cost and seconds per configuration are charted with no set-up, and the
  interval bounds do not crowd them. :func:`plain_metrics` maps the names back for ``ragkit report``.
- The parent run holds the experiment's summary: the results table (a logged table), the best
  configuration within each token budget (a table, a description and a ``best_within_budget/``
  metric whose step is the budget), the accuracy-vs-effective-context figure, the breakdown
  figures, and curve-shaped results (accuracy vs k, vs length) as metric histories whose step is
  the x value, one chart per method, which MLflow draws as curves.
- The experiment is tagged as a model-development experiment so MLflow opens it on the runs
  table (ragkit's comparison) rather than the GenAI overview; traces stay one tab away.
"""

from __future__ import annotations

import math
import re
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ACCURACY = (
    "contains_answer",
    "f1",
    "em",
    "judge_correct",
    "longform_approx",
    "answer_recall_approx",
    "needle_exact",
    "needle_recall",
    "abstention_accuracy",
    "refusal_approx",
)
COST = (
    "effective_context_tokens",
    "seconds_per_question",
    "input_tokens",
    "output_tokens",
    "calls",
    "aux_tokens",
    "flops",
    "dollars",
)
GROUPS = ("accuracy", "cost", "context", "interval", "run")


def chart_name(metric: str) -> str:
    """The MLflow key of a summary metric: its chart-view section, a slash, its name."""
    if metric.endswith(("_ci_low", "_ci_high")):
        return f"interval/{metric}"
    if metric in ACCURACY:
        return f"accuracy/{metric}"
    if metric in COST:
        return f"cost/{metric}"
    if metric == "n_questions":
        return f"run/{metric}"
    return f"context/{metric}"  # evidence recall, dropped tokens, compression, routing, iterations


def plain_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """A child run's metrics under their summary names (runs logged before grouping keep theirs);
    curve histories (other prefixes) are left out: their last value is no summary."""
    out = {}
    for key, value in metrics.items():
        group, _, name = key.partition("/")
        if not name:
            out[key] = value
        elif group in GROUPS:
            out[name] = value
    return out


EXPERIMENT_NOTE = """\
**ragkit experiment.** Each configuration is a run nested under the parent run `{parent}`.

- **Which configuration is best, and at what cost?** The *Runs* table, sorted by a metric (no need
  to expand the parent): `ragkit ui` prints the link. The *Chart* view draws accuracy, F1,
  effective context tokens, seconds and cost per configuration.
- **Best configuration within a token budget, curves (accuracy vs k, vs length)?** The parent
  run: its description, its charts and the artifacts `results_table.json`, `best_per_budget.json`,
  `plots/`.
- **What did the model see and answer for one question?** The *Traces* tab: one trace per
  question and configuration (retrieval, each generator call with its prompt, scores).
"""


def experiment_tags(parent_id: str) -> dict[str, str]:
    return {
        "mlflow.experimentKind": "custom_model_development",
        "mlflow.note.content": EXPERIMENT_NOTE.format(parent=parent_id),
    }


def _key(text: str) -> str:
    """MLflow metric keys allow letters, digits, ``_ - . / : `` and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-. :]", "_", str(text)).strip() or "_"


def best_per_budget(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """For budgets at powers of two covering the measured effective context lengths, the
    configuration with the best ``metric`` whose mean effective context fits within the budget."""
    frame = results.dropna(subset=[metric, "effective_context_tokens"])
    if frame.empty:
        return pd.DataFrame()
    low = max(1.0, float(frame["effective_context_tokens"].min()))
    high = max(low, float(frame["effective_context_tokens"].max()))
    budgets = [2**p for p in range(math.ceil(math.log2(low)), math.ceil(math.log2(high)) + 1)]
    rows = []
    for budget in budgets:
        fitting = frame[frame["effective_context_tokens"] <= budget]
        if fitting.empty:
            continue
        best = fitting.loc[fitting[metric].idxmax()]
        rows.append(
            {
                "budget_tokens": budget,
                "configuration": best["config_name"],
                metric: round(float(best[metric]), 4),
                "ci_low": round(float(best.get(f"{metric}_ci_low", float("nan"))), 4),
                "ci_high": round(float(best.get(f"{metric}_ci_high", float("nan"))), 4),
                "effective_context_tokens": round(float(best["effective_context_tokens"]), 1),
                "seconds_per_question": round(float(best.get("seconds_per_question", float("nan"))), 3),
                "run_id": best.get("run_id"),
            }
        )
    return pd.DataFrame(rows)


def curve_fields(scores: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    """Fields to break results down by: the experiment's ``evaluation.breakdown`` fields that the
    questions have, and the swept settings in configuration names (k, m, length, ...)."""
    from ragkit.report import breakdown_fields

    have = breakdown_fields(scores)
    swept = [f for f in have if f not in {c.removeprefix("meta_") for c in scores if c.startswith("meta_")}]
    return [f for f in dict.fromkeys([*wanted, *swept]) if f in have]


def curve_metrics(table: pd.DataFrame, field: str, metric: str) -> list[tuple[str, float, int]]:
    """``(key, value, step)`` for a breakdown by a whole-numbered field: one history per method
    (``contains_answer_by_k/rag bm25``), its step the field's value, so MLflow draws the curve."""
    values = pd.to_numeric(table[field], errors="coerce")
    if values.dropna().empty or not values.dropna().mod(1).eq(0).all():
        return []
    out = []
    for method, rows in table.assign(_x=values).dropna(subset=["_x", metric]).groupby("method"):
        if rows["_x"].nunique() < 2:
            continue
        key = f"{_key(f'{metric}_by_{field}')}/{_key(method)}"
        out += [(key, float(r[metric]), int(r["_x"])) for _, r in rows.iterrows()]
    return out


def context_plot(results: pd.DataFrame, metric: str, path: Path) -> Path:
    """``metric`` against mean effective context tokens, every configuration labelled with its
    95% interval, and the Pareto front (the best score reachable within each budget)."""
    from ragkit.plots import _pyplot, pareto_front

    plt = _pyplot()
    frame = results.dropna(subset=[metric, "effective_context_tokens"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 5))
    strategies = frame.get("strategy.type", pd.Series(["?"] * len(frame)))
    placed: list[tuple[float, float]] = []  # labelled points: near ones stack their labels upwards
    for n, strategy in enumerate(dict.fromkeys(strategies)):
        rows = frame[strategies == strategy]
        low = rows[metric] - rows.get(f"{metric}_ci_low", rows[metric])
        high = rows.get(f"{metric}_ci_high", rows[metric]) - rows[metric]
        ax.errorbar(
            rows["effective_context_tokens"],
            rows[metric],
            yerr=[low.fillna(0).clip(lower=0), high.fillna(0).clip(lower=0)],
            fmt="o",
            capsize=3,
            color=f"C{n}",
            label=str(strategy),
        )
        for _, row in rows.iterrows():
            x, y = float(row["effective_context_tokens"]), float(row[metric])
            near = sum(
                1
                for px, py in placed
                if abs(np.log2(max(x, 1.0)) - np.log2(max(px, 1.0))) < 0.3 and abs(y - py) < 0.08
            )
            placed.append((x, y))
            ax.annotate(
                str(row["config_name"]),
                (x, y),
                textcoords="offset points",
                xytext=(5, 4 + 11 * near),
                fontsize=7,
            )
    front = frame.iloc[pareto_front(frame["effective_context_tokens"].tolist(), frame[metric].tolist())]
    if len(front):
        xs = [*front["effective_context_tokens"], float(frame["effective_context_tokens"].max())]
        ys = [*front[metric], float(front[metric].iloc[-1])]
        ax.step(xs, ys, where="post", color="black", ls=":", lw=1.2, label="best within budget")
    if len(frame) and frame["effective_context_tokens"].min() > 0:
        ax.set_xscale("log", base=2)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("effective context tokens per question (mean, log2)")
    ax.set_ylabel(f"{metric} (95% interval)")
    ax.set_title(f"{metric} vs effective context length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _note(best: pd.DataFrame, metric: str, experiment: str) -> str:
    lines = [f"**{experiment}**: best configuration within each budget of effective context tokens", ""]
    lines += [
        f"| budget (tokens) | configuration | {metric} [95% CI] | eff. ctx tokens |",
        "|---|---|---|---|",
    ]
    for _, row in best.iterrows():
        lines.append(
            f"| {row['budget_tokens']} | {row['configuration']} | {row[metric]:.3f} "
            f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}] | {row['effective_context_tokens']:.0f} |"
        )
    lines += ["", "Figures: `plots/`; every configuration: `results_table.json`; curves: the charts."]
    return "\n".join(lines)


def log_table(client: Any, run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
    """``MlflowClient.log_table``, except that a table logged again (a resumed or extended
    experiment) replaces the old one: log_table appends to an existing file, which would repeat
    every configuration. The replacement is written in log_table's own format (pandas "split")."""
    if artifact_file not in {a.path for a in client.list_artifacts(run_id)}:
        client.log_table(run_id, frame, artifact_file)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / artifact_file
        frame.to_json(path, orient="split", index=False, date_format="iso")
        client.log_artifact(run_id, str(path))


def log_parent_summary(
    client: Any,
    parent_id: str,
    *,
    experiment: str,
    results: pd.DataFrame,
    scores: pd.DataFrame,
    breakdown: Sequence[str],
) -> None:
    """The parent run's summary (see the module docstring); every part is skipped when its data
    are missing (no scores, a single configuration), never failing the run that produced them."""
    from mlflow.entities import Metric, RunTag

    from ragkit.plots import breakdown_plot
    from ragkit.report import breakdown as breakdown_table
    from ragkit.report import default_metric, display_table

    if results.empty:
        return
    metric = default_metric(results)
    log_table(client, parent_id, display_table(results), "results_table.json")
    best = best_per_budget(results, metric)
    now = int(time.time() * 1000)
    metrics = []
    tags = [RunTag("ragkit.headline_metric", metric)]
    if not best.empty:
        log_table(client, parent_id, best, "best_per_budget.json")
        metrics += [
            Metric(f"best_within_budget/{metric}", float(r[metric]), now, int(r["budget_tokens"]))
            for _, r in best.iterrows()
        ]
        tags.append(RunTag("mlflow.note.content", _note(best, metric, experiment)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "plots"
        context_plot(results, metric, folder / f"{metric}_vs_effective_context.png")
        if not scores.empty and metric in scores:
            for field in curve_fields(scores, breakdown):
                try:
                    table = breakdown_table(scores, [field], metric)
                except (KeyError, ValueError):
                    continue
                if table[field].nunique() < 2:
                    continue
                breakdown_plot(table, [field], metric, folder / f"{metric}_by_{_key(field)}.png")
                metrics += [Metric(k, v, now, s) for k, v, s in curve_metrics(table, field, metric)]
        client.log_artifacts(parent_id, str(folder), artifact_path="plots")
    for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
        client.log_batch(parent_id, metrics=metrics[start : start + 900])
    client.log_batch(parent_id, tags=tags)


def ui_pages(
    base: str, experiment_id: str, parent_id: str | None, metric: str = "contains_answer"
) -> dict[str, tuple[str, str]]:
    """Direct links into the MLflow UI (a hash-routed app): page -> (what it answers, URL).
    Sorting the runs table by a metric lists the configurations flat (MLflow nests child runs
    under their parent only in the default order), best first."""
    from urllib.parse import quote

    runs = f"{base}/#/experiments/{experiment_id}/runs"
    order = f"orderByKey={quote(f'metrics.`{chart_name(metric)}`', safe='')}&orderByAsc=false"
    pages = {
        "runs": ("configurations side by side, best first", f"{runs}?{order}"),
        "chart": (
            "charts: accuracy, F1, effective context, cost, seconds per configuration",
            f"{runs}?{order}&compareRunsMode=CHART",
        ),
        "traces": (
            "per-question traces: retrieval, prompts, outputs, scores",
            f"{base}/#/experiments/{experiment_id}/traces",
        ),
    }
    if parent_id:
        pages["summary"] = (
            "summary: best configuration per budget, results table, plots",
            f"{runs}/{parent_id}/artifacts",
        )
    return pages
