"""NeedleBench multi-needle reasoning on a tiny copy of its files (needles JSON, essays JSONL)."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.needlebench import NeedleBench
from ragkit.task_metrics import score_task
from ragkit.types import Prediction

ESSAY = " ".join(f"Essay a sentence {i} talks about startups and founders." for i in range(40))
NEEDLES = [
    {"derivations": ["Alan Turing was a mentor of Joan Clarke.", "Joan Clarke was born in West Norwood."],
     "derivation_count": 2, "question": "Where was the person mentored by Alan Turing born?",
     "answer": "West Norwood", "id": 1},
    {"derivations": ["Ada Lovelace worked with Charles Babbage.", "Charles Babbage was born in London."],
     "derivation_count": 2, "question": "Where was the partner of Ada born?", "answer": "London", "id": 2},
    {"derivations": ["A.", "B.", "C."], "derivation_count": 3, "question": "Q?", "answer": "C", "id": 3},
]  # fmt: skip


@pytest.fixture
def needlebench_root(tmp_path):
    root = tmp_path / "NeedleBench"
    root.mkdir()
    (root / "multi_needle_reasoning_en.json").write_text(json.dumps(NEEDLES, indent=2))
    essays = [{"text": ESSAY.replace("Essay a", f"Essay {k}")} for k in "abc"]
    (root / "PaulGrahamEssays.jsonl").write_text("\n".join(json.dumps(e) for e in essays) + "\n")
    return root


def _loader(root, **params):
    return NeedleBench(path=str(root), tokenizer="scripted", length=300, n=4, passage_tokens=20, **params)


def test_needles_in_order_at_depth_with_evidence(needlebench_root):
    examples = _loader(needlebench_root, depth=0.2, diff=0.4).load().examples
    assert len(examples) == 4
    for example in examples:
        record = next(r for r in NEEDLES if r["answer"] == example.answers[0])
        assert example.question.startswith(record["question"]) and "most relevant" in example.question
        text = " ".join(d.text for d in example.documents)
        first, second = (text.index(d) for d in record["derivations"])
        assert first < second  # the second derivation diff after the first
        assert 0.1 < example.meta["evidence_position"] < 0.3
        assert [e.text for e in example.evidence] == record["derivations"]
        for evidence in example.evidence:
            assert evidence.text in next(d.text for d in example.documents if d.id == evidence.doc_id)
        assert example.meta["actual_tokens"] <= 300
    assert (
        _loader(needlebench_root, depth=0.2, diff=0.4).load().examples[0].documents == examples[0].documents
    )


def test_options_and_errors(needlebench_root, tmp_path):
    (three,) = _loader(needlebench_root, needles=3, guide=False).load().examples[:1]
    assert three.question == "Q?" and three.meta["needles"] == 3
    with pytest.raises(
        DatasetError, match=r"field 'needles': no record with 5 derivations; available: \[2, 3\]"
    ):
        _loader(needlebench_root, needles=5).load()
    (needlebench_root / "PaulGrahamEssays.jsonl").unlink()
    with pytest.raises(DatasetError, match=r"PaulGrahamEssays\.jsonl not found"):
        _loader(needlebench_root).load()


def test_keyword_score():
    example = _example("West Norwood")
    assert _score(example, "She was born in west norwood.") == 1.0
    assert _score(example, "In West London") == 0.5


def _example(answer):
    from ragkit.types import Example

    return Example(id="x", question="q", answers=[answer], meta={"metric": "needlebench_keywords"})


def _score(example, output):
    return score_task(example, Prediction(example.id, output, provenance={"raw_answer": output}))[
        "task_score"
    ]


def test_needlebench_two_questions_end_to_end(needlebench_root, run_two):
    results = run_two(
        {
            "type": "needlebench",
            "path": str(needlebench_root),
            "tokenizer": "scripted",
            "length": 300,
            "n": 4,
        },
        {"mentored by Alan Turing": "West Norwood", "partner of Ada": "Paris"},
    )
    for result in results:
        scores = result.scores
        expected = [1.0 if "Turing" in q else 0.0 for q in scores["question"]]
        assert scores["task_score"].tolist() == expected
        assert result.summary["evidence_recall"] > 0
