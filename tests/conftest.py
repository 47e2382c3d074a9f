import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests keep their caches in temporary folders; de-quantised GGUF weights (0.5-1 GB a model) would
# be written once per folder. The cache itself is tested on a tiny model with it turned back on.
os.environ["RAGKIT_GGUF_WEIGHT_CACHE"] = "0"

# Six questions over tiny per-question document sets. The scripted generator answers correctly for
# the first four (by a pattern in the question) and wrongly otherwise, so expected scores are known.
QUESTIONS = [
    ("q1", "Which city is the capital of France?", ["Paris"], "France", "The capital of France is Paris."),
    ("q2", "Who wrote the novel Dracula?", ["Bram Stoker"], "Dracula", "Dracula was written by Bram Stoker."),
    ("q3", "What colour is the sky on a clear day?", ["blue"], "Sky", "On a clear day the sky is blue."),
    ("q4", "How many legs does a spider have?", ["eight", "8"], "Spider", "A spider has eight legs."),
    ("q5", "Which river flows through Cairo?", ["Nile"], "Cairo", "The Nile flows through Cairo."),
    ("q6", "What is the largest planet?", ["Jupiter"], "Planets", "Jupiter is the largest planet."),
]
FILLER = [
    ("Bread", "Bread is made from flour, water and yeast. It is baked in an oven."),
    ("Chess", "Chess is a board game for two players on a checkered board of 64 squares."),
]

SCRIPT = {"France": "Paris", "Dracula": "Bram Stoker", "sky": "It is blue.", "spider": "eight legs"}


@pytest.fixture
def qa_jsonl(tmp_path):
    path = tmp_path / "qa.jsonl"
    with open(path, "w") as handle:
        for qid, question, answers, title, evidence in QUESTIONS:
            documents = [{"id": t, "title": t, "text": text} for t, text in FILLER]
            documents.insert(1, {"id": title, "title": title, "text": evidence + " More words follow here."})
            record = {
                "id": qid,
                "question": question,
                "answers": answers,
                "documents": documents,
                "evidence": [{"doc_id": title, "text": evidence}],
            }
            handle.write(json.dumps(record) + "\n")
    return path


@pytest.fixture
def experiment_dict(qa_jsonl, tmp_path):
    """A small experiment: RAG with BM25 at k in {1, 2} and full context, scripted generator."""
    return {
        "name": "test-exp",
        "dataset": {"type": "jsonl", "path": str(qa_jsonl)},
        "generator": {"type": "scripted", "script": SCRIPT, "default": "no idea", "context_window": 512},
        "arms": [
            {"strategy": "rag", "retriever": {"type": "bm25"}, "k": [1, 2]},
            {"strategy": "full_context"},
        ],
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
        "batch_size": 2,
        "tracking": {"traces": "off"},  # traces cost store writes; tests/test_dashboard.py covers them
    }


def assert_same_results(reference, results):
    """Two runs of the same configurations agree on everything but measured seconds and cache
    provenance: configuration hashes, every prediction line (in order), summaries."""
    from ragkit.recording import comparable

    assert [r.configuration.hash for r in results] == [r.configuration.hash for r in reference]
    for a, b in zip(reference, results, strict=True):
        lines = [(r.run_dir / "predictions.jsonl").read_text().splitlines() for r in (a, b)]
        assert [comparable(json.loads(x)) for x in lines[1]] == [comparable(json.loads(x)) for x in lines[0]]
        assert {k: v for k, v in b.summary.items() if "seconds" not in k} == {
            k: v for k, v in a.summary.items() if "seconds" not in k
        }


@pytest.fixture
def run_two(tmp_path):
    """Runs a 2-question experiment end to end on ``dataset`` with the scripted generator (RAG over
    BM25 with a token chunker, and full context) and returns the per-configuration results."""
    from ragkit.config import load_experiment
    from ragkit.runner import run_experiment

    def run(dataset, script, *, default="no idea", context_window=4096, max_new_tokens=64):
        experiment = {
            "name": "benchmark-test",
            "dataset": {**dataset, "sample": 2},
            "generator": {
                "type": "scripted",
                "script": script,
                "default": default,
                "context_window": context_window,
                "max_new_tokens": max_new_tokens,
            },
            "arms": [
                {
                    "strategy": "rag",
                    "retriever": {"type": "bm25"},
                    "k": 2,
                    "chunker": {"type": "tokens", "size": 64},
                },
                {"strategy": "full_context"},
            ],
            "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "output_dir": str(tmp_path / "runs"),
            "cache_dir": str(tmp_path / "cache"),
            "batch_size": 2,
        }
        results = run_experiment(load_experiment(experiment))
        assert [r.summary["n_questions"] for r in results] == [2, 2]
        return results

    return run
