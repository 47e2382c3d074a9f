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
from rich.markup import escape
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


def _display(
    part: pd.DataFrame, metric: str, fit: str = "max", names: Sequence[str] = ("k", "m", "n")
) -> pd.DataFrame:
    def fmt(value: Any, digits: int = 3) -> str:
        return "-" if pd.isna(value) else f"{value:.{digits}f}"

    def whole(value: Any) -> str:  # a measured dimension (mean calls) is not always whole
        return fmt(value, 0 if pd.isna(value) or float(value).is_integer() else 1)

    def tokens(values: pd.Series) -> list[str]:
        return [
            f"{t:.0f}" if s == "measured" else f"~{t:.0f} (est.)"
            for t, s in zip(values, part["tokens_source"], strict=True)
        ]

    return pd.DataFrame(
        {
            "rank": part["rank"],
            "configuration": part["configuration"],
            "strategy": part["strategy"],
            **{name: part[name].map(whole) for name in names if name in part},
            f"eff. ctx tokens ({fit}/question)": tokens(part["tokens"]),
            **({} if fit == "mean" else {"mean": tokens(part["mean_tokens"])}),
            f"predicted {metric}": part["predicted"].map(fmt),
            f"measured {metric}": part["measured"].map(fmt),
        }
    )


def _round(values: list[float | None]) -> list[float | None]:
    return [None if v is None else round(v, 3) for v in values]


def parent_run(source: str, tracking_uri: str | None = None) -> tuple[str | None, str]:
    """The MLflow parent run of ``source`` (an experiment YAML or a parent run id) and its store."""
    from ragkit.report import is_experiment_file
    from ragkit.tracking import resolve_tracking_uri

    if not is_experiment_file(source):
        return str(source), resolve_tracking_uri(tracking_uri)
    import mlflow

    from ragkit.config import load_experiment

    experiment = load_experiment(source, allow_code=True)  # read only: nothing is built
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


def load_experiment_seed(source: str) -> int:
    """The experiment's seed (bootstrap resamples), 0 for an MLflow run id."""
    if not str(source).endswith((".yaml", ".yml")):
        return 0
    from ragkit.config import load_experiment

    return load_experiment(source).spec.seed


