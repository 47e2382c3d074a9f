from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.strategies.recycled import RecycledDemonstrations, parse_demo
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example

DOCS = [
    Document(id="a", title="Alpha", text="Alpha town has a red bridge over the river. " + "alpha " * 20),
    Document(id="b", title="Beta", text="The treasure is buried under the old oak tree. " + "beta " * 20),
    Document(id="c", title="Gamma", text="Gamma lake is green in summer. " + "gamma " * 20),
]
EXAMPLE = Example(
    "e1",
    "Where is the treasure buried?",
    ["under the old oak tree"],
    DOCS,
    [Evidence("b", "The treasure is buried under the old oak tree.")],
)
SCRIPT = {
    "Write one question": "Question: What colour is the thing in this text? Answer: red",
    "Where is the treasure": "Document [1]. Answer: under the old oak tree",
}


def gen(window=4096):
    return ScriptedGenerator(script=SCRIPT, context_window=window, max_new_tokens=16)


def recycled(k=3, **params):
    return RecycledDemonstrations(retrieval=Retrieval(retriever=build("retriever", "bm25"), k=k), **params)


def test_demonstrations_come_from_the_questions_own_passages_and_are_charged():
    g = gen()
    [p] = recycled(m=2).run([EXAMPLE], g)
    *writes, answer = g.prompts_
    assert len(writes) == 2 and all("Write one question" in w for w in writes)
    shown = p.provenance.context_ids
    demos = p.provenance.details["demonstrations"]
    assert len(demos) == 2 and {d["chunk_id"] for d in demos} <= set(shown)
    for d in demos:  # the demonstration's answer points to the passage it was written from
        assert f"assistant: Document [{d['source']}]. Answer: red" in answer
        assert shown[d["source"] - 1] == d["chunk_id"]
    assert answer.count("Documents:") == 1  # the context appears once
    assert [c.role for c in p.provenance.calls] == ["demo", "demo", "answer"]
    assert p.cost.input_tokens == sum(len(x.split()) for x in g.prompts_)
    assert p.answer == "under the old oak tree" and p.provenance.measures["pointed_to_gold"] is True


def test_m0_writes_nothing_and_the_demos_follow_a_seed():
    g = gen()
    [p] = recycled(m=0).run([EXAMPLE], g)
    assert p.cost.calls == 1 and p.provenance.measures["demos"] == 0
    one = recycled(m=1, seed=0).run([EXAMPLE], gen())[0].provenance.details["demonstrations"]
    other = [
        recycled(m=1, seed=s).run([EXAMPLE], gen())[0].provenance.details["demonstrations"]
        for s in range(1, 6)
    ]
    assert any(o[0]["chunk_id"] != one[0]["chunk_id"] for o in other)


def test_budget_covers_writing_and_answering():
    [free] = recycled(m=2).run([EXAMPLE], gen())
    budget = free.cost.input_tokens - 30
    [p] = recycled(m=2, budget=budget).run([EXAMPLE], gen())
    assert p.cost.input_tokens <= budget
    small = 120  # room for the answer prompt with one passage, not for writing two demonstrations
    [tight] = recycled(m=2, budget=small).run([EXAMPLE], gen())
    assert tight.cost.input_tokens <= small and tight.provenance.measures["demos"] < 2


def test_unparseable_demonstrations_are_counted_not_used():
    g = ScriptedGenerator(script={"Write one question": "I like this text"}, max_new_tokens=16)
    [p] = recycled(m=2).run([EXAMPLE], g)
    assert p.provenance.measures["demos_failed"] == 2 and p.provenance.measures["demos"] == 0
    assert parse_demo("Question: Who? Answer: Bob") == ("Who?", "Bob") and parse_demo("nothing") is None
    assert parse_demo("Question: Who built the bridge?") == ("Who built the bridge?", None)


def test_a_question_written_without_its_answer_is_answered_from_its_passage():
    g = ScriptedGenerator(
        script={
            "Write one question": "What colour is the bridge of Alpha town?",
            "Question: What colour is the bridge": "It is red.",
            "Where is the treasure": "Document [1]. Answer: under the old oak tree",
        },
        max_new_tokens=16,
    )
    [p] = recycled(m=1).run([EXAMPLE], g)
    [demo] = p.provenance.details["demonstrations"]
    assert demo["question"] == "What colour is the bridge of Alpha town?" and demo["answer"] == "red"
    assert [c.role for c in p.provenance.calls] == ["demo", "demo", "answer"]
    assert g.prompts_[1].count("Document [") == 1  # answered from its own passage only
