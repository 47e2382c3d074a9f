"""Metrics against values computed by hand."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from ragkit.metrics import (
    bootstrap_interval,
    contains_answer,
    evidence_recall,
    exact_match,
    f1,
    is_abstention,
    normalize_answer,
    paired_difference,
    required_sample_size,
    score,
    summarize,
    wilson_interval,
)
from ragkit.types import Cost, Evidence, Example, Prediction, Provenance


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("The Denver Broncos", "denver broncos"),  # SQuAD dev answers and predictions
        ("Denver Broncos.", "denver broncos"),
        ("Saint Bernadette Soubirous", "saint bernadette soubirous"),
        ("a  copper statue of Christ", "copper statue of christ"),
        ("the Grotto, a Marian place", "grotto marian place"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("  An   apple ", "apple"),
    ],
)
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_exact_match_and_f1_by_hand():
    assert exact_match("the Denver Broncos!", ["Denver Broncos", "Broncos"]) == 1.0
    assert exact_match("Denver", ["Denver Broncos"]) == 0.0
    # pred tokens {denver, broncos, won}, gold {denver, broncos}: P=2/3, R=1, F1=0.8
    assert f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    # max over references: "Broncos" gives P=1/3, R=1 -> 0.5; "won the game" -> "won game": P=2/3,
    # R=1 -> 0.8
    assert f1("Broncos won game", ["Broncos", "won the game"]) == pytest.approx(0.8)
    assert f1("blue blue sky", ["blue sky sky"]) == pytest.approx(2 / 3)  # counts, not sets
    assert f1("", [""]) == 1.0 and f1("the", ["Paris"]) == 0.0 and f1("x", []) == 0.0


def test_contains_answer_on_word_boundaries():
    assert contains_answer("It was Paris, in 1900.", ["paris"]) == 1.0
    assert contains_answer("Parisian cafes", ["Paris"]) == 0.0
    assert contains_answer("eight legs", ["8", "eight"]) == 1.0
    assert contains_answer("anything", ["the"]) == 0.0  # a reference normalised to nothing


@pytest.mark.parametrize(
    "text",
    ["unanswerable", "Unanswerable.", "This question cannot be answered.", "No answer", "I don't know",
     "I don’t know", "There is not enough information.", "The documents do not mention it."],
)  # fmt: skip
def test_abstentions(text):
    assert is_abstention(text)


@pytest.mark.parametrize("text", ["Paris", "an answer of 42", "known unknowns", "Noanswer Street"])
def test_not_abstentions(text):
    assert not is_abstention(text)


def test_evidence_recall():
    evidence = [Evidence("d1", "Paris is the capital."), Evidence("d2", "It is  on the Seine.")]
    assert evidence_recall(evidence, ["x Paris is the capital. y"]) == 0.5
    assert evidence_recall(evidence, ["Paris is the capital.", "It is on\nthe Seine."]) == 1.0
    assert evidence_recall([], ["anything"]) is None


def test_wilson_interval_known_value():
    low, high = wilson_interval(5, 10)  # textbook: (0.2366, 0.7634)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 20)  # never below 0; upper = z²/(n+z²) = 0.1611
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)


def test_bootstrap_is_seeded():
    values = [0.0, 0.5, 1.0, 1.0, 0.25]
    assert bootstrap_interval(values) == bootstrap_interval(values)
    low, high = bootstrap_interval(values)
    assert low < sum(values) / 5 < high
    assert bootstrap_interval([0.3] * 4) == pytest.approx((0.3, 0.3))


def examples_and_predictions():
    examples = [
        Example("a", "Capital of France?", ["Paris"], meta={"type": "bridge", "tags": ["x"]}),
        Example("b", "Who wrote Dracula?", ["Bram Stoker"], meta={"type": "comparison"}),
        Example("c", "Unanswerable one?", [], answerable=False, meta={"type": "bridge"}),
        Example("d", "Another impossible?", [], answerable=False),
    ]
    predictions = [
        Prediction("b", "Stoker", Cost(input_tokens=300, output_tokens=3, calls=1, prefill_seconds=1.0)),
        Prediction(
            "a",
            "Paris",
            Cost(input_tokens=100, output_tokens=2, calls=2, decode_seconds=0.5, aux_seconds=0.25),
            provenance=Provenance(evidence_recall=1.0, dropped_tokens=40, gold_survived=True),
        ),
        Prediction("c", "unanswerable", Cost(input_tokens=50, calls=1)),
        Prediction("d", "Mars", Cost(input_tokens=50, calls=1), provenance=Provenance(gold_survived=False)),
    ]
    return examples, predictions


def test_score_rows():
    examples, predictions = examples_and_predictions()
    rows = score(examples, predictions).set_index("example_id")
    assert list(rows.index) == ["a", "b", "c", "d"]  # example order, matched by id
    assert rows.loc["a", ["em", "f1", "contains_answer"]].tolist() == [1.0, 1.0, 1.0]
    assert rows.loc["b", "em"] == 0.0 and rows.loc["b", "f1"] == pytest.approx(2 / 3)
    # unanswerable: 1.0 iff the model abstained (SQuAD v2 convention)
    assert rows.loc["c", ["em", "f1", "contains_answer", "abstention_correct"]].tolist() == [1.0] * 4
    assert rows.loc["d", ["em", "f1", "contains_answer", "abstention_correct"]].tolist() == [0.0] * 4
    assert rows.loc["a", "cost_effective_context_tokens"] == 100 and rows.loc["a", "cost_seconds"] == 0.75
    assert rows.loc["a", "evidence_recall"] == 1.0 and math.isnan(rows.loc["b", "evidence_recall"])
    assert rows.loc["a", "dropped_tokens"] == 40 and rows.loc["d", "gold_survived"] == 0.0
    assert rows.loc["a", "meta_tags"] == json.dumps(["x"])  # non-scalars as JSON, for parquet
    assert rows.loc["b", "meta_type"] == "comparison"
    with pytest.raises(ValueError, match="no prediction"):
        score(examples, predictions[:2])


def test_summarize():
    examples, predictions = examples_and_predictions()
    scores = score(examples, predictions)
    scores["judge_correct"] = [1.0, 1.0, 0.0, 0.0]  # a column merged in later is averaged too
    summary = summarize(scores)
    assert summary["n_questions"] == 4
    assert summary["em"] == 0.5 and summary["contains_answer"] == 0.5
    assert (summary["em_ci_low"], summary["em_ci_high"]) == wilson_interval(2, 4)
    assert summary["f1"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    assert summary["f1_ci_low"] <= summary["f1"] <= summary["f1_ci_high"]
    assert summary["abstention_accuracy"] == 0.75  # a, b did not abstain; c did; d did not
    assert summary["effective_context_tokens"] == 125 and summary["calls"] == 1.25
    assert summary["seconds_per_question"] == pytest.approx(1.75 / 4)
    assert summary["evidence_recall"] == 1.0 and summary["gold_survived"] == 0.5
    assert summary["judge_correct"] == 0.5
    assert all(isinstance(v, float) and v == v for v in summary.values())  # JSON-safe
    answerable_only = summarize(score(examples[:2], predictions))
    assert "abstention_accuracy" not in answerable_only and "dropped_tokens" in answerable_only
    assert summarize(score([], [])) == {"n_questions": 0.0}


def test_paired_difference():
    a = pd.DataFrame({"example_id": list("abcdef"), "contains_answer": [1, 1, 1, 1, 0, 1.0]})
    b = pd.DataFrame({"example_id": list("fedcbaz"), "contains_answer": [0, 0, 0, 1, 0, 0, 1.0]})
    mean, low, high = paired_difference(a, b, "contains_answer")
    assert mean == pytest.approx(4 / 6)  # aligned by id; "z" is not in a
    assert 0 < low <= mean <= high <= 1
    assert paired_difference(a, a, "contains_answer") == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="share no example_id"):
        paired_difference(a, b.assign(example_id=list("tuvwxyz")), "contains_answer")


def test_required_sample_size():
    assert required_sample_size(0.5, 0.6) == 388  # Fleiss, no continuity correction
    assert required_sample_size(0.3, 0.5) < required_sample_size(0.4, 0.5)
    with pytest.raises(ValueError):
        required_sample_size(0.5, 0.5)


def test_official_columns_and_per_question_token_statistics():
    examples, predictions = examples_and_predictions()
    rows = score(examples, predictions).set_index("example_id")
    # unanswerable c answered "unanswerable": right by ragkit's refusal approximation, wrong by the
    # official SQuAD v2 rule (only an empty answer abstains); HotpotQA F1 only for answerable rows
    assert rows.loc["c", "em"] == 1.0 and rows.loc["c", ["em_squad_v2", "f1_squad_v2"]].tolist() == [0.0, 0.0]
    assert rows.loc["b", "f1_hotpotqa"] == pytest.approx(2 / 3) and math.isnan(rows.loc["c", "f1_hotpotqa"])
    assert rows.loc["a", "em_squad_v2"] == 1.0
    summary = summarize(score(examples, predictions))
    assert summary["em_squad_v2"] == 0.25 and "em_squad_v2_ci_low" in summary
    assert summary["f1_hotpotqa"] == pytest.approx((1 + 2 / 3) / 2)  # over the answerable rows
    # effective context tokens per question: 300, 100, 50, 50
    assert summary["effective_context_tokens_max"] == 300
    assert summary["effective_context_tokens_p50"] == 75  # numpy's linear interpolation
    assert summary["effective_context_tokens_p95"] == pytest.approx(100 + 0.85 * 200)
    answerable_only = score(examples[:2], predictions)
    assert "em_squad_v2" not in answerable_only  # equal to em there
