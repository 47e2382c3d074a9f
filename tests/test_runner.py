import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from ragkit.config import load_experiment
from ragkit.runner import plan, prepare, read_predictions, run_experiment
from ragkit.strategies.rag import RAG


def run(experiment_dict, **kwargs):
    return run_experiment(load_experiment(experiment_dict), **kwargs)


def run_units(prepared, indices):
    """Execute the units of some configurations on the prepared worker, recording nothing."""
    todo = {i: [e.id for e in next(iter(prepared.datasets.values())).examples] for i in indices}
    return [prepared.worker.run(unit) for unit in plan(prepared, todo)]


def test_end_to_end_scores_and_files(experiment_dict):
    results = run(experiment_dict)
    assert [r.configuration.name for r in results] == ["rag k=1", "rag k=2", "full_context"]
    for r in results:
        # the script answers q1-q4 right and q5-q6 wrong, whatever the context
        assert r.summary["contains_answer"] == pytest.approx(4 / 6)
        assert r.summary["n_questions"] == 6
        assert (r.run_dir / "scores.parquet").exists() and (r.run_dir / "summary.json").exists()
        assert r.generated == 6
    scores = results[0].scores.set_index("example_id")
    assert scores.loc["q3", "em"] == 1.0  # "It is blue." -> "blue"
    assert scores.loc["q4", "f1"] == pytest.approx(2 / 3)  # "eight legs" vs "eight"
    # more context costs more: mean effective context grows with k, full context is the largest
    tokens = [r.summary["effective_context_tokens"] for r in results]
    assert tokens[0] < tokens[1] < tokens[2]


def test_effective_context_equals_prompt_tokens(experiment_dict):
    results = run(experiment_dict)
    predictions = read_predictions(results[1].run_dir / "predictions.jsonl")
    experiment = load_experiment(experiment_dict)
    prepared = prepare(experiment)
    generator = next(iter(prepared.generators.values()))
    strategy = prepared.strategies[1]
    dataset = next(iter(prepared.datasets.values()))
    estimates = strategy.estimate(dataset.examples, generator, dataset.corpus)
    for example, estimate in zip(dataset.examples, estimates, strict=True):
        cost = predictions[example.id].cost
        assert cost.input_tokens == estimate.input_tokens  # estimate is exact for one-call strategies
        assert cost.calls == 1
        assert len(predictions[example.id].provenance.context_ids) == 2


def test_k_sweep_retrieves_once_per_question(experiment_dict):
    prepared = prepare(load_experiment(experiment_dict))
    results = run_units(prepared, [0, 1])
    calls = sum(r.calls_ for r in prepared.retrievers)
    assert calls == 6  # k=1 and k=2 share one retrieval at depth 2 per question
    assert sum(len(r.predictions) for r in results) == 12


def test_resume_after_kill_redoes_nothing(experiment_dict, monkeypatch):
    original = RAG.run
    calls = {"n": 0}

    def dying_run(self, examples, generator, corpus=None):
        calls["n"] += 1
        if calls["n"] == 2:  # killed during the second batch of the first configuration
            raise KeyboardInterrupt
        return original(self, examples, generator, corpus)

    monkeypatch.setattr(RAG, "run", dying_run)
    with pytest.raises(KeyboardInterrupt):
        run(experiment_dict)
    run_dir = next(p for p in Path(experiment_dict["output_dir"], "test-exp").iterdir() if p.is_dir())
    assert len(read_predictions(run_dir / "predictions.jsonl")) == 2  # the first batch survived
    with open(run_dir / "predictions.jsonl", "a") as handle:
        handle.write('{"example_id": "q3", "answ')  # a write cut by the kill
    monkeypatch.setattr(RAG, "run", original)
    results = run(experiment_dict)
    assert results[0].generated == 4  # only the unanswered questions (the cut line is redone)
    assert results[0].summary["n_questions"] == 6
    again = run(experiment_dict)
    assert [r.generated for r in again] == [0, 0, 0]  # a finished sweep generates nothing


def test_generation_cache_survives_a_deleted_run_folder(experiment_dict):
    first = run(experiment_dict)
    for r in first:
        (r.run_dir / "predictions.jsonl").unlink()
    prepared = prepare(load_experiment(experiment_dict))
    run_units(prepared, range(3))
    assert sum(g.generated_ for g in prepared.generators.values()) == 0  # all answers from the cache


