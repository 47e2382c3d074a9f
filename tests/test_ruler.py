"""RULER loader on files laid out as its prepare.py writes them (chat template, few-shot example)."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.ruler import Ruler
from ragkit.task_metrics import score_task
from ragkit.types import Prediction

NOISE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
VT = "Memorize and track the chain(s) of variable assignment hidden in the following text.\n\n{context}\n" + (
    "Question: Find all variables that are assigned the value {query} in the text above."
)
CWE = (
    "Below is a numbered list of words. In these words, some appear more often than others. Memorize the"
    " ones that appear most often.\n{context}\nQuestion: What are the 10 most common words in the above list?"
)
QA = (
    "Answer the question based on the given documents. Only give me the answer and do not output any other"
    " words.\n\nThe following are given documents.\n\n{context}\n\nAnswer the question based on the given"
    " documents. Only give me the answer and do not output any other words.\n\nQuestion: {query}"
)
NIAH = (
    "Some special magic numbers are hidden within the following text.\n{context}\nWhat are all the numbers?"
)


def _chat(text):  # RULER wraps the task in the model's chat template
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def _vt_record(index, value, names):
    lines = [NOISE] * 6
    lines.insert(1, f"VAR {names[0]} = {value}.")
    lines.insert(4, f"VAR {names[1]} = VAR {names[0]} .")
    example = VT.format(context="\n".join([NOISE, "VAR QQQ = 11111."]), query="11111") + " Answer: ... QQQ"
    task = VT.format(context="\n".join(lines), query=value)
    return {"index": index, "input": _chat(example + "\n\n" + task), "outputs": names, "length": 400,
            "answer_prefix": " Answer: According to the chain(s) of variable assignment..."}  # fmt: skip


@pytest.fixture
def ruler_root(tmp_path):
    root = tmp_path / "synthetic" / "4096" / "data"
    for name, records in {
        "vt": [_vt_record(0, "12345", ["ABCDE", "FGHIJ"]), _vt_record(1, "67890", ["KLMNO", "PQRST"])],
        "cwe": [{"index": 0, "input": CWE.format(context=" ".join(f"{i + 1}. w{i % 3}" for i in range(90))),
                 "outputs": ["w0", "w1", "w2"], "length": 300}],
        "qa_2": [{"index": 0, "input": QA.format(
            context="Document 1:\nLouvre\nIt is in Paris.\n\nDocument 2:\nPrado\nThe Prado is in Madrid.",
            query="Where is the Prado?"), "outputs": ["Madrid"], "length": 100}],
        "niah_single_1": [{"index": 0, "input": NIAH.format(context=NOISE), "outputs": ["1"]}],
    }.items():  # fmt: skip
        (root / name).mkdir(parents=True)
        (root / name / "validation.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return root


def test_tasks_are_recognised_by_template(ruler_root):
    examples = Ruler(path=str(ruler_root), passage_tokens=20).load().examples
    by_id = {e.id: e for e in examples}
    assert sorted(by_id) == ["ruler-cwe-0", "ruler-qa_2-0", "ruler-vt-0", "ruler-vt-1"]  # niah left out
    vt = by_id["ruler-vt-0"]
    assert vt.meta["type"] == "variable_tracking" and vt.meta["metric"] == "string_match_all"
    assert vt.question == "Find all variables that are assigned the value 12345 in the text above."
    assert "QQQ" not in " ".join(d.text for d in vt.documents)  # the few-shot example is not the context
    assert len(vt.documents) > 3 and all(len(d.text) < 200 for d in vt.documents)
    assert [e.text for e in vt.evidence] == ["VAR ABCDE = 12345", "VAR FGHIJ = VAR ABCDE"]
    assert all(e.text in next(d.text for d in vt.documents if d.id == e.doc_id) for e in vt.evidence)
    qa = by_id["ruler-qa_2-0"]
    assert [d.title for d in qa.documents] == ["Louvre", "Prado"] and qa.question == "Where is the Prado?"
    assert qa.meta["metric"] == "string_match_part"
    cwe = by_id["ruler-cwe-0"]
    assert cwe.documents[0].text.startswith("1. w0 2. w1") and cwe.question.startswith("What are the 10")


def test_ruler_metrics(ruler_root):
    by_id = {e.id: e for e in Ruler(path=str(ruler_root)).load().examples}

    def score(example_id, output):
        example = by_id[example_id]
        return score_task(example, Prediction(example.id, output, provenance={"raw_answer": output}))[
            "task_score"
        ]

    assert score("ruler-vt-0", "they are: ABCDE and fghij") == 1.0
    assert score("ruler-vt-0", "ABCDE") == 0.5
    assert score("ruler-qa_2-0", "It is in madrid.") == 1.0


def test_needle_folders_point_to_the_needle_dataset(ruler_root, tmp_path):
    with pytest.raises(DatasetError, match="use ragkit's `needle` dataset"):
        Ruler(path=str(ruler_root), tasks=["niah_single_1"]).load()
    with pytest.raises(DatasetError, match=r"field 'tasks': \['fwe'\] not found"):
        Ruler(path=str(ruler_root), tasks=["fwe"]).load()


def test_ruler_two_questions_end_to_end(ruler_root, run_two):
    results = run_two(
        {"type": "ruler", "path": str(ruler_root), "tasks": ["vt"], "passage_tokens": 20},
        {"value 12345": "ABCDE, FGHIJ", "value 67890": "KLMNO"},
    )
    for result in results:
        assert result.scores.set_index("example_id")["task_score"].to_dict() == {
            "ruler-vt-0": 1.0,
            "ruler-vt-1": 0.5,
        }
        assert result.summary["evidence_recall"] > 0
