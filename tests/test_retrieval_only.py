"""Retrieval-only experiments: ``generator: none`` with ``strategy: retrieve`` arms score where the
gold evidence landed (recall@k, hit@k, MRR, with intervals) and never load or call a model."""

from __future__ import annotations

import json

import pytest

from ragkit.config import ConfigError, load_experiment
from ragkit.report import display_table, headline_metrics, results_frame
from ragkit.runner import run_experiment


@pytest.fixture
def retrieval_only(experiment_dict):
    return {
        **experiment_dict,
        "name": "retrieval-only",
        "generator": {"type": "none", "tokenizer": "whitespace"},
        "arms": [{"strategy": "retrieve", "retrieval": {"retriever": "bm25", "k": [1, 2]}}],
    }


def test_recall_hit_and_mrr_per_question_without_a_model(retrieval_only):
    results = run_experiment(load_experiment(retrieval_only))
    assert [r.configuration.resolved["strategy"]["retrieval"]["k"] for r in results] == [1, 2]
    gold = {}
    with open(retrieval_only["dataset"]["path"]) as handle:
        for line in handle:
            record = json.loads(line)
            gold[record["id"]] = record["evidence"][0]["doc_id"]
    for result in results:
        rows = [json.loads(line) for line in (result.run_dir / "predictions.jsonl").read_text().splitlines()]
        recalls, mrrs = [], []
        for row in rows:
            shown = [cid.split("#")[0] for cid in row["provenance"]["context_ids"]]
            rank = shown.index(gold[row["example_id"]]) + 1 if gold[row["example_id"]] in shown else None
            assert row["answer"] == "" and row["cost"]["calls"] == 0 and row["cost"]["input_tokens"] == 0
            assert row["provenance"]["measures"]["evidence_hit"] == (rank is not None)
            assert row["provenance"]["measures"]["mrr"] == pytest.approx(1 / rank if rank else 0.0)
            recalls.append(1.0 if rank else 0.0)
            mrrs.append(1 / rank if rank else 0.0)
        summary = result.summary
        assert summary["evidence_recall"] == pytest.approx(sum(recalls) / len(recalls))
        assert summary["mrr"] == pytest.approx(sum(mrrs) / len(mrrs))
        assert summary["evidence_hit_ci_low"] <= summary["evidence_hit"] <= summary["evidence_hit_ci_high"]
        assert "em" not in summary and "contains_answer" not in summary  # no answers to grade
    table = display_table(results_frame(results))
    assert list(table.columns[1:4]) == [
        "evidence recall@k [95% CI]",
        "evidence hit@k [95% CI]",
        "MRR [95% CI]",
    ]
    assert not any(c.startswith(("F1", "EM", "acc", "truncated", "eff.")) for c in table.columns)
    assert [float(t) for t in table["passage tokens"]] == [
        pytest.approx(r.summary["context_tokens"], abs=0.5) for r in results
    ]
    assert headline_metrics(results_frame(results))[0] == "evidence_recall"
    assert results[0].summary["evidence_recall"] <= results[1].summary["evidence_recall"]  # k=1 vs 2


def test_a_generating_arm_with_the_none_generator_is_one_error_line(retrieval_only):
    bad = {**retrieval_only, "arms": [{"strategy": "rag", "retriever": "bm25"}]}
    with pytest.raises(ConfigError, match=r"arms\[0\]\.strategy: strategy 'rag' generates answers"):
        load_experiment(bad)
