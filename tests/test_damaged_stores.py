"""Damaged files a run reads back: predictions, the cache store, the MLflow store, run folders.
Each is recovered (recomputed, rewritten) or stops the run with one clear error; none is a traceback."""

from __future__ import annotations

import json
import os
import sqlite3

import pytest
import yaml
from typer.testing import CliRunner

from ragkit import predictions_file, runner
from ragkit.cache import Cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.cli import app
from ragkit.config import ConfigError, load_experiment
from ragkit.generators.base import GenerationRequest
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.predictions_file import append_predictions, read_predictions
from ragkit.retrievers.bm25 import BM25Retriever
from ragkit.runner import run_experiment
from ragkit.types import Chunk, Corpus, Prediction


def line(example_id: str, answer: str) -> bytes:
    record = {"example_id": example_id, "answer": answer, "cost": {"input_tokens": 3}, "provenance": {}}
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")


# -- predictions.jsonl ---------------------------------------------------------------------------
def test_damaged_prediction_lines_are_skipped_and_the_rest_kept(tmp_path, caplog):
    path = tmp_path / "predictions.jsonl"
    torn = line("q3", "Zürich, Genève, Bern")
    cut = torn.index("ü".encode()) + 1  # a kill in the middle of a two-byte character
    path.write_bytes(
        line("q1", "Paris")
        + b"\x89PNG\r\n\x1a\n\x00\xff\xfe random bytes\n"
        + b'{"example_id": 7, "answer": "eight"}\n'  # wrong type
        + b'{"example_id": "q4", "answer": "x", "cost": {"input_tokens": "many"}}\n'
        + b'["a", "list"]\n'
        + line("q2", "Bram Stoker")
        + line("q1", "Paris again")  # a question twice: the last line wins
        + torn[:cut]
    )
    done = read_predictions(path)
    assert sorted(done) == ["q1", "q2"]
    assert done["q1"].answer == "Paris again"
    assert "damaged line(s) skipped" in caplog.text and "not UTF-8" in caplog.text


def test_a_batch_is_one_write_and_never_glued_to_a_torn_line(tmp_path, monkeypatch):
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(line("q1", "Paris") + line("q2", "Genève")[:30])  # cut by a kill
    writes = []
    real_write = os.write
    monkeypatch.setattr(
        predictions_file.os, "write", lambda fd, data: writes.append(1) or real_write(fd, data)
    )
    batch = [Prediction(f"q{i}", "Zürich " * 500) for i in range(3, 9)]  # ~24 KB: several buffers' worth
    append_predictions(path, batch)
    assert len(writes) == 1
    done = read_predictions(path)
    assert sorted(done) == ["q1", "q3", "q4", "q5", "q6", "q7", "q8"]


# -- the cache store -----------------------------------------------------------------------------
def test_a_garbage_cache_store_is_moved_aside_and_replaced(tmp_path, caplog):
    (tmp_path / "cache.sqlite").write_bytes(b"this is not a database" * 100)
    cache = Cache(tmp_path)
    assert len(cache.moved_aside) == 1 and cache.moved_aside[0].exists()
    assert "moved it aside" in caplog.text
    cache.put("s", "k", {"v": 1})
    assert cache.get("s", "k") == {"v": 1}


def test_a_truncated_cache_store_is_found_when_read_and_replaced(tmp_path):
    cache = Cache(tmp_path)
    cache.put_many("s", {f"k{i}": {"text": "x" * 200, "i": i} for i in range(2000)})
    cache.close()
    path = tmp_path / "cache.sqlite"
    assert not (tmp_path / "cache.sqlite-wal").exists() or (tmp_path / "cache.sqlite-wal").stat().st_size == 0
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    cache = Cache(tmp_path)  # opens: the damage is in pages not read yet
    found = cache.get_many("s", [f"k{i}" for i in range(2000)])
    assert found == {}  # recomputed, not a DatabaseError
    assert len(cache.moved_aside) == 1
    cache.put("s", "k1", {"v": 2})
    assert cache.get("s", "k1") == {"v": 2} and cache.count() == 1


