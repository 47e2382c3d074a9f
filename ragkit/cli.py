"""The ``ragkit`` command line: run | estimate | report | datasets | ui (+ commands/ plug-ins)."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ragkit.process import configure_process

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="RAG vs long context under compute budgets."
)


@app.callback()
def _set_up() -> None:
    """RAG vs long context under compute budgets."""
    configure_process()  # before any command imports transformers, tqdm or mlflow


console = Console(width=None if sys.stdout.isatty() else 160)  # piped output: don't wrap at 80
error_console = Console(stderr=True)

FileArg = Annotated[Path, typer.Argument(help="experiment YAML", exists=False)]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="override a field: key.path=value (repeatable)")
]
LimitOpt = Annotated[
    int | None, typer.Option("--limit", min=1, help="only the first N questions of each dataset")
]
AllowCodeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-code",
        help="let the experiment import Python callables it names (llama-index factories and parsers"
        " outside llama_index's own modules): only for files you trust",
    ),
]
MaxConfigsOpt = Annotated[
    int | None,
    typer.Option("--max-configurations", min=1, help="refuse sweeps larger than this (default 1000)"),
]


def print_frame(frame, title: str | None = None) -> None:
    # Text, not str: names come from YAMLs, and rich would read "[...]" in them as markup
    table = Table(title=Text(title) if title else None, show_lines=False)
    for column in frame.columns:
        table.add_column(Text(str(column)), overflow="fold")
    for _, row in frame.iterrows():
        table.add_row(*[Text(str(v)) for v in row.tolist()])
    console.print(table)


def _warn_about_judge(results) -> None:
    """Print the judges' control warnings (answers, citation support, summary coverage), from the
    control verdicts' means over all rows."""
    from ragkit import citation_judge, judge, summhay

    means = results.select_dtypes("number").mean().to_dict()
    for check in (judge.control_warning, citation_judge.control_warning, summhay.control_warning):
        warning = check(means)
        if warning:
            console.print(f"[bold yellow]warning:[/] {warning}")


def _fail(exc: Exception | str) -> NoReturn:
    """One ``error:`` line on stderr (never wrapped, never read as markup), then exit code 2."""
    from ragkit.security import redact

    message = redact(" ".join(str(exc).split()))
    error_console.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
    raise typer.Exit(2)


def _load(
    file: Path,
    overrides: list[str] | None,
    *,
    allow_code: bool = False,
    max_configurations: int | None = None,
    executor: str | None = None,
):
    from ragkit.config import MAX_CONFIGURATIONS, ConfigError, load_experiment

    try:
        return load_experiment(
            file,
            overrides or [],
            allow_code=allow_code,
            max_configurations=max_configurations or MAX_CONFIGURATIONS,
            executor=executor,
        )
    except ConfigError as exc:
        _fail(exc)


ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="where units run: local (this process) or ray (a Ray cluster: the YAML's ray settings, else"
        " RAY_ADDRESS, else a new local one); a YAML mapping such as '{type: ray, address: auto}' too",
    ),
]


