"""MLflow tracking: one parent run per experiment, one nested child run per configuration.

We use :class:`mlflow.MlflowClient` with explicit run ids rather than the fluent ``start_run``
API: the runner resumes experiments, logs children out of order and must never leave a global
active run behind. Params, metrics and tags go in one ``log_batch`` call per run (one call per
value costs ~8x more time with the SQLite store).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ragkit.security import redact
from ragkit.types import stable_hash

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PARAM_LIMIT = 500  # MLflow caps param values; long values (scripts, lists) are cut and marked


class TrackingError(RuntimeError):
    pass


def resolve_tracking_uri(configured: str | None = None) -> str:
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast, naming the URI, when a tracking server does not answer."""
    if uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
                if response.status >= 400:
                    raise TrackingError(f"MLflow tracking server {uri} answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as exc:
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({exc}); start it (mlflow server) or"
                " set tracking_uri / MLFLOW_TRACKING_URI"
            ) from None
    elif uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.parent.exists():
            raise TrackingError(f"MLflow store {uri}: folder {path.parent} does not exist")


def environment_tags() -> dict[str, str]:
    """Versions, git commit and date: every result records where it came from."""
    tags = {
        "ragkit.date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "ragkit.python": platform.python_version(),
        "ragkit.host": platform.node(),
    }
    for package in (
        "ragkit",
        "torch",
        "transformers",
        "sentence-transformers",
        "faiss-cpu",
        "bm25s",
        "mlflow",
    ):
        try:
            tags[f"ragkit.version.{package}"] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    commit = git_commit()
    if commit:
        tags["ragkit.git_commit"] = commit
    return tags


def git_commit(path: str | os.PathLike[str] = ".") -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=path, capture_output=True, text=True
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def _param(value: Any) -> str:
    text = "" if value is None else str(redact(value))
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 20] + f"...[{len(text)} chars]"


_NAME_UNSAFE = re.compile(r"[^\w./ -]")  # MLflow names: alphanumerics, _ - . / and spaces
NAME_LIMIT = 250


