import json

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ragkit.cli import app
from ragkit.config import load_experiment
from ragkit.runner import run_experiment

# The scripted model answers only when the gold sentence is in what it reads, so scores rise with k.
SCRIPT = {
    "capital of France is Paris": "Paris",
    "written by Bram Stoker": "Bram Stoker",
    "sky is blue": "blue",
    "spider has eight legs": "eight",
}


QUESTIONS = [
    ("q1", "Which city is the capital of France?", "Paris", "The capital of France is Paris."),
    ("q2", "Who wrote the novel Dracula?", "Bram Stoker", "Dracula was written by Bram Stoker."),
    ("q3", "What colour is the sky on a clear day?", "blue", "On a clear day the sky is blue."),
    ("q4", "How many legs does a spider have?", "eight", "A spider has eight legs."),
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One small finished experiment shared by the tests of this module (it takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("suggest")
    qa_jsonl = tmp_path / "qa.jsonl"
    with open(qa_jsonl, "w") as handle:
        for qid, question, answer, fact in QUESTIONS:
            documents = [fact + " More words follow.", "Bread is made from flour.", "Chess has 64 squares."]
            record = {"id": qid, "question": question, "answers": [answer], "documents": documents}
            handle.write(json.dumps(record) + "\n")
    spec = {
        "name": "suggest-test",
        "dataset": {"type": "jsonl", "path": str(qa_jsonl)},
        "generator": {"type": "scripted", "script": SCRIPT, "default": "no idea", "context_window": 2048},
        "arms": [
            {"strategy": "rag", "retriever": {"type": "bm25"}, "k": [0, 1, 2]},
            {
                "strategy": "drag",
                "retriever": {"type": "bm25"},
                "demonstrations": {"type": "jsonl", "path": str(qa_jsonl)},
                "k": [0, 1],
                "m": [1],
            },
            {"strategy": "full_context"},
        ],
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(spec))
    run_experiment(load_experiment(path))
    return path, spec


def test_suggest_prints_ranked_budgets_writes_files_and_logs_to_the_parent_run(finished, tmp_path):
    path, spec = finished
    out = tmp_path / "suggest"
    result = CliRunner().invoke(
        app,
        ["suggest", str(path), "--budget", "60", "--budget", "1k", "--output", str(out)],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "budget 60 tokens" in result.output and "budget 1024 tokens" in result.output
    assert "regret" in result.output and "oracle route" in result.output
    table = pd.read_csv(out / "suggestions.csv")
    assert (table["tokens"] <= table["budget"]).all()
    assert set(table["budget"]) == {60, 1024}
    small = table[table["budget"] == 60]
    assert set(small["configuration"]) <= {"rag k=0", "drag k=0"}  # the only ones that fit 60 tokens
    assert (out / "scaling_0.png").stat().st_size > 1000 and (out / "calibration_0.png").exists()
    assert (out / "regret.csv").exists() and (out / "oracle_route.csv").exists()
    [fitted] = json.loads((out / "allocation_fit.json").read_text()).values()
    assert fitted["dims"] == ["k", "m", "n"] and fitted["log_offsets"] == [0.01, 0.01, 0.01]
    [per_strategy] = fitted["informativeness"].values()
    assert per_strategy["drag"]["from"] == {"k": "drag", "m": "drag"}  # rag k=0/k=1 and drag k=0 m=1 ran
    client = mlflow.MlflowClient(tracking_uri=spec["tracking_uri"])
    experiment = client.get_experiment_by_name("suggest-test")
    [parent] = client.search_runs([experiment.experiment_id], filter_string="tags.`ragkit.role` = 'parent'")
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "suggest/contains_answer")}
    wanted = {"suggestions.csv", "scaling_0.png", "calibration_0.png", "allocation_fit.json", "regret.csv"}
    wanted |= {"suggestions.json", "regret.json"}  # as MLflow tables too
    assert {f"suggest/contains_answer/{name}" for name in wanted} <= logged
    curve = client.get_metric_history(parent.info.run_id, "suggest/contains_answer_of_pick")
    assert sorted(m.step for m in curve) == [60, 1024]


def test_suggest_reads_an_mlflow_parent_run_too(finished, tmp_path):
    _, spec = finished
    client = mlflow.MlflowClient(tracking_uri=spec["tracking_uri"])
    experiment = client.get_experiment_by_name("suggest-test")
    [parent] = client.search_runs([experiment.experiment_id], filter_string="tags.`ragkit.role` = 'parent'")
    result = CliRunner().invoke(
        app,
        [
            "suggest",
            parent.info.run_id,
            "--budget",
            "1k",
            "--tracking-uri",
            spec["tracking_uri"],
            "--output",
            str(tmp_path / "s2"),
            "--no-log",
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert (pd.read_csv(tmp_path / "s2" / "suggestions.csv")["tokens"] <= 1024).all()


def test_bad_budget_or_by_is_a_clear_error(finished):
    path, _ = finished
    result = CliRunner().invoke(app, ["suggest", str(path), "--budget", "lots"])
    assert result.exit_code == 2 and "--budget" in result.output
    result = CliRunner().invoke(app, ["suggest", str(path), "--budget", "1k", "--by", "dataset"])
    assert result.exit_code == 2 and "--by" in result.output
