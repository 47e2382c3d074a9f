"""Run identity: a configuration's folder and MLflow run are named by what changes its predictions;
scoring settings have their own key, so re-scoring reuses the predictions. The experiment seed
seeds every component that has a seed."""

import json
from pathlib import Path

import mlflow

from ragkit.config import load_experiment
from ragkit.runner import run_experiment
from ragkit.types import stable_hash


def _children(experiment_dict):
    client = mlflow.MlflowClient(tracking_uri=experiment_dict["tracking_uri"])
    found = client.get_experiment_by_name(experiment_dict["name"])
    runs = client.search_runs([found.experiment_id], filter_string="tags.`ragkit.role` = 'configuration'")
    return runs


def test_display_settings_change_no_key(experiment_dict):
    before = load_experiment(experiment_dict)
    experiment_dict["evaluation"] = {"breakdown": ["level"]}
    after = load_experiment(experiment_dict)
    assert [c.hash for c in before.configurations] == [c.hash for c in after.configurations]
    assert [c.scoring_key for c in before.configurations] == [c.scoring_key for c in after.configurations]
    assert before.hash == after.hash


def test_scoring_settings_change_the_scoring_key_only(experiment_dict):
    before = load_experiment(experiment_dict)
    experiment_dict["evaluation"] = {"judge": {"type": "scripted", "default": "CORRECT"}}
    after = load_experiment(experiment_dict)
    assert [c.hash for c in before.configurations] == [c.hash for c in after.configurations]
    assert all(
        b.scoring_key != a.scoring_key
        for b, a in zip(before.configurations, after.configurations, strict=True)
    )


def test_rescoring_reuses_predictions_and_the_mlflow_run(experiment_dict):
    first = run_experiment(load_experiment(experiment_dict))
    assert all(r.generated == 6 for r in first)
    experiment_dict["evaluation"] = {"judge": {"type": "scripted", "default": "CORRECT"}, "breakdown": []}
    second = run_experiment(load_experiment(experiment_dict))
    assert [r.run_dir for r in second] == [r.run_dir for r in first]
    assert all(r.generated == 0 for r in second)  # nothing generated again
    assert all(r.summary["judge_correct"] == 1.0 for r in second)  # but scored by the judge
    summary = json.loads((second[0].run_dir / "summary.json").read_text())
    assert summary["scoring_key"] == second[0].configuration.scoring_key
    runs = _children(experiment_dict)
    assert len(runs) == 3  # one run per configuration, updated in place
    assert {r.data.tags["ragkit.scoring_key"] for r in runs} == {r.configuration.scoring_key for r in second}
    assert all(r.data.metrics["judge_correct"] == 1.0 for r in runs)


def test_a_folder_named_by_the_older_key_is_taken_over(experiment_dict):
    experiment = load_experiment(experiment_dict)
    first = run_experiment(experiment)
    base = Path(experiment_dict["output_dir"], experiment.name)
    legacy = base / stable_hash(first[0].configuration.resolved)  # the pre-split folder name
    first[0].run_dir.rename(legacy)
    again = run_experiment(load_experiment(experiment_dict))
    assert again[0].generated == 0 and again[0].run_dir == first[0].run_dir and not legacy.exists()


def test_the_experiment_seed_seeds_every_component(experiment_dict):
    experiment_dict["seed"] = 7
    experiment_dict["dataset"]["sample"] = 3
    experiment_dict["arms"].append({"strategy": "drag", "retriever": {"type": "bm25"}, "k": 1, "m": 1})
    experiment = load_experiment(experiment_dict)
    assert all(c.resolved["dataset"]["seed"] == 7 for c in experiment.configurations)
    drag = [c for c in experiment.configurations if c.resolved["strategy"]["type"] == "drag"]
    assert drag and drag[0].resolved["strategy"]["seed"] == 7
    experiment_dict["dataset"]["seed"] = 3  # an explicit component seed wins
    assert load_experiment(experiment_dict).configurations[0].resolved["dataset"]["seed"] == 3
    # a different seed samples different questions
    ids = {}
    for seed in (0, 7):
        experiment_dict["seed"] = seed
        experiment_dict["dataset"].pop("seed", None)
        from ragkit.config import build_component

        c = load_experiment(experiment_dict).configurations[0]
        ids[seed] = {e.id for e in build_component("dataset", c.resolved["dataset"]).load().examples}
    assert ids[0] != ids[7]
