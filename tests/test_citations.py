"""Citation parsing in the formats small models write, statements, and the exact scores."""

import pytest

from ragkit.citations import Statement, cited, exact_scores, passage_record, statements, strip_citations
from ragkit.types import Chunk, Evidence


@pytest.mark.parametrize(
    ("answer", "numbers"),
    [
        ("Paris [1].", [1]),
        ("Paris [1, 3].", [1, 3]),
        ("Paris [1][3].", [1, 3]),
        ("Paris [1-3].", [1, 2, 3]),
        ("Paris [Document 2].", [2]),
        ("Paris, see Document [2].", [2]),
        ("Paris (1).", [1]),
        ("Paris (1, 3).", [1, 3]),
        ("According to Passage 2, it is Paris.", [2]),
        ("Passages 1 and 3 say Paris.", [1, 3]),
        ("Paris.", []),
        ("He left in (1998).", []),  # not a passage number
        ("(1) Paris\n(2) Madrid", []),  # list markers, not citations
    ],
)
def test_formats_small_models_write(answer, numbers):
    assert cited(answer, 5)[0] == numbers


def test_out_of_range_citations_are_invalid():
    assert cited("Paris [7] and [2].", 5) == ([2], 1)
    assert cited("Paris (7).", 5) == ([], 0)  # a parenthesised number out of range is not a citation


def test_statements_keep_their_own_citations():
    text = "- Paris is in France [1].\n- Madrid is in Spain. [2][3]\n[4]\nIt is big (5)."
    assert statements(text, 5) == [
        Statement("Paris is in France.", (1,)),
        Statement("Madrid is in Spain.", (2, 3, 4)),
        Statement("It is big.", (5,)),
    ]
    assert statements("Paris. [1] Madrid [2].", 5)[0].numbers == (1,)
    assert strip_citations("Paris [1, 2] is big (3).", 5) == "Paris is big."


def _chunks():
    texts = ["Paris is the capital of France.", "Filler about bread.", "France is in Europe. More."]
    return [Chunk(id=f"c{i}", doc_id=f"d{i}", text=t) for i, t in enumerate(texts)]


def test_exact_scores_against_gold_evidence():
    evidence = [Evidence("d0", "Paris is the capital of France."), Evidence("d2", "France is in Europe.")]
    answer = "Paris [1][2]."
    record = passage_record(answer, _chunks(), evidence)
    assert record["evidence"] == [[0], [], [1]]
    assert record["texts"] == {"1": "Paris is the capital of France.", "2": "Filler about bread."}
    scores = exact_scores(answer, record, len(evidence))
    assert scores["citation_recall"] == 0.5 and scores["citation_precision"] == 0.5
    assert scores["cites"] == 1.0 and scores["n_citations"] == 2.0
    both = exact_scores("Paris [1]. Europe [3]. [9]", record, 2)
    assert both["citation_recall"] == 1.0 and both["citation_precision"] == pytest.approx(2 / 3)
    none = exact_scores("Paris.", record, 2)
    assert none == {
        "cites": 0.0,
        "n_citations": 0.0,
        "citation_recall": 0.0,
        "citation_precision": 0.0,
        "citation_f1": 0.0,
    }
    assert exact_scores("Paris [1].", record, 0) == {"cites": 1.0, "n_citations": 1.0}  # no gold: no recall


def test_judged_support_follows_alce(tmp_path):
    from ragkit.cache import Cache
    from ragkit.citation_judge import control_warning, judge_citations
    from ragkit.generators.scripted import ScriptedGenerator
    from ragkit.types import Example, Prediction

    paris, bread = "Paris is the capital of France.", "Bread is made of flour and water."
    shown = [Chunk(id="a", doc_id="a", text=paris), Chunk(id="b", doc_id="b", text=bread)]
    examples = [
        Example(id="q1", question="?", answers=["Paris"]),
        Example(id="q2", question="?", answers=["x"]),
    ]
    answers = {"q1": "Paris is the capital of France [1][2]. It is old.", "q2": "Bread is flour [2]."}
    predictions = [
        Prediction(
            e.id,
            answers[e.id],
            provenance={"raw_answer": answers[e.id], "citations": passage_record(answers[e.id], shown, [])},
        )
        for e in examples
    ]
    # A judge that finds only claims about Paris supported, and only by the Paris passage.
    judge = ScriptedGenerator(
        script={r"\] Paris is the capital[\s\S]*Claim: Paris": "SUPPORTED"}, default="UNSUPPORTED"
    )
    rows = judge_citations(examples, predictions, judge, cache=Cache(tmp_path / "cache")).set_index(
        "example_id"
    )
    # q1: statement 1 supported jointly; [1] alone supports it, [2] is not needed; statement 2 cites nothing
    assert rows.loc["q1", "judged_citation_recall"] == 0.5
    assert rows.loc["q1", "judged_citation_precision"] == 0.5
    assert (
        rows.loc["q2", "judged_citation_recall"] == 0.0 and rows.loc["q2", "judged_citation_precision"] == 0.0
    )
    # controls: q1's copied sentence is accepted by its passage and rejected by q2's; q2's is not accepted
    assert rows.loc["q1", "support_accepts_quote"] == 1.0 and rows.loc["q1", "support_rejects_other"] == 1.0
    assert rows.loc["q2", "support_accepts_quote"] == 0.0
    warning = control_warning(rows[["support_accepts_quote", "support_rejects_other"]].mean().to_dict())
    assert warning is not None and "50%" in warning
