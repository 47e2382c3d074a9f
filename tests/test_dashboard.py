"""What MLflow shows: traces per question, assessments, grouped metrics, the parent's summary, links."""

import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml

from ragkit.config import ConfigError, load_experiment
from ragkit.dashboard import best_per_budget, chart_name, plain_metrics, ui_pages
from ragkit.report import load_results
from ragkit.runner import run_experiment


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One tracking store for the module (creating an MLflow database takes seconds): the test
    experiment with every question traced, run once."""
    from tests.conftest import FILLER, QUESTIONS, SCRIPT

    tmp = tmp_path_factory.mktemp("dashboard")
    data = tmp / "qa.jsonl"
    with open(data, "w") as handle:
        for qid, question, answers, title, evidence in QUESTIONS:
            documents = [{"id": t, "title": t, "text": text} for t, text in FILLER]
            documents.insert(1, {"id": title, "title": title, "text": evidence + " More words follow here."})
            record = {"id": qid, "question": question, "answers": answers, "documents": documents}
            handle.write(json.dumps({**record, "evidence": [{"doc_id": title, "text": evidence}]}) + "\n")
    experiment = {
        "name": "test-exp",
        "dataset": {"type": "jsonl", "path": str(data)},
        "generator": {"type": "scripted", "script": SCRIPT, "default": "no idea", "context_window": 512},
        "arms": [
            {"strategy": "rag", "retriever": {"type": "bm25"}, "k": [1, 2]},
            {"strategy": "full_context"},
        ],
        "tracking_uri": f"sqlite:///{tmp / 'mlflow.db'}",
        "output_dir": str(tmp / "runs"),
        "cache_dir": str(tmp / "cache"),
        "batch_size": 2,
        "tracking": {"traces": "all"},
    }
    results = run_experiment(load_experiment(experiment))
    client = mlflow.MlflowClient(experiment["tracking_uri"])
    return experiment, results, client, tmp


def _experiment(client, name="test-exp"):
    return client.get_experiment_by_name(name)


def test_a_trace_per_question_with_spans_and_assessments(store):
    _, results, client, _ = store
    experiment = _experiment(client)
    traces = client.search_traces(locations=[experiment.experiment_id], max_results=100)
    assert len(traces) == 3 * 6  # three configurations, six questions
    rag = results[0]
    mine = [t for t in traces if t.info.request_metadata.get("mlflow.sourceRun") == rag.run_id]
    assert len(mine) == 6 and {t.info.tags["ragkit.example_id"] for t in mine} == {
        f"q{i}" for i in range(1, 7)
    }
    trace = next(t for t in mine if t.info.tags["ragkit.example_id"] == "q1")
    spans = {s.name: s for s in trace.data.spans}
    assert spans["rag k=1"].parent_id is None
    assert {"retrieve", "pack context", "generate [1]", "score"} <= set(spans)
    assert spans["retrieve"].outputs[0]["chunk_id"] == "France#0"
    call = spans["generate [1]"]
    assert "capital of France" in call.inputs["messages"][-1]["content"]
    assert call.outputs["content"] == "Paris"
    prediction = json.loads((rag.run_dir / "predictions.jsonl").read_text().splitlines()[0])
    assert call.attributes["mlflow.chat.tokenUsage"]["input_tokens"] == prediction["cost"]["input_tokens"]
    assert spans["score"].outputs["contains_answer"] == 1
    # spans are laid end to end inside the root, each as long as the prediction measured
    root = spans["rag k=1"]
    assert root.start_time_ns <= spans["retrieve"].start_time_ns < spans["generate [1]"].start_time_ns
    assert spans["score"].end_time_ns <= root.end_time_ns
    seconds = (spans["retrieve"].end_time_ns - spans["retrieve"].start_time_ns) / 1e9
    retrieve = prediction["provenance"]["stages"][0]
    assert retrieve["name"] == "retrieve"
    assert seconds == pytest.approx(max(retrieve["seconds"], 1e-6), abs=1e-6)
    assessments = {a.name: a for a in trace.info.assessments}
    assert assessments["contains_answer"].value == 1 and assessments["f1"].value == 1.0
    assert set(assessments) == {"contains_answer", "f1"}  # EM and evidence recall: in the span
    assert spans["score"].inputs["references"] == ["Paris"]
    wrong = next(t for t in mine if t.info.tags["ragkit.example_id"] == "q5")
    assert {a.name: a.value for a in wrong.info.assessments}["contains_answer"] == 0


def test_traces_are_sampled_per_configuration_and_can_be_off(store):
    experiment, _, client, _ = store
    run_experiment(load_experiment({**experiment, "name": "sampled", "tracking": {"traces": 2}}))
    traces = client.search_traces(locations=[_experiment(client, "sampled").experiment_id], max_results=100)
    assert len(traces) == 3 * 2
    # the same questions in every configuration, so their traces compare side by side
    by_config: dict[str, set[str]] = {}
    for t in traces:
        by_config.setdefault(t.info.tags["ragkit.config_name"], set()).add(t.info.tags["ragkit.example_id"])
    assert list(by_config.values()) == [{"q1", "q2"}] * 3

    off = {**experiment, "name": "quiet", "tracking": {"traces": "off"}}
    run_experiment(load_experiment(off))
    assert client.search_traces(locations=[_experiment(client, "quiet").experiment_id]) == []


def test_yaml_off_and_bad_values(experiment_dict, tmp_path):
    path = tmp_path / "e.yaml"
    plain = {k: v for k, v in experiment_dict.items() if k != "tracking"}  # YAML 'off', not False
    path.write_text(yaml.safe_dump(plain) + "tracking:\n  traces: off\n")
    assert load_experiment(path).spec.tracking.trace_limit() == 0
    for bad in ("some", -1, 2.5):
        with pytest.raises(ConfigError, match="traces"):
            load_experiment({**experiment_dict, "tracking": {"traces": bad}})


def test_grouped_metric_names_and_report_reads_them(store):
    experiment, results, client, _ = store
    metrics = client.get_run(results[0].run_id).data.metrics
    assert metrics["accuracy/contains_answer"] == pytest.approx(4 / 6)
    assert {"cost/effective_context_tokens", "cost/seconds_per_question", "interval/f1_ci_low"} <= set(
        metrics
    )
    parent = client.get_run(results[0].run_id).data.tags["mlflow.parentRunId"]
    frame = load_results(parent, experiment["tracking_uri"])
    assert frame["contains_answer"].tolist() == pytest.approx([4 / 6] * 3)
    assert "effective_context_tokens" in frame and not any("/" in c for c in frame.columns)
    assert chart_name("judge_correct_ci_high") == "interval/judge_correct_ci_high"
    assert plain_metrics({"f1": 1.0, "accuracy/em": 0.5, "contains_answer_by_k/rag": 0.2}) == {
        "f1": 1.0,
        "em": 0.5,
    }


def _table(client, run_id, name):
    """A logged table (``client.load_table`` reads through the global tracking URI, not the client's)."""
    return pd.read_json(client.download_artifacts(run_id, name), orient="split")


def test_parent_summary_tables_plots_curves_and_landing(store):
    experiment_dict, results, client, _ = store
    experiment = _experiment(client)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    parent_id = client.get_run(results[0].run_id).data.tags["mlflow.parentRunId"]
    parent = client.get_run(parent_id)
    artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"results_table.json", "best_per_budget.json", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parent_id, "plots")}
    assert {"plots/contains_answer_vs_effective_context.png", "plots/contains_answer_by_k.png"} <= plots
    table = _table(client, parent_id, "results_table.json")
    assert sorted(table["configuration"]) == sorted(r.configuration.name for r in results)
    assert "rag k=1" in parent.data.tags["mlflow.note.content"]  # the cheapest of the equally good
    curve = client.get_metric_history(parent_id, "contains_answer_by_k/rag")
    assert [(m.step, m.value) for m in curve] == [(1, pytest.approx(4 / 6)), (2, pytest.approx(4 / 6))]
    assert client.get_metric_history(parent_id, "best_within_budget/contains_answer")

    run_experiment(load_experiment(experiment_dict))  # a re-run replaces the tables instead of appending rows
    again = _table(client, parent_id, "results_table.json")
    assert len(again) == 3


