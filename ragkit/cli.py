"""The ``ragkit`` command line: run | estimate | report | datasets | ui (+ commands/ plug-ins)."""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # packaged models only; never a hub download at run time
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # "Loading weights" bars would bury ours
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # GGUF de-quantising and encode bars (raw tqdm) under ours
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="RAG vs long context under compute budgets."
)
console = Console(width=None if sys.stdout.isatty() else 160)  # piped output: don't wrap at 80

FileArg = Annotated[Path, typer.Argument(help="experiment YAML", exists=False)]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a field: key.path=value (repeatable)")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", help="only the first N questions of each dataset")]


def print_frame(frame, title: str | None = None) -> None:
    table = Table(title=title, show_lines=False)
    for column in frame.columns:
        table.add_column(str(column), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*[str(v) for v in row.tolist()])
    console.print(table)


def _warn_about_judge(results) -> None:
    """Print the judge's control warning (the controls are the same questions in every row)."""
    from ragkit.judge import control_warning

    columns = [c for c in ("judge_accepts_reference", "judge_rejects_mismatch") if c in results.columns]
    warning = control_warning(results[columns].mean().to_dict()) if columns else None
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}")


def _fail(exc: Exception | str) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


def _load(file: Path, overrides: list[str] | None):
    from ragkit.config import ConfigError, load_experiment

    try:
        return load_experiment(file, overrides or [])
    except ConfigError as exc:
        _fail(exc)


@app.command()
def run(file: FileArg, set_: SetOpt = None, limit: LimitOpt = None) -> None:
    """Run (or resume) every configuration of an experiment and log it to MLflow."""
    from ragkit.config import ConfigError
    from ragkit.generators.openai import ServerError
    from ragkit.progress import progress_display
    from ragkit.report import display_table, lead_note, results_frame
    from ragkit.runner import run_experiment
    from ragkit.tracking import TrackingError, resolve_tracking_uri

    experiment = _load(file, set_)
    console.print(
        f"[bold]{experiment.name}[/]: {len(experiment.configurations)} configurations, "
        f"tracking at {resolve_tracking_uri(experiment.spec.tracking_uri)}"
    )
    with progress_display(console) as hook:
        try:
            results = run_experiment(experiment, limit=limit, progress=hook)
        except (ConfigError, TrackingError) as exc:
            _fail(exc)
        except ServerError as exc:  # an inference server went away: what was answered is on disk
            _fail(f"{exc}\nFinished questions are saved; run the same command again to resume.")
    frame = results_frame(results)
    print_frame(display_table(frame), title=f"{experiment.name} (95% intervals)")
    console.print(lead_note(frame))
    _warn_about_judge(frame)
    console.print(
        f"runs in {Path(experiment.spec.output_dir) / experiment.name}; `ragkit ui {file}` to browse"
    )


@app.command()
def estimate(
    file: FileArg,
    set_: SetOpt = None,
    limit: LimitOpt = None,
    gpu: Annotated[
        str | None,
        typer.Option(
            help="add what each configuration costs a server on this accelerator (gpus/ catalog:"
            " h100, h200, a100, l4, cpu): KV cache per token and question, concurrency, time bounds"
        ),
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="weights and KV-cache dtype on --gpu (default: the entry's)")
    ] = None,
    memory_utilization: Annotated[
        float,
        typer.Option(min=0.01, max=1.0, help="share of --gpu memory for weights + KV cache (vLLM's default)"),
    ] = 0.9,
) -> None:
    """Token side of every configuration's cost, before any generation (retrieval may run)."""
    from ragkit.config import ConfigError
    from ragkit.estimate import estimate_experiment
    from ragkit.serving import BYTES_PER_VALUE, load_hardware

    hardware = None
    if gpu is not None:  # checked before the experiment loads anything
        try:
            hardware = load_hardware(gpu)
            if dtype is not None and dtype not in BYTES_PER_VALUE:
                known = ", ".join(BYTES_PER_VALUE)
                raise ValueError(f"--dtype: unknown dtype {dtype!r}; expected one of {known}")
            hardware.peak_flops(dtype or hardware.dtype)
        except ValueError as exc:
            _fail(exc)
    experiment = _load(file, set_)
    try:
        frame = estimate_experiment(
            experiment, limit=limit, gpu=hardware, dtype=dtype, utilisation=memory_utilization
        )
    except ConfigError as exc:
        _fail(exc)
    title = f"{experiment.name}: estimated cost per question (no generation)"
    if hardware is not None:
        title += (
            f"; serving on {hardware.name}, {dtype or hardware.dtype}, {memory_utilization:.0%} of"
            f" {hardware.memory_gb:g} GB for weights + KV cache (bounds: Fu 2024, arXiv 2405.08944)"
        )
    print_frame(frame, title=title)


