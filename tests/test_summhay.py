"""The Summary-of-a-Haystack task: haystack construction and SummHay's coverage/citation scores."""

import json
import re

import pytest

from ragkit.citations import passage_record
from ragkit.data.base import DatasetError
from ragkit.data.summary_haystack import SummaryHaystack
from ragkit.summhay import judge_summaries, lexical_coverage, parse_coverage, score_example
from ragkit.types import Chunk, Prediction


def _load(**params):
    options = {"n": 2, "documents": 8, "document_tokens": 40, "subtopics": 2, "insights": 3, "repeat": 3}
    return SummaryHaystack(tokenizer="scripted", **{**options, **params}).load().examples


def test_insights_repeat_in_their_documents():
    examples = _load()
    assert [e.id for e in examples] == ["summhay-000-0", "summhay-000-1", "summhay-001-0", "summhay-001-1"]
    first, second = examples[0], examples[1]
    assert first.documents is second.documents or first.documents == second.documents  # one haystack
    assert first.meta["topic"] != second.meta["topic"] and first.meta["topic"] in first.question
    facts = json.loads(first.meta["insights"])
    assert [f["text"] for f in facts] == first.answers and len(facts) == 3
    by_id = {d.id: d.text for d in first.documents}
    for fact in facts:
        assert len(fact["docs"]) == 3
        holders = [d for d, text in by_id.items() if fact["text"] in text]
        assert holders == fact["docs"]  # in exactly its documents
        assert all(k in fact["text"] for k in fact["key"])
    assert len(first.evidence) == 9 and first.meta["distractor_insights"] == 3
    assert _load()[2].answers == examples[2].answers  # deterministic
    assert len(_load(sample=1)) == 1


def test_errors_name_the_field():
    with pytest.raises(DatasetError, match="field 'repeat' is more than 'documents'"):
        _load(repeat=9)
    with pytest.raises(DatasetError, match="field 'insights': at most"):
        _load(insights=20)


def _prediction(example, answer):
    shown = [Chunk(id=d.id, doc_id=d.id, text=d.text) for d in example.documents]
    record = passage_record(answer, shown, example.evidence)
    return Prediction(example.id, answer, provenance={"raw_answer": answer, "citations": record})


def _numbers(example, fact):
    ids = [d.id for d in example.documents]
    return "".join(f"[{ids.index(d) + 1}]" for d in fact["docs"])


def test_lexical_scores_follow_summhay():
    example = _load()[0]
    facts = json.loads(example.meta["insights"])
    one, two = facts[0], facts[1]
    ids = [d.id for d in example.documents]
    wrong = next(i + 1 for i, d in enumerate(ids) if d not in two["docs"])
    right = ids.index(two["docs"][0]) + 1
    answer = f"- {one['text']} {_numbers(example, one)}\n- {two['text']} [{right}][{wrong}]"
    scores = score_example(example, _prediction(example, answer))
    assert scores["summhay_coverage_approx"] == pytest.approx(2 / 3)  # two of three insights
    # insight 1: cites exactly its documents (F1 1); insight 2: one of three right, one wrong (P 1/2, R 1/3)
    f1_two = 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)
    assert scores["summhay_citation_approx"] == pytest.approx((1 + f1_two) / 2)
    assert scores["summhay_joint_approx"] == pytest.approx((1 + f1_two) / 3)
    assert lexical_coverage(one, "It is about something else.") == 0.0
    key_only = " ".join(one["key"])
    assert lexical_coverage(one, f"Something with {key_only}.") == 0.5


def test_summaries_are_scored_in_the_runner(tmp_path):
    from ragkit.longform import score_example as extra_scores

    example = _load()[0]
    facts = json.loads(example.meta["insights"])
    answer = f"- {facts[0]['text']} {_numbers(example, facts[0])}"
    scores = extra_scores(example, _prediction(example, answer))
    assert scores["summhay_coverage_approx"] == pytest.approx(1 / 3)
    assert scores["cites"] == 1.0 and scores["citation_precision"] == 1.0  # exact scores alongside


def test_judged_coverage_with_controls(tmp_path):
    from ragkit.cache import Cache
    from ragkit.generators.scripted import ScriptedGenerator

    example = _load()[0]
    facts = json.loads(example.meta["insights"])
    answer = f"- {facts[0]['text']} {_numbers(example, facts[0])}\n- Nothing else."
    # A judge that finds the first insight covered by bullet 1 of the summary and by bullet 2 of
    # the control list, and nothing else: it passes the accept control and rejects distractors.
    first = re.escape(facts[0]["text"])
    judge = ScriptedGenerator(
        script={
            rf"1\. {first}[\s\S]*Reference insight: {first}": "FULL_COVERAGE 1",
            rf"2\. {first}": "FULL_COVERAGE 2",
        },
        default="NO_COVERAGE",
    )
    rows = judge_summaries([example], [_prediction(example, answer)], judge, cache=Cache(tmp_path / "c"))
    row = rows.iloc[0]
    assert row["summhay_coverage"] == pytest.approx(1 / 3) and row["summhay_citation"] == 1.0
    assert row["summhay_joint"] == pytest.approx(1 / 3)
    assert row["summhay_judge_accepts_insight"] == 1.0 and row["summhay_judge_rejects_other"] == 1.0
    assert parse_coverage("PARTIAL_COVERAGE, bullet 3") == (0.5, 2)
    assert parse_coverage("I am not sure") == (0.0, None)