def test_a_forged_retrieval_entry_with_a_valid_checksum_is_recomputed(tmp_path):
    cache = Cache(tmp_path)
    corpus = Corpus.from_chunks(
        [Chunk(id=f"d{i}", doc_id=f"d{i}", text=t, position=i) for i, t in enumerate(["a cat", "a dog"])]
    )
    retriever = CachedRetriever(BM25Retriever(), cache, depth=2)
    first = retriever.retrieve(["cat"], corpus, 1)
    ((key, entry),) = cache.get_many("retrieval", _keys(cache, "retrieval")).items()
    cache.put("retrieval", key, {**entry, "hits": [["forged-id", 9.0]]})  # checksum written by put
    again = retriever.retrieve(["cat"], corpus, 1)
    assert [s.chunk.id for s in again[0]] == [s.chunk.id for s in first[0]]
    assert cache.broken == 1


def test_a_forged_generation_entry_of_the_wrong_shape_is_recomputed(tmp_path):
    cache = Cache(tmp_path)
    generator = CachedGenerator(ScriptedGenerator(script={"France": "Paris"}), cache)
    request = GenerationRequest(messages=[{"role": "user", "content": "Capital of France?"}])
    assert generator.generate([request])[0].text == "Paris"
    (key,) = _keys(cache, "generation")
    cache.put("generation", key, {"text": 5, "input_tokens": "x"})
    assert generator.generate([request])[0].text == "Paris"
    assert cache.broken == 1 and generator.generated_ == 2


def _keys(cache: Cache, stage: str) -> list[str]:
    db = sqlite3.connect(cache.path)
    return [k for (k,) in db.execute("SELECT key FROM entries WHERE stage=?", (stage,))]


# -- the MLflow store ----------------------------------------------------------------------------
@pytest.fixture
def data_must_not_load(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("data loaded before the store was checked")

    monkeypatch.setattr(runner, "load_datasets", refuse)


def test_a_garbage_mlflow_store_stops_the_run_before_data_loads(
    experiment_dict, tmp_path, data_must_not_load
):
    store = tmp_path / "mlflow.db"
    store.write_bytes(os.urandom(8192))
    with pytest.raises(ConfigError, match=r"tracking_uri: the MLflow store .*mlflow\.db is damaged"):
        run_experiment(load_experiment(experiment_dict))
    assert store.exists()  # the user's record is never moved or repaired by ragkit


def test_a_truncated_store_is_found_by_the_start_up_check(tmp_path):
    from ragkit.preflight import damaged_sqlite

    path = tmp_path / "mlflow.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, payload TEXT)")
    db.executemany("INSERT INTO runs (payload) VALUES (?)", [("x" * 500,)] * 2000)
    db.commit()
    db.close()
    assert damaged_sqlite(path) is None
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    assert damaged_sqlite(path)


# -- a run folder damaged between runs ------------------------------------------------------------
def test_damaged_run_files_are_recomputed_or_rewritten(experiment_dict, tmp_path, caplog):
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(experiment_dict))
    first = run_experiment(load_experiment(path))
    rag_dir, full_dir = first[0].run_dir, first[2].run_dir
    # predictions: q6's line torn in a UTF-8 character, then random bytes and a wrong-typed line
    predictions = rag_dir / "predictions.jsonl"
    lines = predictions.read_bytes().splitlines(keepends=True)
    q6 = next(i for i, raw in enumerate(lines) if b'"q6"' in raw)
    record = json.loads(lines[q6])
    record["answer"] = "Jupiter, größter Planet"
    torn = json.dumps(record, ensure_ascii=False).encode("utf-8")
    del lines[q6]
    predictions.write_bytes(
        b"".join(lines)
        + os.urandom(64).replace(b"\n", b"")
        + b"\n"
        + b'{"example_id": []}\n'
        + torn[: torn.index("ö".encode()) + 1]
    )
    (full_dir / "config.yaml").write_bytes(b"\x00\xff garbage: [")
    (full_dir / "summary.json").write_text('{"name": "full_context", "contains')
    (first[1].run_dir / "scores.parquet").write_bytes(b"PAR1 not really")
    report = CliRunner().invoke(app, ["report", str(path)])
    assert report.exit_code == 0 and "Traceback" not in report.output
    assert "full_context" not in report.output  # left out (and said so in the log) until re-run
    by_k = CliRunner().invoke(app, ["report", str(path), "--by", "k"])
    assert by_k.exit_code == 0 and "Traceback" not in by_k.output, by_k.output
    again = run_experiment(load_experiment(path))
    assert [r.generated for r in again] == [1, 0, 0]  # only the torn question
    assert sorted(read_predictions(predictions)) == [f"q{i}" for i in range(1, 7)]
    assert (
        yaml.safe_load((full_dir / "config.yaml").read_text())["config_hash"] == first[2].configuration.hash
    )
    assert json.loads((full_dir / "summary.json").read_text())["n_questions"] == 6