def analyse(
    results: pd.DataFrame,
    budgets: list[int],
    metric: str,
    out_dir: Path,
    *,
    top: int,
    by: str,
    dims: Sequence[Dim] = DEFAULT_DIMS,
    fit: str = "max",
    scores: pd.DataFrame | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit, suggest, regret and plots for every group; writes everything into ``out_dir``. With
    per-question ``scores``: the fit's noise ceiling and (``n_boot`` > 0) bootstrap intervals over
    questions for R^2, regret and the picks' scores (:mod:`ragkit.validation`)."""
    from ragkit import plots
    from ragkit.regret import regret_table
    from ragkit.suggestion import (
        candidates,
        fit_for,
        fit_results,
        group_of,
        short_label,
        suggest,
        with_budget,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    clean = with_budget(results, fit).dropna(subset=[metric, "effective_context_tokens", "budget_tokens"])
    fits = fit_results(clean, metric, dims, by=by)
    table = suggest(clean, budgets, metric, dims, top=top, by=by, fit=fit)
    regret = regret_table(clean, budgets, metric, dims, by=by, fit=fit)
    validation = None
    if scores is not None and not scores.empty and metric in scores:
        from ragkit.validation import bootstrap_validation

        validation = bootstrap_validation(
            clean, scores, budgets, metric, dims, by=by, fit=fit, n_boot=n_boot, seed=seed
        )
        bounds = [c for c in validation["regret"].columns if c.endswith(("_low", "_high"))]
        regret = regret.merge(validation["regret"][["group", "budget", *bounds]], on=["group", "budget"])
    files = []
    plots_of: dict[str, list[int]] = {}
    for i, (key, group) in enumerate(clean.groupby(group_of(clean), sort=True)):
        gf = fit_for(fits, group, by)
        pool = candidates(group, gf, metric, dims, fit=fit)
        title = f"{metric}: {short_label(str(key))}"
        files.append(
            plots.scaling_plot(
                pool, budgets, out_dir / f"scaling_{i}.png", metric=metric, title=title, fit=fit
            )
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
    if validation is not None:
        validation["fit"].to_csv(out_dir / "fit_quality.csv", index=False)
        files.append(out_dir / "fit_quality.csv")
    return {"suggestions": table, "regret": regret, "fits": fit_doc, "files": files, "validation": validation}


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
            help="extra theta dimension NAME=COLUMN[:default=X][:offset=Y][:min=Z][:shift=S], read as "
            "log(value + offset) (offset 0.01 by default, as in the paper), e.g. "
            "keep=strategy.pruner.keep_ratio:default=1:offset=0; a name k, m or n replaces that "
            "dimension, e.g. k=strategy.retrieval.k:offset=1 (repeatable)",
        ),
    ] = None,
    fit: Annotated[
        str,
        typer.Option(
            help="which questions must fit --budget: 'max' (every question, as in the paper's Eq. 1),"
            " 'p95' (95% of them) or 'mean' (the mean effective context; single questions may exceed it)"
        ),
    ] = "max",
    bootstrap: Annotated[
        int,
        typer.Option(
            help="resamples of the questions for intervals on R^2, regret and the picks' scores"
            " (0: none; the noise ceiling is shown either way)",
            min=0,
        ),
    ] = 100,
) -> None:
    """Suggest the budget-optimal configuration from finished runs (no model runs)."""
    from ragkit.budget import parse_tokens
    from ragkit.report import load_results, older_versions_note, stale_scores_note
    from ragkit.suggestion import BY, FIT_WORDS, FITS, declared_dims, short_label

    try:
        budgets = [parse_tokens(b) for b in budget]
    except ValueError as exc:
        console.print(f"[bold red]error:[/] --budget: {exc}")
        raise typer.Exit(2) from None
    if by not in BY:
        console.print(f"[bold red]error:[/] --by {by!r}: expected one of {', '.join(BY)}")
        raise typer.Exit(2)
    if fit not in FITS:
        console.print(f"[bold red]error:[/] --fit {fit!r}: expected one of {', '.join(FITS)}")
        raise typer.Exit(2)
    try:
        extra = [parse_dim(d) for d in dim or []]
        with_dims(extra)
    except ValueError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    from ragkit.config import ConfigError

    try:
        results = load_results(source, tracking_uri)
    except ConfigError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None
    if results.empty:
        console.print(f"[bold red]error:[/] no finished configurations found for {source}")
        raise typer.Exit(2)
    dims = with_dims(extra, declared_dims(results))  # k, m, n and what the strategies declare
    if note := older_versions_note(results, source):
        console.print(f"[yellow]{note}[/yellow]")
    if note := stale_scores_note(results, source):
        console.print(f"[yellow]{note}[/yellow]")
    if metric not in results.columns:
        console.print(f"[bold red]error:[/] --metric {metric!r} is not a result column")
        raise typer.Exit(2)
    from ragkit.report import load_scores
    from ragkit.suggestion import fill_token_statistics

    scores = load_scores(source, tracking_uri)
    if FITS[fit] not in results or results[FITS[fit]].isna().any():  # summaries older than the statistic
        results = fill_token_statistics(results, scores)
    if output is None:  # next to the experiment's run folders, or ./runs/<run id>/suggest
        if Path(source).is_file():
            from ragkit.config import load_experiment

            spec = load_experiment(source, allow_code=True)  # read only
            output = Path(spec.spec.output_dir) / spec.name / "suggest"
        else:
            output = Path("runs") / str(source)[:12] / "suggest"
    seed = load_experiment_seed(source)
    report = analyse(
        results, budgets, metric, output, top=top, by=by, dims=dims, fit=fit, scores=scores,
        n_boot=bootstrap, seed=seed,
    )  # fmt: skip
    console.print(f"budgets are per question; --fit {fit}: {FIT_WORDS[fit]}")
    for key, model in report["fits"].items():
        console.print(
            f"[bold]{key}[/]: fitted on {model['n_points']} configurations, R^2 {model['r2']:.3f} "
            f"(logit {model['r2_logit']:.3f}), MSE {model['mse']:.5f}; "
            f"theta={model['dims']}: a={_round(model['a'])}, b={_round(model['b'])}, c={model['c']:.3f}"
        )
    for (key, value), part in report["suggestions"].groupby(["group", "budget"], sort=False):
        title = f"budget {value} tokens per question, fit: {fit} ({short_label(key)})"
        console.print(_table(_display(part, metric, fit, [d.name for d in dims]), title=title))
    for miss in report["suggestions"].attrs.get("unfit", []):
        console.print(
            f"[yellow]budget {miss['budget']} tokens per question, fit: {fit} ({short_label(miss['group'])}):"
            f" no configuration fits; the smallest, {miss['smallest']}, needs {miss['tokens']:.0f} tokens"
            f" ({fit} per question; mean {miss['mean_tokens']:.0f})[/yellow]"
        )
    if report["validation"] is not None:
        from ragkit.validation import fit_quality_table, mean_regret_summary

        title = "fit quality: R^2 next to the R^2 a perfect model reaches with this sampling noise"
        console.print(_table(fit_quality_table(report["validation"], lambda k: short_label(str(k))), title))
        if bootstrap:
            summary = mean_regret_summary(report["validation"]).round(4)
            console.print(_table(summary, title=f"mean regret over budgets, {bootstrap} bootstrap resamples"))
    regret = report["regret"]
    if not regret.empty:
        from ragkit.validation import with_interval

        for column in ("grid_best_score", "regret", "largest_k_regret", "full_context_regret"):
            if column in regret and f"{column}_low" in regret:
                regret[column] = with_interval(regret, column, 4 if column.endswith("regret") else 3)
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
        ci = f"; [95% CI] over {bootstrap} resamples of the questions" if bootstrap else ""
        console.print(_table(view, title=f"regret (grid best - pick), per budget, fit: {fit}{ci}"))
    from ragkit.regret import oracle_routes

    routes = oracle_routes(results, scores, metric)
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
