"""Two runs of one experiment, kills between MLflow calls: nothing lost, nothing duplicated, one
child run per configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.config import load_experiment
from ragkit.predictions_file import read_predictions
from ragkit.run_lock import RunLockError, experiment_lock
from ragkit.runner import run_experiment

REPO = Path(__file__).parent.parent


def children(uri: str, name: str) -> list:
    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if r.data.tags.get("ragkit.role") == "configuration"]


def test_a_second_run_of_the_same_experiment_refuses_clearly(experiment_dict, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    runs = Path(experiment_dict["output_dir"]) / "test-exp"
    with experiment_lock(runs, "test-exp"):  # another process would hold this while it runs
        with pytest.raises(
            RunLockError, match=rf"experiment 'test-exp' is already running \(pid {os.getpid()}"
        ):
            run_experiment(load_experiment(experiment_dict))
        result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "already running" in errors[0] and "--wait" in errors[0]
    assert not any(runs.rglob("predictions.jsonl"))  # refused before anything ran


def test_concurrent_runs_lose_and_duplicate_nothing(experiment_dict, tmp_path):
    """Three processes at once on a new MLflow store: the same experiment twice (--wait: the second
    waits, then resumes) and another experiment beside them (the store's creation is serialised)."""
    first = tmp_path / "a.yaml"
    first.write_text(yaml.safe_dump(experiment_dict))
    second = tmp_path / "b.yaml"
    second.write_text(yaml.safe_dump({**experiment_dict, "name": "other-exp"}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "ragkit.cli", "run", "--wait"]
    processes = [
        subprocess.Popen(
            [*command, str(f)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        for f in (first, first, second)
    ]
    outputs = [p.communicate(timeout=600)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], "\n".join(outputs)
    uri = experiment_dict["tracking_uri"]
    for name in ("test-exp", "other-exp"):
        runs = children(uri, name)
        keys = [r.data.tags["ragkit.child_key"] for r in runs]
        assert len(keys) == 3 and len(set(keys)) == 3  # one child per configuration
        assert {r.info.status for r in runs} == {"FINISHED"}
        for folder in (Path(experiment_dict["output_dir"]) / name).iterdir():
            if folder.is_dir():
                lines = (folder / "predictions.jsonl").read_bytes().splitlines()
                assert len(lines) == 6 and len(read_predictions(folder / "predictions.jsonl")) == 6


def test_a_kill_between_creating_and_finishing_a_child_leaves_one_child(experiment_dict, monkeypatch):
    """kill -9 after MLflow created configuration 2's child and before it was finished: resume
    reuses that child instead of logging a second one."""
    client_class = mlflow.MlflowClient
    real_log_artifact, real_set_terminated = client_class.log_artifact, client_class.set_terminated
    state = {"artifacts": 0, "killed": False}

    def dying_log_artifact(self, run_id, local_path, artifact_path=None):
        if Path(local_path).name == "config.yaml":
            state["artifacts"] += 1
            if state["artifacts"] == 2:
                state["killed"] = True
                state["orphan"] = run_id
                raise KeyboardInterrupt  # the kill
        return real_log_artifact(self, run_id, local_path, artifact_path)

    def no_cleanup_after_kill(self, run_id, status=None, end_time=None):
        if state["killed"]:
            return None  # kill -9: nothing runs after the signal
        return real_set_terminated(self, run_id, status, end_time)

    monkeypatch.setattr(client_class, "log_artifact", dying_log_artifact)
    monkeypatch.setattr(client_class, "set_terminated", no_cleanup_after_kill)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(experiment_dict))
    uri = experiment_dict["tracking_uri"]
    assert sorted(r.info.status for r in children(uri, "test-exp")) == ["FINISHED", "RUNNING"]
    monkeypatch.setattr(client_class, "log_artifact", real_log_artifact)
    monkeypatch.setattr(client_class, "set_terminated", real_set_terminated)
    results = run_experiment(load_experiment(experiment_dict))
    runs = children(uri, "test-exp")
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    assert len({r.data.tags["ragkit.child_key"] for r in runs}) == 3
    assert results[1].run_id == state["orphan"]  # the orphan was reused, not duplicated
    assert [r.generated for r in results] == [0, 0, 6]  # nothing recomputed; the third had not run


def test_param_names_mlflow_rejects_are_logged_under_safe_names(experiment_dict):
    experiment_dict["generator"]["script"] = {"^who": "x", "France": "Paris"}
    experiment_dict["arms"] = [{"strategy": "full_context"}]
    (result,) = run_experiment(load_experiment(experiment_dict))
    params = (
        mlflow.MlflowClient(tracking_uri=experiment_dict["tracking_uri"]).get_run(result.run_id).data.params
    )
    assert params["generator.script._who"] == "x"
