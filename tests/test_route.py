import pandas as pd
import pytest

from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.strategies.base import Record
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.strategies.route import SelfRoute, oracle_route
from ragkit.types import Document, Evidence, Example


def make(i, question, answer, fact):
    docs = [
        Document(id=f"{i}-a", title=f"Gold {i}", text=f"{fact} More words follow here."),
        Document(id=f"{i}-b", title=f"Other {i}", text="Bread is made from flour, water and yeast."),
    ]
    return Example(i, question, [answer], docs, [Evidence(f"{i}-a", fact)])


HARD = make("t1", "Where is the treasure buried?", "under the oak", "The treasure is buried under the oak.")
EASY = make("t2", "Who built the red tower?", "Alice", "Alice built the red tower.")
# RAG (k=1) shows only the gold passage; the full context also shows the bread passage. The script
# abstains on the treasure question from RAG's context and answers it from the full context.
SCRIPT = {"Bread": "under the oak", "treasure": "unanswerable", "tower": "Alice"}


def bm25(k):
    return Retrieval(retriever=build("retriever", "bm25"), k=k)


def test_routes_only_abstentions_and_pays_for_both_calls():
    g = ScriptedGenerator(script=SCRIPT)
    hard, easy = SelfRoute(retrieval=bm25(1)).run([HARD, EASY], g)
    assert len(g.prompts_) == 3
    rag_prompt, _, full_prompt = g.prompts_
    assert (
        "reply exactly: unanswerable" in rag_prompt and "Bread" not in rag_prompt and "Bread" in full_prompt
    )
    assert hard.provenance.measures["routed"] is True
    assert hard.provenance.details["rag_answer"] == "unanswerable"
    assert hard.answer == "under the oak" and hard.cost.calls == 2
    assert hard.cost.input_tokens == len(rag_prompt.split()) + len(full_prompt.split())
    assert hard.provenance.details["full_context"]["measures"]["truncated"] is False
    assert hard.provenance.gold_survived is True
    assert [c.role for c in hard.provenance.calls] == ["rag.answer", "full_context.answer"]
    assert easy.provenance.measures["routed"] is False and easy.answer == "Alice" and easy.cost.calls == 1


def test_steps_are_exactly_the_rag_and_full_context_arms():
    g = ScriptedGenerator(script=SCRIPT)
    SelfRoute(retrieval=bm25(1)).run([HARD], g)
    RAG(retrieval=bm25(1), abstain=True).run([HARD], g)
    FullContext().run([HARD], g)
    assert g.prompts_[0] == g.prompts_[2] and g.prompts_[1] == g.prompts_[3]  # same generation cache keys


def test_budget_limits_the_routed_call_or_skips_it():
    g = ScriptedGenerator(script=SCRIPT)
    [plain] = SelfRoute(retrieval=bm25(1)).run([HARD], g)
    budget = plain.cost.input_tokens - 10
    [capped] = SelfRoute(retrieval=bm25(1), budget=budget, min_route_tokens=5).run([HARD], g)
    assert capped.provenance.measures["routed"] is True and capped.cost.input_tokens <= budget
    assert capped.provenance.details["full_context"]["measures"]["truncated"] is True
    rag_tokens = capped.provenance.details["rag"]["context_tokens"]
    tiny = plain.cost.input_tokens - 70
    [skipped] = SelfRoute(retrieval=bm25(1), budget=tiny, min_route_tokens=64).run([HARD], g)
    assert skipped.provenance.measures["routed"] is False
    assert "budget" in skipped.provenance.details["route_skipped"]
    assert skipped.answer == "unanswerable" and skipped.cost.calls == 1 and rag_tokens > 0


def test_estimate_is_the_routed_upper_bound():
    g = ScriptedGenerator(script=SCRIPT)
    s = SelfRoute(retrieval=bm25(1))
    [estimate] = s.estimate([HARD], g)
    [prediction] = s.run([HARD], g)
    assert estimate.calls == 2 and estimate.input_tokens == prediction.cost.input_tokens


def test_oracle_route_takes_the_better_arm_per_question_and_the_cheaper_on_ties():
    rag = pd.DataFrame(
        {"example_id": ["a", "b", "c", "d"], "f1": [1.0, 0.0, 0.5, 0.0], "cost_input_tokens": [100] * 4}
    )
    full = pd.DataFrame(
        {"example_id": ["a", "b", "c", "d"], "f1": [0.0, 1.0, 0.5, 0.0], "cost_input_tokens": [900] * 4}
    )
    out = oracle_route(rag, full, "f1")
    assert out["oracle"] == pytest.approx(0.625) and out["rag"] == pytest.approx(0.375)
    assert out["routed_share"] == 0.25 and out["oracle_tokens"] == pytest.approx(300)
    assert out["full_only"] == 0.25 and out["rag_only"] == 0.25
    assert out["headroom_over_best"] == pytest.approx(0.25)


@pytest.mark.slow
def test_real_generator_two_hotpotqa_questions():
    generator = build("generator", "transformers", {"model": "smollm2", "max_new_tokens": 12})
    questions = build("dataset", "hotpotqa", {"sample": 2, "partition": "eval"}).load().examples
    predictions = SelfRoute(retrieval=bm25(2), max_new_tokens=12).run(questions, generator)
    for p in predictions:
        assert p.cost.calls == (2 if p.provenance.measures["routed"] else 1)
        rag_tokens = generator.prompt_tokens(
            RAG(retrieval=bm25(2), abstain=True)
            .contexts([Record(q) for q in questions if q.id == p.example_id], generator, None)[0]
            .messages
        )
        assert p.cost.input_tokens >= rag_tokens
