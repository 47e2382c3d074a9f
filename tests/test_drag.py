import logging

import pytest

from ragkit.config import build_component, expand_component
from ragkit.data.base import DatasetLoader, LoadedDataset
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.strategies.base import Record
from ragkit.strategies.drag import DRAG
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example


class Pool(DatasetLoader):
    """An in-memory demonstration pool (partition "train", like the real one)."""

    def __init__(self, *, examples: list | None = None) -> None:
        self.examples = examples
        self.partition = "train"

    def load(self) -> LoadedDataset:
        return LoadedDataset(list(self.examples or []), None, "test")


def make(i, question, answer, fact):
    docs = [
        Document(id=f"{i}-a", title=f"Gold {i}", text=f"{fact} More words follow here."),
        Document(id=f"{i}-b", title=f"Other {i}", text="Bread is made from flour, water and yeast."),
        Document(id=f"{i}-c", title=f"Third {i}", text="Chess is a board game for two players."),
    ]
    return Example(i, question, [answer], docs, [Evidence(f"{i}-a", fact)])


POOL = [
    make("p1", "Who built the red tower?", "Alice", "Alice built the red tower."),
    make("p2", "Where is the blue lake?", "Norway", "The blue lake is in Norway."),
    make("p3", "When did the green war end?", "1900", "The green war ended in 1900."),
]
TEST = make("t1", "Where is the treasure buried?", "under the oak", "The treasure is buried under the oak.")


def gen(window=4096):
    return ScriptedGenerator(script={"treasure": "under the oak"}, context_window=window, max_new_tokens=8)


def bm25(k):
    return Retrieval(retriever=build("retriever", "bm25"), k=k)


def drag(k=5, **params):
    return DRAG(retrieval=bm25(k), demonstrations=Pool(examples=POOL), **params)


def test_m0_is_exactly_rag():
    g = gen()
    rag = RAG(retrieval=bm25(2)).run([TEST], g)[0]
    rag_prompt = g.prompts_[-1]
    plain = drag(k=2, m=0).run([TEST], g)[0]
    assert g.prompts_[-1] == rag_prompt
    assert plain.cost.input_tokens == rag.cost.input_tokens and plain.answer == rag.answer


def test_prompt_layout_and_exact_token_accounting():
    g = gen()
    strategy = drag(k=2, m=2)
    [prediction] = strategy.run([TEST], g)
    prompt = g.prompts_[-1]
    demo_ids = prediction.provenance.details["demo_ids"]
    assert len(demo_ids) == 2 and set(demo_ids) <= {"p1", "p2", "p3"}
    by_id = {e.id: e for e in POOL}
    positions = [prompt.index(by_id[d].question) for d in demo_ids] + [prompt.index(TEST.question)]
    assert positions == sorted(positions)  # demonstrations first, in order, then the test question
    for d in demo_ids:  # each demonstration: its own documents, then its answer as the assistant turn
        assert f"(Title: Gold {d})" in prompt
        assert f"assistant: {by_id[d].answers[0]}\nuser:" in prompt
    assert prompt.count("Document [1]") == 3 and prompt.count("Document [2]") == 3
    assert prediction.cost.input_tokens == len(prompt.split())  # whitespace tokenizer: exact
    assert prediction.cost.calls == 1 and prediction.cost.output_tokens == 3
    assert prediction.answer == "under the oak"
    assert prediction.provenance.details["demo_documents"] == [2, 2]
    assert (
        prediction.provenance.measures["demos_dropped"]
        == prediction.provenance.measures["demo_documents_dropped"]
        == 0
    )


def test_demonstrations_are_a_seeded_prefix_and_skip_the_test_question():
    one = drag(k=1, m=1).run([TEST], gen())[0].provenance.details["demo_ids"]
    two = drag(k=1, m=2).run([TEST], gen())[0].provenance.details["demo_ids"]
    assert two[:1] == one
    leaking = make(two[0], TEST.question, "under the oak", "The treasure is buried under the oak.")
    [prediction] = drag(k=1, m=2).run([leaking], gen())
    assert two[0] not in prediction.provenance.details["demo_ids"]
    assert len(prediction.provenance.details["demo_ids"]) == 2


