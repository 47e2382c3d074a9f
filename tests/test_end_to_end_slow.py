"""The real pipeline with the packaged SmolLM2 generator on a few HotpotQA questions."""

import pytest

from ragkit.config import load_experiment
from ragkit.runner import run_experiment

pytestmark = pytest.mark.slow


def test_quickstart_shape_with_real_generator(tmp_path):
    spec = {
        "name": "slow-e2e",
        "dataset": {"use": "hotpotqa-distractor", "sample": 3, "partition": "eval"},
        "generator": {"use": "smollm2", "max_new_tokens": 12},
        "arms": [{"strategy": "rag", "retriever": "bm25", "k": 2}, {"strategy": "full_context"}],
        "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "output_dir": str(tmp_path / "runs"),
        "cache_dir": str(tmp_path / "cache"),
    }
    results = run_experiment(load_experiment(spec))
    rag, full = results
    for r in results:
        assert r.summary["n_questions"] == 3
        assert 0.0 <= r.summary["f1"] <= 1.0
        assert r.summary["output_tokens"] <= 12
        assert r.summary["seconds_per_question"] > 0
        assert r.scores["answer"].str.len().gt(0).any()  # the model said something
    # HotpotQA's 10 paragraphs fit SmolLM2's 8k window: full context is longer than RAG k=2
    assert full.summary["effective_context_tokens"] > rag.summary["effective_context_tokens"]
    assert full.summary["dropped_tokens"] == 0
    again = run_experiment(load_experiment(spec))
    assert [r.generated for r in again] == [0, 0]
