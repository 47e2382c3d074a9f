"""``ragkit train-pruner`` on a tiny JSONL: it trains, saves a folder provence-lite loads, logs MLflow."""

from __future__ import annotations

import json
import math

import pytest

from ragkit.pruners._train import TrainConfig, build_pairs, pairs_of, split_source
from ragkit.types import Document, Evidence, Example

COLOURS = ["red", "blue", "green", "yellow", "black", "white"]
THINGS = ["car", "house", "boat", "kite", "door", "chair"]


def write_training_set(path, n=36):
    """Each question asks for the colour of a thing; one document says it, two are filler."""
    with open(path, "w") as handle:
        for i in range(n):
            thing, colour = THINGS[i % 6], COLOURS[(i // 6) % 6]
            owner = f"Person{i}"
            gold = f"The {thing} of {owner} is painted {colour}."
            documents = [
                {
                    "id": "d1",
                    "title": "Weather",
                    "text": "It rained all day. The wind was strong in the north.",
                },
                {"id": "d2", "title": owner, "text": f"{owner} lives in a town. {gold} Nobody else has one."},
                {"id": "d3", "title": "Cooking", "text": "Soup needs water and salt. It is served hot."},
            ]
            record = {
                "id": f"q{i}",
                "question": f"What colour is the {thing} of {owner}?",
                "answers": [colour],
                "documents": documents,
                "evidence": [{"doc_id": "d2", "text": gold}],
            }
            handle.write(json.dumps(record) + "\n")
    return path


def test_split_source_and_labels():
    assert split_source("hotpotqa:1000", 5) == ("hotpotqa", 1000)
    assert split_source("data/my.jsonl", 5) == ("data/my.jsonl", 5)
    example = Example(
        id="x",
        question="q?",
        answers=["a"],
        documents=[
            Document(
                id="g",
                text="One. Two is gold. Three.",
                title="G",
                sentences=("One.", "Two is gold.", "Three."),
            ),
            Document(id="n1", text="Noise. More noise."),
            Document(id="n2", text="Other noise."),
        ],
        evidence=[Evidence(doc_id="g", text="Two is  gold.")],
    )
    import random

    pairs = pairs_of(example, 1, random.Random(0))
    assert pairs[0].labels == [0, 1, 0]
    assert len(pairs) == 2 and pairs[1].labels in ([0, 0], [0])  # one negative sampled
    assert len(pairs_of(example, None, random.Random(0))) == 3


def test_heldout_questions_are_never_trained_on(tmp_path):
    path = write_training_set(tmp_path / "train.jsonl", n=40)
    train, heldout, counts = build_pairs(TrainConfig(data=[str(path)], max_examples=40, heldout=8))
    held_ids = {p.example_id for p in heldout["train"]}
    assert held_ids and not held_ids & {p.example_id for p in train}
    assert counts["questions_train"] + counts["heldout_questions_train"] == 40


@pytest.mark.slow
def test_train_pruner_command_trains_a_model_that_loads_and_prunes(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ragkit.cli import app
    from ragkit.registry import build

    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = write_training_set(tmp_path / "train.jsonl", n=24)
    out = tmp_path / "model"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ["train-pruner", "--data", str(path), "--heldout", "4", "--epochs", "3", "--batch-size", "16"]
    args += [
        "--max-length",
        "48",
        "--freeze-layers",
        "4",
        "--negatives",
        "1",
        "--output",
        str(out),
        "--tracking-uri",
        uri,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "held-out sentence" in result.output
    saved = json.loads((out / "training_result.json").read_text())
    losses = saved["epoch_losses"]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert 0.0 <= saved["metrics"]["heldout_recall"] <= 1.0
    config = json.loads((out / "provence_lite.json").read_text())
    assert config["calibrated_on"] == "train"  # the only source, named by the JSONL's stem
    assert saved["default_threshold"] == saved["metrics"]["heldout_train_threshold"]

    import mlflow

    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(saved["mlflow_run_id"])
    assert run.data.params["model_path"] == str(out.resolve())
    assert "heldout_precision" in run.data.metrics and "heldout_f1" in run.data.metrics
    history = mlflow.tracking.MlflowClient().get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in history] == [1, 2, 3]

    from ragkit.types import Chunk, Scored

    chunk = Chunk(
        id="d2#0",
        doc_id="d2",
        title="Person99",
        text="Person99 lives in a town. The kite of Person99 is painted red.",
    )
    pruner = build("pruner", "provence-lite", {"model": str(out), "threshold": 0.0})
    [kept] = pruner.prune(["What colour is the kite of Person99?"], [[Scored(chunk, 1.0)]])
    assert kept[0].chunk.text == chunk.text and 0.0 <= kept[0].score <= 1.0


def test_train_pruner_rejects_an_unknown_calibration_source_before_training(tmp_path):
    from typer.testing import CliRunner

    from ragkit.cli import app

    path = write_training_set(tmp_path / "train.jsonl", n=4)
    args = ["train-pruner", "--data", str(path), "--calibrate-on", "squad", "--output", str(tmp_path / "m")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--calibrate-on 'squad'" in result.output and "['train']" in result.output
    assert not (tmp_path / "m").exists()
