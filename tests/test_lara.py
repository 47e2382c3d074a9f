"""LaRA loader on a tiny copy of its layout, including a query file with a record spanning lines."""

import json

import pytest

from ragkit.data.base import DatasetError
from ragkit.data.lara import LaRA, parse_query_file


def _record(subset, level, file, question, answer, **extra):
    return {
        "type": subset,
        "level": level,
        "length": "32k",
        "file": file,
        "question": question,
        "answer": answer,
        **extra,
    }


@pytest.fixture
def lara_root(tmp_path):
    root = tmp_path / "lara"
    (root / "query").mkdir(parents=True)
    (root / "32k" / "financial").mkdir(parents=True)
    (root / "32k" / "paper").mkdir(parents=True)
    (root / "32k" / "financial" / "2024-Acme Corp.-j.txt").write_text(
        "Acme Corp. reported revenue of $1,234 in 2024. Net loss was $56. The CEO is Jane Roe."
    )
    (root / "32k" / "paper" / "32k_paper_0.md").write_text(
        "<paper 0>\n# Attention\n\nWe propose a model. It works well.\n"
        "<paper 1>\n# Retrieval\n\nIt retrieves."
    )
    acme = "2024-Acme Corp.-j.txt"
    files = {
        "32k_financial_location.jsonl": [
            _record(
                "financial",
                "location",
                acme,
                "What was Acme's revenue?",
                "Revenue was $1,234.",
                context_order=0,
            ),
            _record(
                "financial", "location", acme, "Who is the CEO?", "Jane Roe is the CEO.", context_order=1
            ),
        ],
        "32k_financial_hallu.jsonl": [
            _record(
                "financial", "hallu", acme, "What is Acme's 2030 forecast?", "The report gives no forecast."
            ),
        ],
        "32k_paper_comp.jsonl": [
            _record(
                "paper",
                "comp",
                "32k_paper_0.md",
                "How do papers 0 and 1 differ?",
                "Paper 0 ...",
                comp_parts=[0, 1],
            ),
        ],
        "32k_paper_reasoning.jsonl": [
            _record("paper", "reasoning", "32k_paper_0.md", "Why does it work?", "Because it attends."),
        ],
    }
    for name, records in files.items():
        (root / "query" / name).write_text("\n".join(json.dumps(r) for r in records) + "\n")
    # The irregular file: one record pretty-printed over several lines, then two on one line.
    lines = [
        json.dumps(_record("financial", "reasoning", acme, "Why a loss?", "Costs rose.")),
        json.dumps(_record("financial", "reasoning", acme, "Did\nrevenue grow?", "Yes, it grew."), indent=2),
        json.dumps(_record("financial", "reasoning", acme, "Q3?", "A3."))
        + " "
        + json.dumps(_record("financial", "reasoning", acme, "Q4?", "A4.")),
    ]
    (root / "query" / "32k_financial_reasoning.jsonl").write_text("\n".join(lines))
    # A 128k file that a 32k load must ignore.
    (root / "query" / "128k_financial_location.jsonl").write_text(
        json.dumps(_record("x", "y", "z", "q", "a"))
    )
    return root


def test_irregular_query_file_is_parsed(lara_root):
    records = parse_query_file(lara_root / "query" / "32k_financial_reasoning.jsonl")
    assert [r["question"] for r in records] == ["Why a loss?", "Did\nrevenue grow?", "Q3?", "Q4?"]


def test_broken_record_names_file_and_line(tmp_path):
    path = tmp_path / "32k_financial_location.jsonl"
    path.write_text(
        '{"question": "a", "answer": "b", "file": "f", "level": "location"}\n{"question": oops}\n'
    )
    with pytest.raises(DatasetError, match=r"32k_financial_location.jsonl: line 2"):
        parse_query_file(path)
    path.write_text('{"question": "a", "file": "f", "level": "location"}\n')
    with pytest.raises(DatasetError, match=r"line 1: record 1 lacks field\(s\) \['answer'\]"):
        parse_query_file(path)


def test_load_all(lara_root):
    loaded = LaRA(path=str(lara_root)).load()
    examples = loaded.examples
    assert len(examples) == 9
    assert loaded.corpus is None and loaded.revision.startswith("lara:32k:")
    by_type = {}
    for e in examples:
        by_type.setdefault(e.meta["type"], []).append(e)
    assert set(by_type) == {"location", "reasoning", "comparison", "hallucination"}
    assert len(by_type["reasoning"]) == 5
    hallu = by_type["hallucination"][0]
    assert hallu.answerable is False and hallu.meta["level"] == "hallu"
    assert all(e.answerable for t, es in by_type.items() if t != "hallucination" for e in es)
    comp = by_type["comparison"][0]
    assert comp.meta["comp_parts"] == [0, 1] and comp.meta["subset"] == "paper"
    location = by_type["location"][0]
    assert location.meta["file"] == "2024-Acme Corp.-j.txt" and location.meta["length"] == "32k"
    assert location.meta["answer_format"] == "free-form"
    assert location.answers == ["Revenue was $1,234."]
    (document,) = location.documents
    assert document.title == "Acme Corp."
    assert "$1,234" in document.text and len(document.sentences) == 3
    assert len({e.id for e in examples}) == 9


def test_filters(lara_root):
    paper = LaRA(path=str(lara_root), subsets=["paper"]).load().examples
    assert {e.meta["subset"] for e in paper} == {"paper"} and len(paper) == 2
    both_names = LaRA(path=str(lara_root), types=["comparison", "hallu"]).load().examples
    assert sorted(e.meta["type"] for e in both_names) == ["comparison", "hallucination"]
    sampled = LaRA(path=str(lara_root), sample=3, seed=1).load().examples
    assert len(sampled) == 3
    assert [e.id for e in sampled] == [
        e.id for e in LaRA(path=str(lara_root), sample=3, seed=1).load().examples
    ]


def test_errors_say_what_is_wrong(lara_root, tmp_path):
    with pytest.raises(DatasetError, match=r"field 'path'.*no 'query/' folder"):
        LaRA(path=str(tmp_path / "nowhere")).load()
    with pytest.raises(DatasetError, match=r"field 'subsets'.*'book'"):
        LaRA(path=str(lara_root), subsets=["book"]).load()
    with pytest.raises(DatasetError, match=r"field 'types'.*unknown"):
        LaRA(path=str(lara_root), types=["summary"]).load()
    (lara_root / "32k" / "paper" / "32k_paper_0.md").unlink()
    with pytest.raises(DatasetError, match="field 'file': document not found"):
        LaRA(path=str(lara_root), subsets=["paper"]).load()


def test_layout_whitespace_is_collapsed_unless_kept(lara_root):
    from ragkit.data.lara import collapse_whitespace

    table = "Revenue      $1,234\n\n\n   \n\nCost\t\t  $99   \n"
    assert collapse_whitespace(table) == "Revenue $1,234\n\nCost $99"
    acme = lara_root / "32k" / "financial" / "2024-Acme Corp.-j.txt"
    acme.write_text(acme.read_text() + "\n\n\n\nTotal        $1,333")
    collapsed = LaRA(path=str(lara_root), types=["location"]).load().examples[0].documents[0].text
    kept = (
        LaRA(path=str(lara_root), types=["location"], whitespace="keep").load().examples[0].documents[0].text
    )
    assert collapsed.endswith("\n\nTotal $1,333") and "  " not in collapsed
    assert kept.endswith("\n\n\n\nTotal        $1,333")
