import pytest

from ragkit.data.base import DatasetLoader, LoadedDataset
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.strategies.iterdrag import FINAL_CUE, IterDRAG, parse_step
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example


class Pool(DatasetLoader):
    def __init__(self, *, examples: list | None = None) -> None:
        self.examples = examples
        self.partition = "train"

    def load(self) -> LoadedDataset:
        return LoadedDataset(list(self.examples or []), None, "test")


def make(i, question, answer, facts):
    docs = [Document(id=f"{i}-{n}", title=f"Title {i}{n}", text=text) for n, text in enumerate(facts)]
    docs.append(Document(id=f"{i}-x", title="Bread", text="Bread is made from flour, water and yeast."))
    return Example(i, question, [answer], docs, [Evidence(f"{i}-0", facts[0]), Evidence(f"{i}-1", facts[1])])


POOL = [
    make(
        "p1",
        "Who founded the company that built the red tower?",
        "Alice",
        ["Acme built the red tower.", "Acme was founded by Alice."],
    ),
    make(
        "p2",
        "In which country is the lake named after Bob?",
        "Norway",
        ["Lake Bob is named after Bob.", "Lake Bob is in Norway."],
    ),
]
TEST = make(
    "t1",
    "Where was the captain of the pirate ship born?",
    "Lisbon",
    ["The pirate ship had captain Nemo.", "Captain Nemo was born in Lisbon."],
)
TEST2 = make(
    "t2",
    "What colour is the flag of the island of parrots?",
    "green",
    ["The island of parrots is Polly.", "The flag of Polly is green."],
)


def strategy(k=1, **params):
    params = {"m": 1, "n": 2, **params}
    retrieval = Retrieval(retriever=build("retriever", "bm25"), k=k)
    return IterDRAG(retrieval=retrieval, demonstrations=Pool(examples=POOL), **params)


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "Follow up: Who is the captain?\nIntermediate answer: Nemo",
            {"follow_up": "Who is the captain?", "intermediate": "Nemo"},
        ),
        (
            "Intermediate answer: Nemo\nSo the final answer is: Lisbon.",
            {"intermediate": "Nemo", "final": "Lisbon."},
        ),
        (
            "Intermediate answer: Nemo Follow up: where was he born?",
            {"intermediate": "Nemo", "follow_up": "where was he born?"},
        ),
        ("so the answer is Lisbon", {"final": "Lisbon"}),
        ("Lisbon", {}),
    ],
)
def test_parse_step(text, expected):
    assert parse_step(text) == expected


def test_follow_up_then_final_answer_with_exact_tokens_and_new_documents():
    g = ScriptedGenerator(
        script={
            "Follow up: Who is the captain": "Intermediate answer: Nemo\nSo the final answer is: Lisbon",
            "Question: Where was the captain": "Follow up: Who is the captain of the pirate ship?",
        },
        max_new_tokens=48,
    )
    [prediction] = strategy().run([TEST], g)
    p = prediction.provenance
    assert prediction.answer == "Lisbon"
    assert p.details["stop"] == "final" and p.measures["parse_failures"] == 0
    assert prediction.cost.calls == 2 == len(g.prompts_)
    assert prediction.cost.input_tokens == sum(len(prompt.split()) for prompt in g.prompts_)
    assert p.details["sub_queries"] == ["Who is the captain of the pirate ship?"]
    assert p.measures["iterations"] == 1
    assert not set(p.details["step_retrieved"][0]) & set(p.context_ids)  # only passages not shown yet
    assert [s.name for s in p.stages] == ["retrieve", "retrieve"]
    assert [c.role for c in p.calls] == ["step"] * 2
    second = g.prompts_[1]
    assert second.startswith(g.prompts_[0].removesuffix("\nassistant:"))  # the conversation grows
    assert "assistant: Follow up: Who is the captain of the pirate ship?\nuser: Documents:" in second
    assert FINAL_CUE not in second  # n = 2: a second follow-up would still be allowed
    # the demonstration shows the whole protocol, built from its gold supporting facts
    assert "Follow up: What is known about Title p" in second and "So the final answer is: " in second


