"""Check an experiment's MLflow dashboard in a real browser (headless Chromium).

    python scripts/dashboard_check.py experiments/quickstart.yaml --out docs/

Starts ``ragkit ui`` on the experiment's finished tracking store, loads the pages a user needs
(the experiment's landing page, the runs list, the chart view, one question's trace, the parent
run's artifacts) in headless Chromium, saves a screenshot of each and checks the rendered DOM text
for what the page must show: the configurations, their metrics, a trace's spans, the summary
artifacts. The MLflow UI is a JavaScript app: Chromium's ``--virtual-time-budget`` lets it fetch
and render before the DOM is dumped. Exit status 0 when every page shows what it must, 1 when one
does not (the missing texts are printed), 2 when Chromium or the store is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import html.parser
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_chromium() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class _Text(html.parser.HTMLParser):
    """The visible text of a dumped DOM (script and style bodies left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def dom_text(dom: str) -> str:
    parser = _Text()
    parser.feed(dom)
    return " ".join(parser.parts)


@dataclass
class Page:
    name: str
    url: str
    expect: list[str]
    missing: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def chromium(browser: str, url: str, *args: str, budget_ms: int, timeout: float) -> str:
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",  # root in containers and CI
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--window-size=1440,900",
        f"--virtual-time-budget={budget_ms}",
        *args,
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    return out.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, server: subprocess.Popen, timeout: float) -> None:
    """Poll the UI's health endpoint until it answers (the server takes seconds to start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ragkit ui exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the MLflow UI at {url} did not answer within {timeout:.0f} s")


def pages_for(experiment_file: str, base: str) -> list[Page]:
    """The pages to load and the texts each must show, from the experiment's MLflow records."""
    import mlflow

    from ragkit.commands.suggest import parent_run
    from ragkit.dashboard import chart_name, ui_pages

    parent_id, uri = parent_run(experiment_file)
    if parent_id is None:
        raise LookupError(f"{experiment_file}: no finished MLflow parent run in {uri}; run it first")
    client = mlflow.MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_id)
    experiment_id = parent.info.experiment_id
    metric = parent.data.tags.get("ragkit.headline_metric", "contains_answer")
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'", max_results=500
    )
    names = sorted(r.info.run_name for r in children)
    traces = client.search_traces(locations=[experiment_id], max_results=1, order_by=["timestamp_ms DESC"])
    by_role = {key: url for key, (_, url) in ui_pages(base, experiment_id, parent_id, metric).items()}
    pages = [
        Page("landing", f"{base}/#/experiments/{experiment_id}", [parent.info.run_name, "Runs", "Traces"]),
        Page("runs", by_role["runs"], [*names, chart_name(metric)]),
        Page("chart", by_role["chart"], ["accuracy", "cost", "interval", *names]),
        # the parent's artifacts with the accuracy-vs-effective-context figure open
        Page(
            "summary",
            f"{by_role['summary'].removesuffix('/artifacts')}/artifactPath/plots/{metric}_vs_effective_context.png",
            ["results_table.json", "best_per_budget.json", "plots", f"{metric}_vs_effective_context.png"],
        ),
    ]
    if traces:
        trace = traces[0]
        spans = sorted({s.name for s in trace.data.spans if s.parent_id is not None})
        url = (
            f"{base}/#/experiments/{experiment_id}/traces?selectedEvaluationId={trace.info.trace_id}"
            f"&traceId={trace.info.trace_id}"
        )
        pages.append(Page("trace", url, [*spans, metric]))
    else:
        pages.append(Page("trace", by_role["traces"], ["<a trace: none was logged>"]))
    return pages


def check(experiment_file: str, out: Path, *, port: int | None = None, budget_ms: int = 15000) -> list[Page]:
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install chromium)")
    out.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", str(Path(__file__).resolve().parents[1]))}
    server = subprocess.Popen(
        [sys.executable, "-m", "ragkit.cli", "ui", experiment_file, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # its own process group: the MLflow server it starts goes with it
    )
    try:
        wait_for(base, server, timeout=300)  # minutes on a loaded 2-core machine
        pages = pages_for(experiment_file, base)
        for page in pages:
            page.screenshot = out / f"mlflow-{page.name}.png"
            # one load per page: the screenshot is written and the DOM printed after the same render
            dom = chromium(
                browser,
                page.url,
                f"--screenshot={page.screenshot}",
                "--dump-dom",
                budget_ms=budget_ms,
                timeout=300,
            )
            text = dom_text(dom)
            page.missing = [e for e in page.expect if e not in text]
        return pages
    finally:
        stop_group(server)


def stop_group(server: subprocess.Popen, grace: float = 20.0) -> None:
    """End ``ragkit ui`` and the MLflow server it started (same process group): SIGTERM, then
    SIGKILL whatever is still there after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        server.poll()
        try:
            os.killpg(server.pid, 0)  # anyone left in the group?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", help="experiment YAML whose runs are finished")
    parser.add_argument("--out", type=Path, default=Path("docs"), help="folder for the screenshots")
    parser.add_argument("--port", type=int, default=None, help="UI port (default: a free one)")
    parser.add_argument("--budget-ms", type=int, default=15000, help="Chromium virtual time per page")
    args = parser.parse_args(argv)
    try:
        pages = check(args.experiment, args.out, port=args.port, budget_ms=args.budget_ms)
    except (FileNotFoundError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for page in pages:
        status = "ok" if not page.missing else "MISSING " + ", ".join(repr(m) for m in page.missing)
        print(f"{page.name:8s} {status}\n         {page.url}\n         screenshot: {page.screenshot}")
    return 1 if any(p.missing for p in pages) else 0


if __name__ == "__main__":
    sys.exit(main())
