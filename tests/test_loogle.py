"""LooGLE loader on a tiny copy of its task files (qa_pairs as Python literals, as published)."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.loogle import LooGLE
from ragkit.task_metrics import score_task
from ragkit.types import Prediction

ARTICLE = (
    "Picardo was born in Jerez de la Frontera on 18 June 1919. With his mother and his brothers he moved "
    "to Madrid. He studied architecture. In 1997 he was elected to the Royal Academy of Fine Arts."
)


@pytest.fixture
def loogle_root(tmp_path):
    root = tmp_path / "LooGLE-testdata"
    root.mkdir()
    born = "Picardo was born in Jerez de la Frontera on 18 June 1919."
    elected = "In 1997 he was\nelected to the Royal Academy of Fine Arts."
    pairs = [
        {"S": born, "Q": "Where was Picardo born?", "A": "In Jerez de la Frontera."},
        {"S": elected, "Q": "When was he elected to the academy?", "A": "In 1997."},
    ]
    record = {"input": ARTICLE, "title": "José Luis Picardo", "qa_pairs": repr(pairs), "output": "none"}
    (root / "shortdep_qa.jsonl").write_text(json.dumps(record) + "\n")
    long_pairs = [
        {"Q": "How old was he when elected?", "A": "78", "type": "computation", "S": [pairs[0]["S"]]}
    ]
    (root / "longdep_qa.jsonl").write_text(json.dumps({**record, "qa_pairs": repr(long_pairs)}) + "\n")
    cloze = [
        {
            "Q": "<mask-0> was born in <mask-1>.",
            "A": {"<mask-0>": "Picardo", "<mask-1>": "Jerez de la Frontera"},
        }
    ]
    (root / "shortdep_cloze.jsonl").write_text(json.dumps({**record, "qa_pairs": repr(cloze)}) + "\n")
    summary = {
        "input": ARTICLE,
        "title": "2201.00447",
        "qa_pairs": "none",
        "output": "A life of an architect.",
    }
    (root / "longdep_summarization.jsonl").write_text(json.dumps(summary) + "\n")
    return root


def _score(example, output):
    return score_task(example, Prediction(example.id, output, provenance={"raw_answer": output}))


def test_qa_pairs_become_examples_with_evidence(loogle_root):
    examples = LooGLE(path=str(loogle_root), tasks=["shortdep_qa"]).load().examples
    assert [e.id for e in examples] == ["loogle-shortdep_qa-000-00", "loogle-shortdep_qa-000-01"]
    first, second = examples
    assert first.documents[0].title == "José Luis Picardo" and first.documents[0].text == ARTICLE
    assert first.evidence[0].doc_id == "loogle-shortdep_qa-000"
    assert (
        second.evidence[0].text == "In 1997 he was elected to the Royal Academy of Fine Arts."
    )  # whitespace squashed
    assert first.meta["metric"] == "rouge_l" and first.meta["answer_format"] == "free-form"


def test_all_tasks_and_their_metrics(loogle_root):
    examples = {e.meta["type"]: e for e in LooGLE(path=str(loogle_root)).load().examples}
    assert set(examples) == {"shortdep_qa", "longdep_qa", "shortdep_cloze", "longdep_summarization"}
    assert examples["longdep_qa"].meta["qa_type"] == "computation"
    summary = examples["longdep_summarization"]
    assert summary.question == "Write a summary of the paper." and summary.answers == [
        "A life of an architect."
    ]
    cloze = examples["shortdep_cloze"]
    assert cloze.answers == ["Picardo", "Jerez de la Frontera"]
    scores = _score(cloze, 'Answer: {"<mask-0>": "Picardo", "<mask-1>": "Jerez"}')
    assert scores["task_score"] == 0.5 and scores["cloze_partial"] == 1.0
    assert _score(cloze, "{'<mask-0>': 'Picardo', '<mask-1>': 'Jerez de la Frontera'}")["task_score"] == 1.0
    assert _score(cloze, "Picardo and Jerez")["task_score"] == 0.0


def test_broken_qa_pairs_are_named(loogle_root):
    (loogle_root / "shortdep_qa.jsonl").write_text(
        json.dumps({"input": "x", "qa_pairs": "[{'Q': 'q'"}) + "\n"
    )
    with pytest.raises(DatasetError, match=r"shortdep_qa.jsonl:1: field 'qa_pairs': not a list literal"):
        LooGLE(path=str(loogle_root), tasks=["shortdep_qa"]).load()


def test_loogle_two_questions_end_to_end(loogle_root, run_two):
    results = run_two(
        {"type": "loogle", "path": str(loogle_root), "tasks": ["shortdep_qa"]},
        {"Where was Picardo born": "He was born in Jerez de la Frontera.", "When was he elected": "In 1997."},
    )
    for result in results:
        scores = result.scores.set_index("example_id")
        assert scores.loc["loogle-shortdep_qa-000-01", "task_score"] == 1.0
        assert 0.5 < scores.loc["loogle-shortdep_qa-000-00", "task_score"] < 1.0
        assert "longform_approx" in scores  # free-form: the approximate recall is there too
    rag, full = results
    assert rag.summary["evidence_recall"] == 1.0 and full.summary["evidence_recall"] == 1.0
