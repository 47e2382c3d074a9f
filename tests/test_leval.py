"""L-Eval loader on a tiny copy of its LEval-data/ layout, with L-Eval's exam rules."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.leval import LEval, option_letters
from ragkit.task_metrics import score_task
from ragkit.types import Example, Prediction

STORY = "Korvin sat in his cell. The Tr'en were efficient. The Ruler adopted his heir. Korvin escaped."


@pytest.fixture
def leval_root(tmp_path):
    root = tmp_path / "LEval-data"
    closed, opened = root / "Closed-ended-tasks", root / "Open-ended-tasks"
    closed.mkdir(parents=True)
    opened.mkdir()
    quality = {
        "instructions": [
            "How did the Ruler become the Ruler?\n\n (A) He was adopted. \n (B) He was elected.",
            "Who escaped?\n\n (A) The Ruler \n (B) Korvin",
        ],
        "outputs": ["(A) He was adopted.", "(B) Korvin"],
        "input": STORY,
        "source": "quality",
        "evaluation": "exam",
    }
    (closed / "quality.jsonl").write_text(json.dumps(quality) + "\n")
    gsm = {
        "instructions": ["Question: 2 + 3?\nLet's think step by step"],
        "outputs": ["5"],
        "input": "Q: 1+1? A: 2",
    }
    (closed / "gsm100.jsonl").write_text(json.dumps({**gsm, "evaluation": "exam"}) + "\n")
    summaries = [
        {"instructions": ["Summarize the report."], "outputs": ["The agency hired staff."]},
        {"instructions": ["What did it say?"], "outputs": ["It hired."]},
    ]
    summaries[0].update(input="The agency hired staff.", source="gov", evaluation="rouge")
    summaries[1].update(input="It hired.", source="gov", evaluation="LLM")
    (opened / "gov_report_summ.jsonl").write_text("\n".join(json.dumps(s) for s in summaries) + "\n")
    (opened / "natural_question.jsonl").write_text(
        json.dumps(
            {"instructions": ["when?"], "outputs": ["April 25, 2018"], "input": "x", "evaluation": "f1"}
        )
        + "\n"
    )
    return root


def _score(example, output):
    return score_task(example, Prediction(example.id, output, provenance={"raw_answer": output}))[
        "task_score"
    ]


def test_one_example_per_instruction_sharing_the_document(leval_root):
    examples = LEval(path=str(leval_root), tasks=["quality"]).load().examples
    assert [e.id for e in examples] == ["leval-quality-000-00", "leval-quality-000-01"]
    assert examples[0].documents[0] is examples[1].documents[0] and examples[0].documents[0].text == STORY
    assert examples[0].question.endswith("Answer with the letter of the correct option only (like A or B).")
    assert examples[0].meta == {
        "type": "quality", "group": "closed", "evaluation": "exam", "source": "quality",
        "benchmark": "l-eval", "metric": "leval_exam", "exam": "option",
    }  # fmt: skip


def test_open_ended_records_keep_their_evaluation(leval_root):
    examples = {e.id: e for e in LEval(path=str(leval_root)).load().examples}
    assert len(examples) == 6
    rouge, llm = examples["leval-gov_report_summ-000-00"], examples["leval-gov_report_summ-001-00"]
    assert rouge.meta["metric"] == "rouge_l" and "answer_format" not in rouge.meta
    assert llm.meta["metric"] == "rouge_l" and llm.meta["answer_format"] == "free-form"
    assert examples["leval-natural_question-000-00"].meta["metric"] == "qa_f1"


def test_exam_rules(leval_root):
    examples = {e.id: e for e in LEval(path=str(leval_root)).load().examples}
    quality = examples["leval-quality-000-00"]
    assert _score(quality, "A") == 1.0
    assert _score(quality, "The answer is B") == 0.0  # first capital A-D: "B"
    gsm = examples["leval-gsm100-000-00"]
    assert _score(gsm, "2 plus 3 makes 5.\nThe answer is 5.") == 1.0
    assert _score(gsm, "The answer is 6") == 0.0
    assert option_letters("AB are right", several=True) == "AB"
    coursera = Example(
        id="c", question="q", answers=["ABC"], meta={"metric": "leval_exam", "exam": "options"}
    )
    assert _score(coursera, "ABC") == 1.0 and _score(coursera, "AB") == 0.25 and _score(coursera, "AD") == 0.0
    verdict = Example(
        id="s", question="q", answers=["True [fact: False]"], meta={"metric": "leval_exam", "exam": "verdict"}
    )
    assert _score(verdict, "True.") == 1.0 and _score(verdict, "False") == 0.0
    topic = Example(
        id="t", question="q", answers=["The role of art"], meta={"metric": "leval_exam", "exam": "text"}
    )
    assert _score(topic, "\nthe Role of Art in society") == 1.0


def test_errors(leval_root, tmp_path):
    with pytest.raises(DatasetError, match="field 'path': folder not found"):
        LEval(path=str(tmp_path / "nowhere")).load()
    with pytest.raises(DatasetError, match=r"field 'tasks': \['tpo'\] not found"):
        LEval(path=str(leval_root), tasks=["tpo"]).load()
    (leval_root / "Closed-ended-tasks" / "tpo.jsonl").write_text(
        json.dumps({"instructions": ["a", "b"], "outputs": ["A"], "input": "doc"}) + "\n"
    )
    with pytest.raises(DatasetError, match=r"tpo.jsonl:1: field 'outputs': 1 outputs for 2 instructions"):
        LEval(path=str(leval_root), tasks=["tpo"]).load()


def test_leval_two_questions_end_to_end(leval_root, run_two):
    results = run_two(
        {"type": "l-eval", "path": str(leval_root), "tasks": ["quality"]},
        {"Ruler become": "A", "escaped": "A"},
    )
    for result in results:
        scores = result.scores.set_index("example_id")
        assert scores["task_score"].to_dict() == {"leval-quality-000-00": 1.0, "leval-quality-000-01": 0.0}
        assert result.summary["task_score"] == 0.5
