"""The plan -> execute -> record seam: units, the local executor, the recorder, caches handed down."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragkit import registry
from ragkit.cache import Cache, JournalingCache
from ragkit.config import ConfigError, load_experiment
from ragkit.executors.base import Executor
from ragkit.predictions_file import read_predictions
from ragkit.recording import Recorder
from ragkit.runner import plan, prepare, run_experiment
from ragkit.units import UnitResult
from tests.conftest import assert_same_results


def test_executors_are_a_registry_kind():
    assert {"local", "ray"} <= set(registry.names("executor"))
    assert all(issubclass(registry.get("executor", n), Executor) for n in registry.names("executor"))


def test_the_executor_is_validated_and_not_part_of_any_identity(experiment_dict):
    local = load_experiment(experiment_dict)
    assert local.executor == {"type": "local", "version": "1"}
    on_ray = load_experiment({**experiment_dict, "executor": {"type": "ray", "address": "auto"}})
    assert on_ray.executor["address"] == "auto" and on_ray.executor["max_retries"] == 3
    assert on_ray.hash == local.hash
    assert [c.hash for c in on_ray.configurations] == [c.hash for c in local.configurations]
    with pytest.raises(ConfigError, match=r"executor\.adress: unknown parameter.*did you mean 'address'"):
        load_experiment({**experiment_dict, "executor": {"type": "ray", "adress": "auto"}})
    with pytest.raises(ConfigError, match="executor: unknown executor 'rey'; did you mean 'ray'"):
        load_experiment(experiment_dict, executor="rey")
    with pytest.raises(ConfigError, match="cannot be swept"):
        load_experiment({**experiment_dict, "executor": ["local", "ray"]})


def test_the_command_line_executor_keeps_the_files_settings_for_the_same_type(experiment_dict):
    configured = {**experiment_dict, "executor": {"type": "ray", "address": "auto", "workers": 2}}
    assert load_experiment(configured, executor="ray").executor["workers"] == 2
    assert load_experiment(configured, executor="local").executor["type"] == "local"
    given = load_experiment(experiment_dict, executor="{type: ray, num_cpus: 2}").executor
    assert given["type"] == "ray" and given["num_cpus"] == 2


def test_plan_shares_retrieval_first_then_checkpoint_batches(experiment_dict):
    prepared = prepare(load_experiment(experiment_dict))
    ids = [e.id for e in next(iter(prepared.datasets.values())).examples]
    units = plan(prepared, {0: ids, 1: ids, 2: ids[3:]})
    kinds = [u.kind for u in units]
    assert kinds == ["retrieve"] + ["generate"] * 8  # one retriever shared by k=1 and k=2
    retrieval = units[0]
    assert retrieval.question_ids == ids and retrieval.batches[0] == tuple(ids[:2])  # batch_size 2
    assert retrieval.depths[retrieval.retriever] == 2  # the deepest k of the sweep
    by_config = [
        [u.batches[0] for u in units if u.kind == "generate" and u.config_index == i] for i in range(3)
    ]
    assert by_config[2] == [tuple(ids[3:5]), tuple(ids[5:])]  # resumes at the first unanswered question
    assert all(
        u.after == (retrieval.key,) for u in units if u.config_index in (0, 1) and u.kind == "generate"
    )
    assert all(not u.after for u in units if u.config_index == 2)  # full context retrieves nothing
    assert len({u.key for u in units}) == len(units)
    assert pickle.loads(pickle.dumps(units)) == units  # units travel to other processes


def test_the_experiment_cache_dir_governs_every_cache(experiment_dict, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path / "elsewhere"))
    experiment_dict["arms"][0]["retriever"] = "dense-minilm"
    experiment_dict["arms"][0]["k"] = 1
    experiment_dict["arms"] = experiment_dict["arms"][:1]
    prepared = prepare(load_experiment(experiment_dict))
    strategy = prepared.strategies[0]
    assert strategy.retrieval.retriever.inner.stage_cache() is prepared.cache  # handed down, not global
    assert prepared.generators[next(iter(prepared.generators))].inner.stage_cache() is prepared.cache
    assert prepared.cache.root == (tmp_path / "cache").resolve()


def test_results_arriving_out_of_order_or_twice_are_recorded_once_in_plan_order(experiment_dict, tmp_path):
    experiment = load_experiment(experiment_dict)
    prepared = prepare(experiment)
    output = tmp_path / "runs" / experiment.name
    seen = []
    uri = experiment_dict["tracking_uri"]
    recorder = Recorder(prepared, output_dir=output, uri=uri, indices=[0], progress=lambda *a: seen.append(a))
    units = plan(prepared, recorder.todo())
    recorder.begin(units)
    results = [prepared.worker.run(u) for u in units]
    retrieval, first, second, third = results
    for result in (retrieval, third, second, third, first, second):  # a retried unit comes back twice
        recorder.record(result)
    [result] = recorder.results()
    lines = (output / experiment.configurations[0].hash / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["example_id"] for line in lines] == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert result.generated == 6 and result.summary["n_questions"] == 6
    assert seen[-1] == ("rag k=1", 6, 6)
    assert ("rag k=1", 2, 6) in seen  # the third batch counts while it waits for the second


def test_local_executor_reports_progress_inside_a_unit(experiment_dict):
    calls = []
    run_experiment(load_experiment(experiment_dict), progress=lambda *a: calls.append(a))
    assert ("full_context", 0, 6) in calls and ("full_context", 6, 6) in calls


def test_a_custom_executor_is_one_class(experiment_dict):
    class Reversed(Executor):
        """Runs generation units last first: recording must not care."""

        def execute(self, units, prepared, recorder):
            retrieval = [u for u in units if u.kind == "retrieve"]
            for unit in retrieval + [u for u in units if u.kind == "generate"][::-1]:
                recorder.record(prepared.worker.run(unit))

    reference = run_experiment(load_experiment(experiment_dict))
    experiment_dict["output_dir"] += "-reversed"
    experiment_dict["cache_dir"] += "-reversed"
    results = run_experiment(load_experiment(experiment_dict), executor=Reversed())
    assert_same_results(reference, results)


def test_journaling_cache_sends_back_what_it_wrote(tmp_path):
    worker = JournalingCache(tmp_path / "worker")
    worker.put("retrieval", "a", {"hits": [1]})
    worker.put_array("dense-embeddings", "b" * 32, np.arange(4, dtype=np.float32))
    journal = pickle.loads(pickle.dumps(worker.take_journal()))
    assert len(journal) == 2 and len(worker.take_journal()) == 0
    driver = Cache(tmp_path / "driver")
    journal.store(driver)
    assert driver.get("retrieval", "a") == {"hits": [1]}
    assert np.array_equal(driver.get_array("dense-embeddings", "b" * 32), np.arange(4))
    other = JournalingCache(tmp_path / "other")
    journal.store(other)  # a seed is stored, not sent back again
    assert other.get("retrieval", "a") == {"hits": [1]} and len(other.take_journal()) == 0
    result = UnitResult("u", journal=journal)
    assert pickle.loads(pickle.dumps(result)).journal.values == journal.values


def test_importing_the_cli_changes_no_environment():
    code = (
        "import os; before = dict(os.environ); import ragkit.cli, logging;"
        " assert dict(os.environ) == before, set(os.environ) ^ set(before);"
        " assert not logging.getLogger().handlers"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_OFFLINE")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_predictions_survive_in_plan_order_after_a_kill_between_units(experiment_dict, monkeypatch):
    from ragkit.worker import Worker

    original = Worker.run
    calls = {"n": 0}

    def dying(self, unit, progress=None):
        calls["n"] += 1
        if calls["n"] == 3:  # the retrieval unit, the first batch, then killed
            raise KeyboardInterrupt
        return original(self, unit, progress)

    monkeypatch.setattr(Worker, "run", dying)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(load_experiment(experiment_dict))
    monkeypatch.setattr(Worker, "run", original)
    results = run_experiment(load_experiment(experiment_dict))
    first = read_predictions(results[0].run_dir / "predictions.jsonl")
    assert list(first) == ["q1", "q2", "q3", "q4", "q5", "q6"] and results[0].generated == 4


def test_the_ray_executor_without_ray_fails_before_anything_runs(experiment_dict, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match=r"executor: the ray executor needs Ray: pip install"):
        run_experiment(load_experiment(experiment_dict, executor="ray"))
    assert not Path(experiment_dict["output_dir"]).exists()


def test_check_names_a_missing_ray_as_one_error_line(experiment_dict, tmp_path, monkeypatch):
    import yaml
    from typer.testing import CliRunner

    from ragkit.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    result = CliRunner().invoke(app, ["check", str(path), "--executor", "ray"])
    assert result.exit_code == 2
    assert "executor: the ray executor needs Ray" in " ".join(result.output.split())
    assert CliRunner().invoke(app, ["check", str(path)]).exit_code == 0


def test_a_budget_smaller_than_the_prompt_names_the_arm_and_leaves_no_run(experiment_dict):
    import mlflow

    experiment_dict["arms"][0]["budget"] = 8
    with pytest.raises(ConfigError, match=r"arms\[0\]\.budget: configuration 'rag k=1': the prompt without"):
        run_experiment(load_experiment(experiment_dict))
    client = mlflow.MlflowClient(experiment_dict["tracking_uri"])
    assert client.get_experiment_by_name("test-exp") is None  # MLflow was never opened


def test_comparing_runs_ignores_what_measured_seconds_decide():
    """An hourly-priced generator charges measured seconds, so dollars differ between two runs
    of the same configuration exactly as seconds do; answers and tokens must not be ignored."""
    from ragkit.recording import comparable

    def record(seconds: float, answer: str = "Paris") -> dict:
        cost = {"input_tokens": 10, "seconds": seconds, "dollars": seconds * 0.1 / 3600}
        return {"answer": answer, "cost": cost, "provenance": {"calls": [{"cached": seconds > 1}]}}

    assert comparable(record(1.0)) == comparable(record(2.5))
    assert comparable(record(1.0)) != comparable(record(1.0, answer="Lyon"))