@app.command()
def report(
    file: Annotated[str, typer.Argument(help="experiment YAML or MLflow parent run id")],
    by: Annotated[list[str] | None, typer.Option("--by", help="break down by a column or meta field")] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="metric (a score column or its table label) for a per-configuration table, --by"
            " breakdowns and --baseline comparisons; an unknown name lists the available ones"
            " (default: the judge's verdicts when judged, answer≈ for free-form answers, needle"
            " scores for needles, evidence recall for retrieval only, else contains_answer)"
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="configuration name or config-hash prefix: paired differences against it"),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="write the --by breakdown as a figure (PNG/PDF/SVG): one field, a line per method;"
            " two fields, a heatmap per method (e.g. --by length --by depth)"
        ),
    ] = None,
) -> None:
    """Tables of finished results (no model runs)."""
    from ragkit.breakdown import metric_columns
    from ragkit.metric_info import label as metric_label
    from ragkit.metric_info import resolve as resolve_metric
    from ragkit.report import (
        breakdown,
        default_metric,
        display_table,
        lead_note,
        load_results,
        load_scores,
        older_versions_note,
        other_runs_hint,
        paired_against,
    )

    results = load_results(file)
    if results.empty:
        hint = other_runs_hint(file) if str(file).endswith((".yaml", ".yml")) else ""
        _fail(RuntimeError(f"no finished configurations found for {file}.{hint}"))
    print_frame(display_table(results), title="results (95% intervals)")
    console.print(lead_note(results))
    if note := older_versions_note(results, file):
        console.print(f"[yellow]{note}[/yellow]")
    _warn_about_judge(results)
    scores = None
    if metric is not None or by or baseline:
        try:
            scores = load_scores(file)
            metric = resolve_metric(metric, metric_columns(scores)) if metric else default_metric(results)
        except KeyError as exc:
            _fail(exc)
    if by:
        try:
            # The joint table, then (with several fields) one table per field pooling the others.
            tables = [by] + ([[field] for field in by] if len(by) > 1 else [])
            for fields in tables:
                pooled = [f for f in by if f not in fields]
                title = f"{metric_label(metric)} by {', '.join(fields)}"
                title += f" (pooled over {', '.join(pooled)})" if pooled else ""
                frame = breakdown(scores, fields, metric, pool=pooled)
                print_frame(frame.round(3).rename(columns={metric: metric_label(metric)}), title=title)
                if plot is not None and fields is by:
                    from ragkit.plots import breakdown_plot

                    console.print(f"figure: {breakdown_plot(frame, by, metric, plot, title=title)}")
        except (KeyError, ValueError) as exc:
            _fail(exc)
    elif plot is not None:
        _fail(ValueError("--plot draws the --by breakdown: give one or two --by fields"))
    elif metric is not None and scores is not None and not baseline:
        frame = breakdown(scores, [], metric).rename(columns={"method": "configuration"})
        print_frame(frame.round(3).rename(columns={metric: metric_label(metric)}), title=metric_label(metric))
    if baseline:
        try:
            table = paired_against(scores, baseline, metric)
        except KeyError as exc:
            _fail(exc)
        print_frame(table, title=f"{metric}: paired difference against {baseline} (same questions)")


@app.command()
def datasets() -> None:
    """Datasets ragkit can load here: catalog entries, availability and size."""
    from ragkit.config import CATALOG_FOLDERS, build_component, catalog_names, expand_component, find_catalog

    rows = []
    for name in catalog_names("dataset"):
        path = find_catalog("dataset", name)
        try:
            resolved = expand_component("dataset", name, path, "dataset")[0]
            info = build_component("dataset", resolved).describe()
        except Exception as exc:  # a broken entry must not hide the others
            info = {"type": "?", "available": False, "questions": None, "note": str(exc)}
        rows.append(
            {
                "name": name,
                "type": info.get("type", ""),
                "available": "yes" if info.get("available") else "no",
                "questions": info.get("questions") if info.get("questions") is not None else "-",
                "note": info.get("note", ""),
            }
        )
    import pandas as pd

    print_frame(pd.DataFrame(rows), title=f"datasets (catalog folder: {CATALOG_FOLDERS['dataset']}/)")


@app.command()
def ui(
    file: Annotated[Path | None, typer.Argument(help="experiment YAML (uses its tracking_uri)")] = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
) -> None:
    """Start the MLflow UI on loopback for the experiment's tracking store."""
    from ragkit.tracking import resolve_tracking_uri

    experiment = _load(file, None) if file else None
    uri = resolve_tracking_uri(experiment.spec.tracking_uri if experiment else None)
    server = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if server else f"http://127.0.0.1:{port}"
    if file is not None:
        _print_pages(file, base)
    if server:
        console.print(f"the tracking store is a server: open {uri} in a browser")
        return
    console.print(f"MLflow UI for {uri} at {base}  (Ctrl-C to stop)")
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    raise typer.Exit(subprocess.call([*command, "--port", str(port)]))


def _print_pages(file: Path, base: str) -> None:
    """The pages of this experiment worth opening, each with the question it answers."""
    from ragkit.commands.suggest import parent_run
    from ragkit.dashboard import ui_pages

    try:
        import mlflow

        run_id, uri = parent_run(str(file))
        if run_id is None:
            console.print(
                f"[yellow]{file} has no MLflow parent run in {uri} yet: `ragkit run {file}` first[/]"
            )
            return
        parent = mlflow.MlflowClient(tracking_uri=uri).get_run(run_id)
        metric = parent.data.tags.get("ragkit.headline_metric", "contains_answer")
        pages = ui_pages(base, parent.info.experiment_id, run_id, metric)
    except Exception as exc:  # the UI still starts; only the links are missing
        console.print(f"[yellow]could not read the tracking store for links: {exc}[/]")
        return
    for question, url in pages.values():
        console.print(f"  {question}:\n    {url}", soft_wrap=True)


def _register_plugins() -> None:
    """Every module in ragkit/commands/ adds its own commands (train-pruner, suggest, ...)."""
    try:
        package = importlib.import_module("ragkit.commands")
    except ModuleNotFoundError:
        return
    for info in pkgutil.iter_modules(package.__path__, "ragkit.commands."):
        module = importlib.import_module(info.name)
        if hasattr(module, "register"):
            module.register(app)


logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
# mlflow sets its own logger to INFO when it is imported (after this), which printed "Creating initial
# MLflow database tables..." on every first run; its environment variable is read at that import.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
for noisy in ("bm25s", "sentence_transformers", "transformers", "faiss", "httpx", "alembic", "mlflow"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
_register_plugins()

if __name__ == "__main__":
    app()