def mlflow_names(keys: Iterable[str]) -> dict[str, str]:
    """A valid, distinct MLflow param/metric name for each key. A YAML dict key such as ``^who``
    (a scripted generator's script) used to make MLflow reject the whole batch after the first
    configuration had run."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for key in keys:
        name = _NAME_UNSAFE.sub("_", str(key))[:NAME_LIMIT] or "_"
        if name != key and name in used:
            name = f"{name[: NAME_LIMIT - 9]}_{stable_hash(key)[:8]}"
        used.add(name)
        out[key] = name
    return out


class Tracker:
    """Parent/child run bookkeeping for one experiment."""

    def __init__(self, uri: str, experiment_name: str, experiment_hash: str) -> None:
        import mlflow

        self.uri = uri
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        self.experiment_hash = experiment_hash
        existing = self.client.get_experiment_by_name(experiment_name)
        self.experiment_id = (
            existing.experiment_id if existing else self.client.create_experiment(experiment_name)
        )
        self.parent_id = self._parent(experiment_name)
        self._label_experiment()

    def _label_experiment(self) -> None:
        """The experiment's kind (MLflow opens it on the runs table) and a note saying where to look;
        a note the user wrote is kept."""
        from ragkit.dashboard import experiment_tags

        current = self.client.get_experiment(self.experiment_id).tags
        ours = {
            "mlflow.experimentKind": lambda v: not v or v.endswith("_inferred"),  # the UI's own guess
            "mlflow.note.content": lambda v: "ragkit experiment" in v,
        }
        for key, value in experiment_tags(self.parent_id).items():
            if key not in current or (current[key] != value and ours[key](current[key])):
                self.client.set_experiment_tag(self.experiment_id, key, value)

    def _parent(self, name: str) -> str:
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=(
                f"tags.`ragkit.experiment_hash` = '{self.experiment_hash}' and tags.`ragkit.role` = 'parent'"
            ),
            max_results=1,
        )
        if runs:
            return runs[0].info.run_id
        tags = {"ragkit.experiment_hash": self.experiment_hash, "ragkit.role": "parent", **environment_tags()}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        return run.info.run_id

    def _children(self) -> list[Any]:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_id}'",
            max_results=5000,
        )

    def logged_children(self) -> dict[str, tuple[str, str, str]]:
        """(config_hash:questions_hash) -> (run id, run name, scoring key) of finished child runs.
        Unfinished ones (a kill between creating a child and finishing it) are remembered in
        ``orphans_`` and reused by :meth:`log_configuration`, so each configuration ends with
        exactly one child."""
        finished: dict[str, tuple[str, str, str]] = {}
        self.orphans_: dict[str, list[str]] = {}
        for run in self._children():
            key = run.data.tags.get("ragkit.child_key", "")
            if not key:
                continue
            if run.info.status == "FINISHED":
                scoring_key = run.data.tags.get("ragkit.scoring_key", "")
                finished[key] = (run.info.run_id, run.info.run_name, scoring_key)
            else:
                self.orphans_.setdefault(key, []).append(run.info.run_id)
        for key in [k for k in self.orphans_ if k in finished]:  # finished after all: drop the rest
            for run_id in self.orphans_.pop(key):
                self.client.delete_run(run_id)
        return finished

    def update_scores(
        self, run_id: str, *, metrics: dict[str, float], scoring_key: str, artifacts: Iterable[Path]
    ) -> None:
        """New scores of the same predictions (another judge, fixed scoring code): logged on the
        configuration's existing run (a metric's latest value is the current one), with the new
        scoring key and score files, so one configuration keeps one run."""
        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 1) for k, v in metrics.items() if v is not None and v == v],
            tags=[RunTag("ragkit.scoring_key", scoring_key)],
        )
        for path in artifacts:
            self.client.log_artifact(run_id, str(path))

    def rename(self, run_id: str, name: str) -> None:
        """A configuration's name follows the experiment (e.g. after an arm was added beside it)."""
        from mlflow.entities import RunTag

        tags = [RunTag("mlflow.runName", name), RunTag("ragkit.config_name", name)]
        self.client.log_batch(run_id, tags=tags)

    def log_configuration(
        self,
        *,
        name: str,
        config_hash: str,
        questions_hash: str,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        artifacts: Iterable[Path],
    ) -> str:
        from mlflow.entities import Metric, Param, RunTag

        from ragkit.dashboard import chart_name

        child_key = f"{config_hash}:{questions_hash}"
        all_tags = {
            "mlflow.parentRunId": self.parent_id,
            "ragkit.role": "configuration",
            "ragkit.config_hash": config_hash,
            "ragkit.config_name": name,
            "ragkit.questions_hash": questions_hash,
            "ragkit.child_key": child_key,
            **environment_tags(),
            **tags,
        }
        # the key goes on at creation, so a kill right after leaves an orphan that resume can find
        identity = {k: all_tags[k] for k in ("mlflow.parentRunId", "ragkit.role", "ragkit.child_key")}
        run_id = self._adopt_orphan(child_key, params)
        if run_id is None:
            run_id = self.client.create_run(self.experiment_id, run_name=name, tags=identity).info.run_id
        existing = self.client.get_run(run_id).data.params
        names = mlflow_names(params)
        # chart-view sections first (accuracy/..., cost/...), then what MLflow accepts in a name
        charted = {k: chart_name(k) for k in metrics}
        safe = mlflow_names(charted.values())
        metric_names = {k: safe[c] for k, c in charted.items()}
        now = int(time.time() * 1000)
        try:
            self.client.log_batch(
                run_id,
                metrics=[
                    Metric(key, float(metrics[k]), now, 0)
                    for k, key in metric_names.items()
                    if metrics[k] is not None and metrics[k] == metrics[k]
                ],
                params=[Param(names[k], _param(v)) for k, v in params.items() if names[k] not in existing],
                tags=[RunTag(k, _param(v)) for k, v in {"mlflow.runName": name, **all_tags}.items()],
            )
            for path in artifacts:
                self.client.log_artifact(run_id, str(path))
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")  # the next resume reuses it
            raise
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def _adopt_orphan(self, child_key: str, params: dict[str, Any]) -> str | None:
        """An unfinished child of this configuration to log into (its params, if any were logged,
        match: the child key includes the config hash); extra orphans are deleted."""
        orphans = getattr(self, "orphans_", {}).pop(child_key, [])
        for extra in orphans[1:]:
            self.client.delete_run(extra)
        if not orphans:
            return None
        names = mlflow_names(params)
        logged = self.client.get_run(orphans[0]).data.params
        if any(logged.get(names[k], _param(v)) != _param(v) for k, v in params.items()):
            self.client.delete_run(orphans[0])  # not the same settings after all: start clean
            return None
        self.client.update_run(orphans[0], status="RUNNING")
        return orphans[0]

    def log_parent(self, *, params: dict[str, Any], artifacts: Iterable[Path], texts: dict[str, str]) -> None:
        from mlflow.entities import Param

        current = self.client.get_run(self.parent_id).data.params
        names = mlflow_names(params)
        fresh = [Param(names[k], _param(v)) for k, v in params.items() if names[k] not in current]
        if fresh:
            self.client.log_batch(self.parent_id, params=fresh)
        for path in artifacts:
            self.client.log_artifact(self.parent_id, str(path))
        with tempfile.TemporaryDirectory() as tmp:
            for filename, text in texts.items():
                target = Path(tmp) / filename
                target.write_text(text, encoding="utf-8")
                self.client.log_artifact(self.parent_id, str(target))

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_id, status)


def questions_hash(example_ids: Iterable[str]) -> str:
    return stable_hash(sorted(example_ids))
