import pytest

from ragkit.generators.scripted import ScriptedGenerator
from ragkit.strategies.alr2 import ALR2, extraction_recall, grounded
from ragkit.types import Document, Evidence, Example

DOCS = [
    Document(id="a", title="Alpha", text="alpha " * 30),
    Document(id="b", title="Beta", text="The treasure is buried under the old oak tree. " + "beta " * 30),
    Document(id="c", title="Gamma", text="Captain Nemo buried it in 1870. " + "gamma " * 30),
]
EVIDENCE = [
    Evidence("b", "The treasure is buried under the old oak tree."),
    Evidence("c", "Captain Nemo buried it in 1870."),
]
EXAMPLE = Example("e1", "Where is the treasure buried?", ["under the old oak tree"], DOCS, EVIDENCE)
# the extraction call copies one gold sentence (with a bullet) and invents another line; the
# reasoning call answers from what it is given
SCRIPT = {
    "Relevant sentences:\n.*oak": "under the old oak tree",
    "Copy, word for word": "- The treasure is buried under the old oak tree.\n- Pirates like gold coins.",
}


def gen(window=4096):
    return ScriptedGenerator(script=SCRIPT, context_window=window, max_new_tokens=8)


def test_extract_then_reason_over_the_extraction_only():
    g = gen()
    [p] = ALR2(evidence_tokens=32).run([EXAMPLE], g)
    extract, reason = g.prompts_
    assert "alpha" in extract and "gamma" in extract  # the whole context
    assert "alpha" not in reason and "The treasure is buried under the old oak tree." in reason
    assert [c.role for c in p.provenance.calls] == [
        "extract",
        "reason",
    ] and p.answer == "under the old oak tree"
    assert p.cost.input_tokens == len(extract.split()) + len(reason.split())
    measures = p.provenance.measures
    assert measures["extraction_recall"] == 0.5  # one of the two gold sentences
    assert measures["extraction_grounded"] == 0.5  # the invented line is not in the context
    assert p.provenance.details["extraction"][0] == "The treasure is buried under the old oak tree."
    assert p.provenance.evidence_recall == 1.0 and p.provenance.measures["n_documents"] == 3


def test_budget_caps_both_calls():
    [free] = ALR2(evidence_tokens=32).run([EXAMPLE], gen())
    budget = free.cost.input_tokens - 40
    [p] = ALR2(evidence_tokens=32, budget=budget).run([EXAMPLE], gen())
    assert p.cost.input_tokens <= budget and p.provenance.dropped_tokens > 0
    assert p.provenance.measures["truncated"] is True


def test_recall_and_grounding_helpers():
    assert extraction_recall([], "anything") is None
    assert extraction_recall(EVIDENCE, "captain nemo buried it in 1870") == pytest.approx(0.5)
    assert grounded(["The treasure is buried.", "ok"], "Yes: the treasure is buried.") == 1.0
    assert grounded(["no"], "context") is None


def test_estimate_bounds_the_run():
    strategy = ALR2(evidence_tokens=32)
    [estimate] = strategy.estimate([EXAMPLE], gen())
    [p] = strategy.run([EXAMPLE], gen())
    assert estimate.calls == p.cost.calls == 2 and estimate.input_tokens >= p.cost.input_tokens