def test_stops_after_n_follow_ups_and_asks_for_the_final_answer():
    g = ScriptedGenerator(
        script={"Follow up|Question": "Intermediate answer: maybe\nFollow up: and then?"}, max_new_tokens=48
    )
    [prediction] = strategy(n=2).run([TEST], g)
    p = prediction.provenance
    assert prediction.cost.calls == 3
    assert p.measures["iterations"] == 2 and p.details["stop"] == "max_iterations"
    assert FINAL_CUE in g.prompts_[-1] and FINAL_CUE not in g.prompts_[-2]
    assert prediction.answer == "maybe"  # the latest intermediate answer


def test_unparseable_output_is_the_answer_and_is_counted():
    g = ScriptedGenerator(script={"captain": "Lisbon"}, max_new_tokens=48)
    [prediction] = strategy().run([TEST], g)
    assert prediction.answer == "Lisbon" and prediction.cost.calls == 1
    assert prediction.provenance.measures["parse_failures"] == 1
    assert prediction.provenance.details["stop"] == "parse_failure"


def test_budget_stops_before_a_call_that_would_exceed_it():
    g = ScriptedGenerator(
        script={"Follow up|Question": "Intermediate answer: Nemo\nFollow up: born where?"}, max_new_tokens=48
    )
    first = strategy(n=0).run([TEST], g)[0].cost.input_tokens  # the first call alone
    [prediction] = strategy(n=3, budget=first + 10).run([TEST], g)
    assert prediction.cost.calls == 1 and prediction.cost.input_tokens <= first + 10
    assert prediction.provenance.details["stop"] == "budget" and prediction.answer == "Nemo"


def test_rounds_are_batched_across_questions():
    class Counting(ScriptedGenerator):
        def _generate(self, prompts, requests):
            self.batches_ = [*getattr(self, "batches_", []), len(prompts)]
            return super()._generate(prompts, requests)

    g = Counting(
        script={
            "Follow up": "So the final answer is: done",
            "Question: Where was": "Follow up: captain?",
            "Question: What colour": "green",
        },
        max_new_tokens=48,
    )
    predictions = strategy().run([TEST, TEST2], g)
    assert g.batches_ == [2, 1]  # round 1 both questions, round 2 only the one that followed up
    assert [p.provenance.details["stop"] for p in predictions] == ["final", "parse_failure"]


def test_estimate_is_an_upper_bound():
    g = ScriptedGenerator(
        script={"Follow up|Question": "Intermediate answer: x\nFollow up: y?"}, max_new_tokens=48
    )
    s = strategy(n=2)
    [estimate] = s.estimate([TEST], g)
    [prediction] = s.run([TEST], g)
    assert estimate.calls == 3 >= prediction.cost.calls
    assert estimate.input_tokens >= prediction.cost.input_tokens


@pytest.mark.slow
def test_real_generator_two_hotpotqa_questions():
    generator = build("generator", "transformers", {"model": "smollm2", "max_new_tokens": 24})
    questions = build("dataset", "hotpotqa", {"sample": 2, "partition": "eval"}).load().examples
    pool = build("dataset", "hotpotqa", {"sample": 20, "partition": "train"})
    retrieval = Retrieval(retriever=build("retriever", "bm25"), k=1)
    s = IterDRAG(retrieval=retrieval, m=1, n=1, demonstrations=pool, max_new_tokens=24)
    predictions = s.run(questions, generator)
    for p in predictions:
        calls = len(p.provenance.calls)
        assert 1 <= p.cost.calls == calls <= 2 and p.provenance.measures["iterations"] <= 1
        assert p.provenance.details["stop"] in {
            "final",
            "parse_failure",
            "max_iterations",
            "budget",
            "window",
        }
        assert p.cost.input_tokens > 0 and isinstance(p.answer, str)
