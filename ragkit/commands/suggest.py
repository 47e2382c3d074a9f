"""``ragkit suggest RUN_OR_EXPERIMENT --budget 4k [--budget 8k ...]``: budget-optimal configurations.

Fits the computation allocation model (:mod:`ragkit.allocation`) per generator and dataset (or,
``--by generator``, per generator across its datasets, as the paper estimates it) on finished
results, prints per dataset and budget the configurations that fit it ranked by predicted score (the
measured score where it exists, the effective context tokens measured or, for untried
combinations, estimated), the fit's quality and the regret of its picks, and writes the same
tables (CSV, JSON) and plots (score vs effective context length with the fitted optimum and the
Pareto front; predicted vs measured) to a folder and to the experiment's MLflow parent run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ragkit.allocation import DEFAULT_DIMS, Dim, parse_dim, with_dims

log = logging.getLogger(__name__)
console = Console()


def _table(frame: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*["-" if isinstance(v, float) and pd.isna(v) else str(v) for v in row.tolist()])
    return table


def _display(part: pd.DataFrame, metric: str, names: Sequence[str] = ("k", "m", "n")) -> pd.DataFrame:
    def fmt(value: Any, digits: int = 3) -> str:
        return "-" if pd.isna(value) else f"{value:.{digits}f}"

    def whole(value: Any) -> str:  # a measured dimension (mean calls) is not always whole
        return fmt(value, 0 if pd.isna(value) or float(value).is_integer() else 1)

    return pd.DataFrame(
        {
            "rank": part["rank"],
            "configuration": part["configuration"],
            "strategy": part["strategy"],
            **{name: part[name].map(whole) for name in names if name in part},
            "eff. ctx tokens": [
                f"{t:.0f}" if s == "measured" else f"~{t:.0f} (est.)"
                for t, s in zip(part["tokens"], part["tokens_source"], strict=True)
            ],
            f"predicted {metric}": part["predicted"].map(fmt),
            f"measured {metric}": part["measured"].map(fmt),
        }
    )


def _round(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 3) for v in values]


def parent_run(source: str, tracking_uri: str | None = None) -> tuple[str | None, str]:
    """The MLflow parent run of ``source`` (an experiment YAML or a parent run id) and its store."""
    from ragkit.tracking import resolve_tracking_uri

    if not str(source).endswith((".yaml", ".yml")) and not Path(source).is_file():
        return str(source), resolve_tracking_uri(tracking_uri)
    import mlflow

    from ragkit.config import load_experiment

    experiment = load_experiment(source)
    uri = resolve_tracking_uri(tracking_uri or experiment.spec.tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment.name)
    if found is None:
        return None, uri
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=(
            f"tags.`ragkit.experiment_hash` = '{experiment.hash}' and tags.`ragkit.role` = 'parent'"
        ),
        max_results=1,
    )
    return (runs[0].info.run_id if runs else None), uri


def oracle_routes(source: str, results: pd.DataFrame, metric: str, tracking_uri: str | None) -> pd.DataFrame:
    """Oracle routing (per question the better of a RAG configuration and full context) for every
    RAG configuration paired with each full-context configuration of the same group."""
    from ragkit.report import load_scores
    from ragkit.strategies.route import oracle_route
    from ragkit.suggestion import STRATEGY, group_of

    if STRATEGY not in results or not results[STRATEGY].isin(["full_context"]).any():
        return pd.DataFrame()
    scores = load_scores(source, tracking_uri)
    if scores.empty or "config_hash" not in scores:
        return pd.DataFrame()
    rows = []
    for key, group in results.groupby(group_of(results), sort=True):
        fulls = group[group[STRATEGY] == "full_context"]
        for _, full in fulls.iterrows():
            fc = scores[scores["config_hash"] == full["config_hash"]]
            for _, rag in group[group[STRATEGY] == "rag"].iterrows():
                rs = scores[scores["config_hash"] == rag["config_hash"]]
                if rs.empty or fc.empty:
                    continue
                rows.append(
                    {
                        "group": key,
                        "rag_config": rag["config_name"],
                        "full_context_config": full["config_name"],
                        **oracle_route(rs, fc, metric),
                    }
                )
    return pd.DataFrame(rows)


def analyse(
    results: pd.DataFrame,
    budgets: list[int],
    metric: str,
    out_dir: Path,
    *,
    top: int,
    by: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
) -> dict[str, Any]:
    """Fit, suggest, regret and plots for every group; writes everything into ``out_dir``."""
    from ragkit import plots
    from ragkit.regret import regret_table
    from ragkit.suggestion import (
        candidates,
        fit_for,
        fit_results,
        group_of,
        short_label,
        suggest,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    clean = results.dropna(subset=[metric, "effective_context_tokens"])
    fits = fit_results(clean, metric, dims, by=by)
    table = suggest(clean, budgets, metric, dims, top=top, by=by)
    regret = regret_table(clean, budgets, metric, dims, by=by)
    files = []
    plots_of: dict[str, list[int]] = {}
    for i, (key, group) in enumerate(clean.groupby(group_of(clean), sort=True)):
        gf = fit_for(fits, group, by)
        pool = candidates(group, gf, metric, dims)
        title = f"{metric}: {short_label(str(key))}"
        files.append(
            plots.scaling_plot(pool, budgets, out_dir / f"scaling_{i}.png", metric=metric, title=title)
        )
        if gf is not None:
            files.append(plots.calibration_plot(pool, out_dir / f"calibration_{i}.png", metric=metric))
            plots_of.setdefault(gf.key, []).append(i)
    fit_doc: dict[str, Any] = {}
    for key, gf in fits.items():
        label = short_label(key)
        fit_doc[label if label not in fit_doc else f"{label} ({key})"] = {
            "group": key,
            "fitted_by": by,
            "plot_index": plots_of.get(key, []),
            **gf.model.to_dict(),
            "informativeness": gf.info_doc(),
        }
    for name, frame in (("suggestions.csv", table), ("regret.csv", regret)):
        frame.to_csv(out_dir / name, index=False)
        files.append(out_dir / name)
    (out_dir / "allocation_fit.json").write_text(json.dumps(fit_doc, indent=2, default=str))
    files.append(out_dir / "allocation_fit.json")
    return {"suggestions": table, "regret": regret, "fits": fit_doc, "files": files}


def suggest_command(
    source: Annotated[str, typer.Argument(help="experiment YAML or MLflow parent run id")],
    budget: Annotated[
        list[str],
        typer.Option("--budget", help="effective context tokens per question, e.g. 4k (repeatable)"),
    ],
    metric: Annotated[str, typer.Option(help="score to fit and rank by")] = "contains_answer",
    top: Annotated[int, typer.Option(help="configurations shown per budget")] = 5,
    by: Annotated[
        str,
        typer.Option(
            help="fit the model per 'generator+dataset' or per 'generator' across its datasets (the "
            "paper's estimation); suggestions are per dataset either way"
        ),
    ] = "generator+dataset",
    output: Annotated[Path | None, typer.Option(help="folder for tables and plots")] = None,
    log_mlflow: Annotated[
        bool, typer.Option("--log/--no-log", help="log artifacts to the parent run")
    ] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow store (default: the experiment's)")] = None,
    dim: Annotated[
        list[str] | None,
        typer.Option(
            "--dim",
            help="extra theta dimension NAME=COLUMN[:default=X][:offset=Y][:min=Z], read as "
            "log(value + offset) (offset 0.01 by default, as in the paper), e.g. "
            "keep=strategy.pruner.keep_ratio:default=1:offset=0; a name k, m or n replaces that "
            "dimension, e.g. k=strategy.retrieval.k:offset=1 (repeatable)",
        ),
    ] = None,
) -> None:
    """Suggest the budget-optimal configuration from finished runs (no model runs)."""
    from ragkit.budget import parse_tokens
    from ragkit.report import load_results, older_versions_note
    from ragkit.suggestion import BY, declared_dims, short_label

    try:
        budgets = [parse_tokens(b) for b in budget]
    except ValueError as exc:
        console.print(f"[bold red]error:[/] --budget: {exc}")
        raise typer.Exit(2) from None
    if by not in BY:
        console.print(f"[bold red]error:[/] --by {by!r}: expected one of {', '.join(BY)}")
        raise typer.Exit(2)
    try:
        extra = [parse_dim(d) for d in dim or []]
        with_dims(extra)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    results = load_results(source, tracking_uri)
    if results.empty:
        console.print(f"[bold red]error:[/] no finished configurations found for {source}")
        raise typer.Exit(2)
    dims = with_dims(extra, declared_dims(results))  # k, m, n and what the strategies declare
    if note := older_versions_note(results, source):
        console.print(f"[yellow]{note}[/yellow]")
    if metric not in results.columns:
        console.print(f"[bold red]error:[/] --metric {metric!r} is not a result column")
        raise typer.Exit(2)
    if output is None:  # next to the experiment's run folders, or ./runs/<run id>/suggest
        if Path(source).is_file():
            from ragkit.config import load_experiment

            spec = load_experiment(source)
            output = Path(spec.spec.output_dir) / spec.name / "suggest"
        else:
            output = Path("runs") / str(source)[:12] / "suggest"
    report = analyse(results, budgets, metric, output, top=top, by=by, dims=dims)
    for key, fit in report["fits"].items():
        console.print(
            f"[bold]{key}[/]: fitted on {fit['n_points']} configurations, R^2 {fit['r2']:.3f} "
            f"(logit {fit['r2_logit']:.3f}), MSE {fit['mse']:.5f}; "
            f"theta={fit['dims']}: a={_round(fit['a'])}, b={_round(fit['b'])}, c={fit['c']:.3f}"
        )
    for (key, value), part in report["suggestions"].groupby(["group", "budget"], sort=False):
        view = _display(part, metric, [d.name for d in dims])
        console.print(_table(view, title=f"budget {value} tokens ({short_label(key)})"))
    regret = report["regret"]
    if not regret.empty:
        shown = [
            c
            for c in (
                "budget",
                "grid_best",
                "grid_best_score",
                "model_pick",
                "regret",
                "lobo_pick",
                "lobo_regret",
                "transfer_pick",
                "transfer_regret",
                "largest_k_regret",
                "full_context_regret",
            )
            if c in regret
        ]
        view = regret[shown].round(4)
        if regret["group"].nunique() > 1:
            view.insert(0, "group", regret["group"].map(lambda k: short_label(str(k))))
        console.print(_table(view, title="regret (grid best - pick), per budget"))
    routes = oracle_routes(source, results, metric, tracking_uri)
    if not routes.empty:
        routes.to_csv(output / "oracle_route.csv", index=False)
        report["files"].append(output / "oracle_route.csv")
        cols = ["rag_config", "rag", "rag_tokens", "full_context", "oracle", "oracle_tokens", "routed_share"]
        view = routes[cols].round(3)
        console.print(_table(view, title="oracle route: per question the better of RAG and full context"))
    console.print(f"tables and plots in {output}")
    if log_mlflow:
        run_id, uri = parent_run(source, tracking_uri)
        if run_id is None:
            console.print("[yellow]no MLflow parent run found for this experiment; artifacts not logged[/]")
            return
        import mlflow

        client = mlflow.MlflowClient(tracking_uri=uri)
        for path in report["files"]:
            client.log_artifact(run_id, str(path), artifact_path=f"suggest/{metric}")
        log_to_parent(client, run_id, report, metric)
        console.print(f"logged {len(report['files'])} artifacts to MLflow run {run_id} (suggest/{metric}/)")


def log_to_parent(client: Any, run_id: str, report: dict[str, Any], metric: str) -> None:
    """The suggestion and regret tables as MLflow tables (the UI shows them as tables, beside the
    CSVs), and the score of each budget's first pick (predicted by the fit, else measured) as a
    ``suggest/`` metric whose step is the budget, so the parent's charts draw the scaling curve."""
    import time

    from mlflow.entities import Metric

    from ragkit.dashboard import log_table

    for name in ("suggestions", "regret"):
        if not report[name].empty:
            log_table(client, run_id, report[name], f"suggest/{metric}/{name}.json")
    table = report["suggestions"]
    if table.empty or "rank" not in table:
        return
    now = int(time.time() * 1000)
    firsts = table[(table["rank"] == 1) & table["score"].notna()]
    multiple = firsts["group"].nunique() > 1
    metrics = [
        Metric(
            f"suggest/{metric}_of_pick" + (f"/{_short_key(row['group'])}" if multiple else ""),
            float(row["score"]),
            now,
            int(row["budget"]),
        )
        for _, row in firsts.iterrows()
    ]
    if metrics:
        client.log_batch(run_id, metrics=metrics)


def _short_key(group: Any) -> str:
    from ragkit.suggestion import short_label

    return "".join(c if c.isalnum() or c in "_-. " else "_" for c in short_label(str(group)))


def register(app: typer.Typer) -> None:
    app.command("suggest")(suggest_command)