def test_budget_drops_demo_documents_then_demos_before_test_passages():
    g = gen()
    full = drag(k=2, m=2).run([TEST], g)[0]
    budget = full.cost.input_tokens - 5  # one demo document less is enough
    [cut] = drag(k=2, m=2, budget=budget).run([TEST], g)
    p = cut.provenance
    assert cut.cost.input_tokens <= budget
    assert p.measures["demo_documents_dropped"] == 1 and p.measures["demos_dropped"] == 0
    assert p.details["demo_documents"] == [2, 1]
    assert p.dropped_tokens == 0 and p.gold_survived is True
    tight = full.cost.input_tokens - 60  # two demos with one document each are not enough
    [cut] = drag(k=2, m=2, budget=tight).run([TEST], g)
    assert cut.cost.input_tokens <= tight
    assert cut.provenance.measures["demo_documents_dropped"] == 2
    assert cut.provenance.measures["demos_dropped"] >= 1
    assert cut.provenance.gold_survived is True


def test_closed_book_and_zero_documents():
    g = gen()
    [prediction] = drag(k=0, m=0).run([TEST], g)
    assert "Documents:" not in g.prompts_[-1] and "Question: Where is the treasure buried?" in g.prompts_[-1]
    assert prediction.provenance.context_ids == []
    [few_shot] = drag(k=0, m=2).run([TEST], g)
    prompt = g.prompts_[-1]
    assert "Documents:" not in prompt
    answers = {e.id: e.answers[0] for e in POOL}
    for demo in few_shot.provenance.details["demo_ids"]:
        assert f"assistant: {answers[demo]}\nuser: Question:" in prompt


def test_estimate_matches_run():
    g = gen()
    strategy = drag(k=2, m=1)
    [estimate] = strategy.estimate([TEST], g)
    [prediction] = strategy.run([TEST], g)
    assert estimate.input_tokens == prediction.cost.input_tokens and estimate.calls == 1


def test_m_without_a_pool_is_a_clear_error():
    with pytest.raises(ValueError, match="demonstrations"):
        DRAG(retrieval=bm25(1), m=1).run([TEST], gen())


def test_pool_outside_train_partition_warns(caplog):
    pool = Pool(examples=POOL)
    pool.partition = "all"
    with caplog.at_level(logging.WARNING):
        DRAG(retrieval=bm25(1), m=1, demonstrations=pool).run([TEST], gen())
    assert "partition" in caplog.text


def test_sweep_and_pool_resolve_through_the_config_layer(tmp_path):
    import json

    path = tmp_path / "pool.jsonl"
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "id": e.id,
                    "question": e.question,
                    "answers": e.answers,
                    "documents": [d.text for d in e.documents],
                }
            )
            for e in POOL
        )
    )
    arm = {
        "strategy": "drag",
        "retriever": "bm25",
        "k": [1, 2],
        "m": [0, 1],
        "demonstrations": {"type": "jsonl", "path": str(path), "partition": "all"},
    }
    resolved = expand_component("strategy", arm, None, "arms[0]")
    # the flat form (retriever and k beside m) resolves into the nested retrieval setting
    assert sorted((r["retrieval"]["k"], r["m"]) for r in resolved) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    strategy = build_component("strategy", resolved[-1])
    assert isinstance(strategy, DRAG) and isinstance(strategy.demonstrations, DatasetLoader)
    [prediction] = strategy.run([TEST], gen())
    assert len(prediction.provenance.details["demo_ids"]) == strategy.m


@pytest.mark.slow
def test_real_generator_two_hotpotqa_questions():
    generator = build("generator", "transformers", {"model": "smollm2", "max_new_tokens": 12})
    questions = build("dataset", "hotpotqa", {"sample": 2, "partition": "eval"}).load().examples
    pool = build("dataset", "hotpotqa", {"sample": 20, "partition": "train"})
    strategy = DRAG(retrieval=bm25(2), m=1, demonstrations=pool, max_new_tokens=12)
    packed = strategy.contexts([Record(q) for q in questions], generator, None)
    predictions = strategy.run(questions, generator)
    for prediction, p in zip(predictions, packed, strict=True):
        assert prediction.cost.input_tokens == generator.prompt_tokens(p.messages) == p.prompt_tokens
        assert prediction.cost.calls == 1 and 0 < prediction.cost.output_tokens <= 12
        assert isinstance(prediction.answer, str)
        assert prediction.provenance.details["demo_ids"][0] not in {q.id for q in questions}