@app.command()
def run(
    file: FileArg,
    set_: SetOpt = None,
    limit: LimitOpt = None,
    allow_code: AllowCodeOpt = False,
    max_configurations: MaxConfigsOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="if this experiment is already running, wait for it, then resume")
    ] = False,
    executor: ExecutorOpt = None,
) -> None:
    """Run (or resume) every configuration of an experiment and log it to MLflow."""
    from ragkit.config import ConfigError
    from ragkit.generators.openai import ServerError
    from ragkit.progress import progress_display
    from ragkit.report import display_table, lead_note, results_frame
    from ragkit.run_lock import RunLockError
    from ragkit.runner import run_experiment
    from ragkit.security import redact
    from ragkit.tracking import TrackingError, resolve_tracking_uri

    experiment = _load(
        file, set_, allow_code=allow_code, max_configurations=max_configurations, executor=executor
    )
    console.print(
        f"[bold]{escape(experiment.name)}[/]: {len(experiment.configurations)} configurations on"
        f" {escape(experiment.executor['type'])},"
        f" tracking at {escape(redact(resolve_tracking_uri(experiment.spec.tracking_uri)))}"
    )
    with progress_display(console) as hook:
        try:
            results = run_experiment(experiment, limit=limit, progress=hook, wait=wait)
        except (ConfigError, TrackingError, RunLockError) as exc:
            _fail(exc if isinstance(exc, ConfigError) else f"{file}: {exc}")
        except ServerError as exc:  # an inference server went away: what was answered is on disk
            _fail(f"{exc} Finished questions are saved; run the same command again to resume.")
        except KeyboardInterrupt:  # Ctrl-C: typer would exit 130 without a word
            folder = Path(experiment.spec.output_dir) / experiment.name
            error_console.print(
                Text.assemble(
                    ("interrupted:", "bold yellow"),
                    f" finished questions are saved in {folder}; run the same command again to resume.",
                ),
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
    frame = results_frame(results)
    print_frame(display_table(frame), title=f"{experiment.name} (95% intervals)")
    console.print(lead_note(frame))
    _warn_about_judge(frame)
    console.print(
        f"runs in {Path(experiment.spec.output_dir) / experiment.name}; `ragkit ui {file}` to browse",
        markup=False,
    )


@app.command()
def estimate(
    file: FileArg,
    set_: SetOpt = None,
    limit: LimitOpt = None,
    discordance: Annotated[
        float,
        typer.Option(
            help="expected share of questions that two configurations score differently (one right,"
            " the other wrong), for the paired sample-size line",
            min=0.01,
            max=1.0,
        ),
    ] = 0.25,
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
    allow_code: AllowCodeOpt = False,
    max_configurations: MaxConfigsOpt = None,
) -> None:
    """Token side of every configuration's cost, before any generation (retrieval may run), and the
    smallest accuracy difference the sample can detect when configurations are compared paired."""
    from ragkit.config import ConfigError
    from ragkit.estimate import estimate_experiment, power_note
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
    experiment = _load(file, set_, allow_code=allow_code, max_configurations=max_configurations)
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
    if "questions" in frame and len(frame):
        import pandas as pd

        questions = int(pd.to_numeric(frame["questions"], errors="coerce").min())
        console.print(power_note(questions, len(experiment.configurations), discordance))


@app.command()
def check(
    file: FileArg,
    set_: SetOpt = None,
    allow_code: AllowCodeOpt = False,
    max_configurations: MaxConfigsOpt = None,
    executor: ExecutorOpt = None,
) -> None:
    """Check an experiment without running it: everything `run` checks before a model loads (the
    YAML, the executor, the tracking store, the folders, every component's settings and model
    files, the data)."""
    from ragkit.cache import get_cache
    from ragkit.config import ConfigError
    from ragkit.runner import build_components, build_executor, cache_root, load_datasets, preflight

    experiment = _load(
        file, set_, allow_code=allow_code, max_configurations=max_configurations, executor=executor
    )
    try:
        build_executor(experiment)
        preflight(experiment)
        build_components(experiment, get_cache(cache_root(experiment)))
        datasets = load_datasets(experiment)
    except ConfigError as exc:
        _fail(exc)
    questions = sum(len(d.examples) for d in datasets.values())
    console.print(
        f"ok: {file}: {len(experiment.configurations)} configurations, {questions} questions", markup=False
    )


@app.command()
def report(
    file: Annotated[str, typer.Argument(help="experiment YAML or MLflow parent run id")],
    by: Annotated[list[str] | None, typer.Option("--by", help="break down by a column or meta field")] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="metric (a score column or its table label) for a per-configuration table, --by"
            " breakdowns and --baseline comparisons; an unknown name lists the available ones"
            " (default: the judge's verdicts when judged, the benchmark's own task_score, answer≈ for"
            " free-form answers, needle scores for needles, evidence recall for retrieval only, else"
            " contains_answer)"
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option(help="configuration name or config-hash prefix: paired differences against it"),
    ] = None,
    correction: Annotated[
        str,
        typer.Option(
            help="correction of --baseline's p-values for the number of comparisons: holm (default),"
            " bonferroni, bh (Benjamini-Hochberg, false discovery rate) or none"
        ),
    ] = "holm",
    plot: Annotated[
        Path | None,
        typer.Option(
            help="write the --by breakdown as a figure (PNG/PDF/SVG): one field, a line per method;"
            " two fields, a heatmap per method (e.g. --by length --by depth)"
        ),
    ] = None,
    set_: SetOpt = None,  # the overrides the run was made with, so its configurations are found
) -> None:
    """Tables of finished results (no model runs)."""
    from ragkit.breakdown import metric_columns
    from ragkit.config import ConfigError, load_experiment
    from ragkit.metric_info import label as metric_label
    from ragkit.metric_info import resolve as resolve_metric
    from ragkit.report import (
        breakdown,
        comparisons_note,
        default_metric,
        display_table,
        is_experiment_file,
        lead_note,
        load_results,
        load_scores,
        older_versions_note,
        other_runs_hint,
        paired_against,
        stale_scores_note,
    )

    overrides = set_ or []
    is_yaml = is_experiment_file(file)
    if overrides and not is_yaml:
        _fail(ValueError(f"--set changes an experiment YAML; {file} is an MLflow run id"))
    shown = " ".join([file, *(f"--set {o}" for o in overrides)])  # what the notes tell to re-run
    try:
        results = load_results(file, overrides=overrides)
    except ConfigError as exc:
        _fail(exc)
    if results.empty:
        hint = other_runs_hint(file, overrides) if is_yaml else ""
        _fail(RuntimeError(f"no finished configurations found for {shown}.{hint}"))
    print_frame(display_table(results), title="results (95% intervals)")
    console.print(lead_note(results))
    if note := older_versions_note(results, shown):
        console.print(f"[yellow]{escape(note)}[/yellow]")
    if note := stale_scores_note(results, shown):
        console.print(f"[yellow]{escape(note)}[/yellow]")
    _warn_about_judge(results)
    scores = None
    if metric is not None or by or baseline:
        try:
            scores = load_scores(file, overrides=overrides)
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
        from ragkit.stats import CORRECTIONS

        if correction not in CORRECTIONS:
            _fail(ValueError(f"--correction {correction!r}: expected one of {', '.join(CORRECTIONS)}"))
        seed = load_experiment(file, overrides).spec.seed if is_yaml else 0
        try:
            table = paired_against(scores, baseline, metric, correction=correction, seed=seed)
        except (KeyError, ValueError) as exc:
            _fail(exc)
        title = f"{metric}: paired difference against {baseline} (same questions)"
        print_frame(table, title=f"{title}, {table.attrs['comparisons']} comparisons")
        console.print(comparisons_note(table))


@app.command()
def datasets() -> None:
    """Datasets ragkit can load here: catalog entries, where their data comes from (bundled with
    ragkit's packages, or your local copy named by ``path:``), availability and size."""
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
                "data": "your copy (path:)" if info.get("local_copy") else "bundled",
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
    from ragkit.security import redact
    from ragkit.tracking import resolve_tracking_uri

    # only the tracking URI is read: nothing is built or imported, so code references may stay
    experiment = _load(file, None, allow_code=True) if file else None
    uri = resolve_tracking_uri(experiment.spec.tracking_uri if experiment else None)
    server = uri.startswith(("http://", "https://"))
    base = uri.rstrip("/") if server else f"http://127.0.0.1:{port}"
    if file is not None:
        _print_pages(file, base)
    if server:
        console.print(f"the tracking store is a server: open {redact(uri)} in a browser", markup=False)
        return
    console.print(f"MLflow UI for {redact(uri)} at {redact(base)}  (Ctrl-C to stop)", markup=False)
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


_register_plugins()

if __name__ == "__main__":
    app()