def test_mlflow_layout(experiment_dict):
    results = run(experiment_dict)
    run(experiment_dict)  # a re-run must not duplicate child runs
    mlflow.set_tracking_uri(experiment_dict["tracking_uri"])
    runs = mlflow.search_runs(experiment_names=["test-exp"])
    parents = runs[runs["tags.ragkit.role"] == "parent"]
    children = runs[runs["tags.ragkit.role"] == "configuration"]
    assert len(parents) == 1 and len(children) == 3
    parent_id = parents["run_id"].iloc[0]
    assert set(children["tags.mlflow.parentRunId"]) == {parent_id}
    assert set(children["params.strategy.type"]) == {"rag", "full_context"}
    assert set(children["params.strategy.retrieval.k"].dropna()) == {"1", "2"}
    assert set(children["params.strategy.retrieval.retriever.type"].dropna()) == {"bm25"}
    # metric keys are grouped for MLflow's chart view (ragkit.dashboard.chart_name)
    assert children["metrics.accuracy/contains_answer"].tolist() == pytest.approx([4 / 6] * 3)
    low, accuracy = (
        children["metrics.interval/contains_answer_ci_low"],
        children["metrics.accuracy/contains_answer"],
    )
    assert (low < accuracy).all()
    assert children["metrics.cost/effective_context_tokens"].gt(0).all()
    assert set(children["tags.ragkit.config_hash"]) == {r.configuration.hash for r in results}
    client = mlflow.MlflowClient(experiment_dict["tracking_uri"])
    child_id = children["run_id"].iloc[0]
    artifacts = {a.path for a in client.list_artifacts(child_id)}
    assert {"scores.parquet", "config.yaml", "predictions.jsonl"} <= artifacts
    local = client.download_artifacts(child_id, "scores.parquet")
    assert len(pd.read_parquet(local)) == 6
    parent_artifacts = {a.path for a in client.list_artifacts(parent_id)}
    assert {"experiment.yaml", "results.csv"} <= parent_artifacts

    # A configuration logged under an older name (naming rules changed) is renamed, not duplicated.
    client.set_tag(child_id, "mlflow.runName", "old name")
    run(experiment_dict)
    again = mlflow.search_runs(experiment_names=["test-exp"])
    assert len(again) == 4 and "old name" not in set(again["tags.mlflow.runName"])
    assert client.get_run(child_id).data.tags["ragkit.config_name"] == client.get_run(child_id).info.run_name


def test_limit_runs_a_prefix(experiment_dict):
    results = run(experiment_dict, limit=3)
    assert all(r.summary["n_questions"] == 3 for r in results)
    summary = json.loads((results[0].run_dir / "summary.json").read_text())
    assert summary["n_questions"] == 3


def test_scores_with_mixed_type_meta_are_written(tmp_path):
    from ragkit.runner import parquet_safe

    frame = pd.DataFrame(
        {"meta_context_order": [3, "1,2", None], "meta_parts": [[1, 2], [3], None], "x": [1, 2, 3]}
    )
    import pyarrow as pa

    with pytest.raises((pa.ArrowTypeError, pa.ArrowInvalid)):  # what Arrow does with the raw frame
        frame.to_parquet(tmp_path / "raw.parquet")
    safe = parquet_safe(frame)
    safe.to_parquet(tmp_path / "safe.parquet")
    back = pd.read_parquet(tmp_path / "safe.parquet")
    assert (
        back["meta_context_order"].tolist()[:2] == ["3", "1,2"] and back["meta_context_order"].isna().iloc[2]
    )
    assert list(back["meta_parts"].iloc[0]) == [1, 2]  # a column Arrow can write is left as it is


def test_checkpoints_follow_the_generator_batch():
    from types import SimpleNamespace

    from ragkit.cached import CachedGenerator
    from ragkit.runner import checkpoint_every

    one_at_a_time = SimpleNamespace(batch_size=1)
    assert checkpoint_every(16, one_at_a_time) == 1
    assert checkpoint_every(16, CachedGenerator.__new__(CachedGenerator)) == 16  # no batch size known
    wrapped = CachedGenerator.__new__(CachedGenerator)
    wrapped.inner = SimpleNamespace(batch_size=8)
    assert checkpoint_every(16, wrapped) == 8 and checkpoint_every(4, wrapped) == 4


def test_runs_written_with_flat_retrieval_settings_are_still_reported(experiment_dict):
    """A run folder from before the retrieval settings were nested (flat config.yaml, another
    hash) is found by its settings and reported as current: only the layout changed."""
    import yaml

    from ragkit.report import load_results

    results = run(experiment_dict)
    folder = results[0].run_dir
    config = yaml.safe_load((folder / "config.yaml").read_text())
    config["strategy"] = {
        **{k: v for k, v in config["strategy"].items() if k != "retrieval"},
        **config["strategy"]["retrieval"],
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    folder.rename(folder.with_name("oldflatlayout"))
    path = Path(experiment_dict["output_dir"]) / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    table = load_results(path).set_index("config_name")
    assert table.loc["rag k=1", "config_hash"] == "oldflatlayout"
    assert not table.loc["rag k=1", "older_version"] and table.loc["rag k=1", "strategy.retrieval.k"] == 1


def test_predictions_written_before_provenance_was_typed_are_read(tmp_path):
    old = {
        "example_id": "q1",
        "answer": "Paris",
        "cost": {"input_tokens": 10, "calls": 1},
        "provenance": {
            "raw_answer": "Paris.",
            "context_ids": ["a#0"],
            "evidence_recall": 1.0,
            "gold_survived": True,
            "dropped_tokens": 3,
            "cached": False,
            "compression": 0.5,
            "demo_ids": ["p1"],
        },
    }
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps(old) + "\n")
    [p] = read_predictions(path).values()
    assert p.provenance.raw_answer == "Paris." and p.provenance.context_ids == ["a#0"]
    assert p.provenance.gold_survived is True and p.provenance.dropped_tokens == 3
    assert p.provenance.measures == {"compression": 0.5} and p.provenance.details == {"demo_ids": ["p1"]}