def test_best_per_budget_picks_the_best_that_fits():
    results = pd.DataFrame(
        {
            "config_name": ["small", "mid", "big"],
            "contains_answer": [0.3, 0.5, 0.4],
            "effective_context_tokens": [100.0, 600.0, 3000.0],
        }
    )
    best = best_per_budget(results, "contains_answer")
    assert best["budget_tokens"].tolist() == [128, 256, 512, 1024, 2048, 4096]
    assert best["configuration"].tolist() == ["small", "small", "small", "mid", "mid", "mid"]


def test_ui_pages_link_the_runs_sorted_by_the_metric():
    pages = ui_pages("http://127.0.0.1:5000", "7", "abc")
    assert pages["runs"][1].startswith("http://127.0.0.1:5000/#/experiments/7/runs?orderByKey=metrics.")
    assert "accuracy%2Fcontains_answer" in pages["runs"][1]
    assert pages["chart"][1].endswith("compareRunsMode=CHART")
    assert pages["summary"][1] == "http://127.0.0.1:5000/#/experiments/7/runs/abc/artifacts"


def _check_script():
    """scripts/dashboard_check.py as a module (scripts/ is not a package)."""
    if "dashboard_check" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "scripts" / "dashboard_check.py"
        spec = importlib.util.spec_from_file_location("dashboard_check", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["dashboard_check"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["dashboard_check"]


@pytest.mark.skipif(_check_script().find_chromium() is None, reason="Chromium is not installed")
def test_dashboard_in_headless_chromium(store, tmp_path, monkeypatch):
    """The same check as scripts/dashboard_check.py on the quickstart store, on 3 questions."""
    experiment_dict = {**store[0], "name": "three", "limit": 3}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    run_experiment(load_experiment(path))
    monkeypatch.chdir(tmp_path)
    pages = _check_script().check(str(path), tmp_path / "shots", budget_ms=12000)
    assert {p.name for p in pages} == {"landing", "runs", "chart", "trace", "summary"}
    assert {p.name: p.missing for p in pages} == {p.name: [] for p in pages}
    assert all(p.screenshot.stat().st_size > 10_000 for p in pages)


def test_check_script_without_chromium_says_so(monkeypatch, tmp_path, capsys):
    module = _check_script()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert module.main([str(tmp_path / "missing.yaml"), "--out", str(tmp_path)]) == 2
    assert "no Chromium" in capsys.readouterr().err


def test_tracing_leaves_the_global_tracking_uri_as_it_was(monkeypatch, tmp_path):
    """MLflow's tracer exports to the global URI, which ragkit points at the store only while it
    logs traces: MLFLOW_TRACKING_URI (which picks ragkit's default store) must not leak."""
    from ragkit.traces import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    with tracking_uri(f"sqlite:///{tmp_path / 'x.db'}"):
        assert mlflow.get_tracking_uri().endswith("x.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ and not mlflow.tracking.is_tracking_uri_set()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    with tracking_uri(f"sqlite:///{tmp_path / 'x.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"
