"""LongBench v1 and v2 loaders on tiny copies of their published layouts, with their own metrics."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.longbench import LongBench
from ragkit.data.longbench_v2 import LongBenchV2, extract_choice, lenient_choice
from ragkit.task_metrics import score_task
from ragkit.types import Example, Prediction


def _record(task, _id, input_, context, answers, length=100, all_classes=None):
    return {
        "input": input_,
        "context": context,
        "answers": answers,
        "length": length,
        "dataset": task,
        "language": "en",
        "all_classes": all_classes,
        "_id": _id,
    }


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")


@pytest.fixture
def longbench_root(tmp_path):
    data = tmp_path / "longbench" / "data"  # data.zip unpacks into data/
    data.mkdir(parents=True)
    passages = (
        "Passage 1:\nLouvre\nThe Louvre is a museum in Paris.\n"
        "Passage 2:\nPrado\nThe Prado is a museum in Madrid.\n"
        "Passage 3:\nTate\nThe Tate is a gallery in London."
    )
    _write(
        data / "hotpotqa.jsonl",
        [
            _record("hotpotqa", "h1", "Which city is the Louvre in?", passages, ["Paris"], 900),
            _record("hotpotqa", "h2", "Which city is the Prado in?", passages, ["Madrid"], 5000),
        ],
    )
    _write(
        data / "hotpotqa_e.jsonl",
        [_record("hotpotqa", "e1", "Where is the Tate?", passages, ["London"], 9000)],
    )
    _write(
        data / "gov_report.jsonl",
        [
            _record(
                "gov_report",
                "g1",
                "",
                "The agency spent more. It hired staff.",
                ["The agency spent more money."],
            )
        ],
    )
    classes = ["Description", "Entity", "Human being", "Human"]
    _write(
        data / "trec.jsonl",
        [
            _record(
                "trec",
                "t1",
                "Question: Who wrote it?\nType:",
                "Question: Who?\nType: Human being",
                ["Human being"],
                all_classes=classes,
            )
        ],
    )
    _write(
        data / "passage_retrieval_en.jsonl",
        [
            _record(
                "passage_retrieval_en",
                "r1",
                "An abstract.",
                "Paragraph 1: One.\n\nParagraph 2: Two.",
                ["Paragraph 2"],
            )
        ],
    )
    _write(
        data / "passage_count.jsonl",
        [_record("passage_count", "c1", "", "Paragraph 1: A.\nParagraph 2: A.", ["1"])],
    )
    _write(data / "lcc.jsonl", [_record("lcc", "l1", "", "def f():\n    x = 1\n", ["    return x"])])
    return tmp_path / "longbench"


def _score(example, output):
    return score_task(example, Prediction(example.id, output, provenance={"raw_answer": output}))


def test_multi_document_tasks_keep_their_passages(longbench_root):
    examples = LongBench(path=str(longbench_root), tasks=["hotpotqa"]).load().examples
    assert [e.id for e in examples] == ["longbench-hotpotqa-h1", "longbench-hotpotqa-h2"]
    first = examples[0]
    assert [d.title for d in first.documents] == ["Louvre", "Prado", "Tate"]
    assert first.documents[1].text == "The Prado is a museum in Madrid."
    assert first.question == "Which city is the Louvre in?" and first.answers == ["Paris"]
    assert first.meta["type"] == "hotpotqa" and first.meta["category"] == "multi-doc QA"
    assert [e.meta["length_bucket"] for e in examples] == ["0-4k", "4-8k"]
    (only,) = LongBench(path=str(longbench_root), tasks=["hotpotqa"], e=True).load().examples
    assert only.id == "longbench-hotpotqa-e1" and only.meta["length_bucket"] == "8k+"


def test_tasks_without_a_question_get_longbench_instruction(longbench_root):
    loaded = LongBench(path=str(longbench_root)).load().examples
    by_task = {e.meta["type"]: e for e in loaded}
    assert set(by_task) == {"hotpotqa", "gov_report", "trec", "passage_retrieval_en", "passage_count", "lcc"}
    assert by_task["gov_report"].question == "Write a one-page summary of the report."
    assert len(by_task["gov_report"].documents) == 1  # one long document: chunkers cut it
    assert by_task["trec"].question.endswith("Question: Who wrote it?\nType:")
    assert [d.title for d in by_task["passage_retrieval_en"].documents] == ["Paragraph 1", "Paragraph 2"]


def test_longbench_metrics(longbench_root):
    by_task = {}
    for example in LongBench(path=str(longbench_root)).load().examples:
        by_task.setdefault(example.meta["type"], example)
    assert _score(by_task["hotpotqa"], "Paris, France")["task_score"] == pytest.approx(2 / 3)
    summary = _score(by_task["gov_report"], "The agency spent more money.")
    assert summary == {"task_score": 1.0, "task_metric": "rouge_l"}
    assert _score(by_task["gov_report"], "")["task_score"] == 0.0
    # trec: first line only; "Human" is part of the reference and does not count as a rival match
    assert _score(by_task["trec"], "Human being\nEntity")["task_score"] == 1.0
    assert _score(by_task["trec"], "Entity or Human being")["task_score"] == 0.5
    assert _score(by_task["passage_retrieval_en"], "Paragraph 2")["task_score"] == 1.0
    assert _score(by_task["passage_retrieval_en"], "Paragraph 1 or 2")["task_score"] == 0.5
    assert _score(by_task["passage_count"], "There is 1 unique paragraph")["task_score"] == 1.0
    assert _score(by_task["lcc"], "```python\n    return x\n```")["task_score"] == 1.0


def test_longbench_errors_name_the_field(longbench_root, tmp_path):
    with pytest.raises(DatasetError, match="field 'path': folder not found"):
        LongBench(path=str(tmp_path / "missing")).load()
    with pytest.raises(DatasetError, match="Chinese tasks"):
        LongBench(path=str(longbench_root), tasks=["dureader"]).load()
    with pytest.raises(DatasetError, match=r"field 'tasks': \['qasper'\] not found"):
        LongBench(path=str(longbench_root), tasks=["qasper"]).load()
    (longbench_root / "data" / "qasper.jsonl").write_text('{"input": "q", "context": "c", "_id": "x"}\n')
    with pytest.raises(DatasetError, match=r"qasper.jsonl:1: field 'answers': missing"):
        LongBench(path=str(longbench_root), tasks=["qasper"]).load()


def test_longbench_two_questions_end_to_end(longbench_root, run_two):
    results = run_two(
        {"type": "longbench", "path": str(longbench_root), "tasks": ["hotpotqa"]},
        {"Louvre in": "Paris", "Prado in": "The answer is Madrid, Spain"},
    )
    for result in results:
        scores = result.scores.set_index("example_id")
        assert scores.loc["longbench-hotpotqa-h1", "task_score"] == 1.0
        # F1 of "answer is madrid spain" (normalised) against "madrid": precision 1/4, recall 1
        assert scores.loc["longbench-hotpotqa-h2", "task_score"] == pytest.approx(0.4)
        assert result.summary["task_score"] == pytest.approx(0.7)
        assert "task_score_ci_low" in result.summary
        assert set(scores["task_metric"]) == {"qa_f1"}


@pytest.fixture
def longbench_v2_file(tmp_path):
    def record(_id, question, answer, context, domain="Single-Document QA", difficulty="easy"):
        choices = {f"choice_{x}": f"option {x.lower()}" for x in "ABCD"}
        return {"_id": _id, "domain": domain, "sub_domain": "x", "difficulty": difficulty, "length": "short",
                "question": question, **choices, "answer": answer, "context": context}  # fmt: skip

    path = tmp_path / "longbench-v2" / "data.json"
    path.parent.mkdir()
    records = [
        record("v1", "Which museum is in Paris?", "B", "The Louvre is in Paris. The Prado is in Madrid."),
        record(
            "v2", "Which museum is in Madrid?", "C", "The Prado is in Madrid.", "Code Repository QA", "hard"
        ),
    ]
    path.write_text(json.dumps(records, indent=1))
    return path


def test_longbench_v2_choices_and_filters(longbench_v2_file):
    examples = LongBenchV2(path=str(longbench_v2_file.parent)).load().examples
    assert [e.answers for e in examples] == [["B"], ["C"]]
    assert "(B) option b" in examples[0].question
    assert examples[0].question.endswith('"The correct answer is (insert answer here)".')
    hard = LongBenchV2(path=str(longbench_v2_file), difficulty="hard").load().examples
    assert [e.meta["type"] for e in hard] == ["Code Repository QA"]
    with pytest.raises(DatasetError, match="field 'domains'"):
        LongBenchV2(path=str(longbench_v2_file), domains=["Poetry"]).load()


def test_longbench_v2_extraction_is_the_benchmark_rule():
    assert extract_choice("**The correct answer is (B)**") == "B"
    assert extract_choice("The correct answer is C.") == "C"
    assert extract_choice("(B) because it is") is None and lenient_choice("(B) because it is") == "B"
    assert lenient_choice("A cat sat") is None
    example = Example(id="x", question="q", answers=["B"], meta={"metric": "choice"})
    assert _score(example, "B.") == {"task_score": 0.0, "choice_lenient": 1.0, "task_metric": "choice"}


def test_longbench_v2_two_questions_end_to_end(longbench_v2_file, run_two):
    results = run_two(
        {"type": "longbench-v2", "path": str(longbench_v2_file)},
        {"in Paris": "The correct answer is (B)", "in Madrid": "(C)"},
    )
    for result in results:
        assert result.summary["task_score"] == pytest.approx(0.5)
        assert result.summary["choice_lenient"] == pytest.approx(1.0)
