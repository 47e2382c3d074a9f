"""The strategy contract, checked on every registered strategy with the scripted generator.

A strategy is built from its constructor's annotations alone (a retrieval setting gets BM25, a
dataset parameter a tiny demonstration pool; everything else keeps its default), so a new strategy
is covered the moment it is registered. Checked: one prediction per question, in order; every
generator call the generator saw is charged to a question (effective context tokens, calls) and
recorded in its provenance; auxiliary costs are what the recorded stages returned; provenance is
typed and survives predictions.jsonl; a ``budget`` caps every question's effective context; the
same inputs give the same outputs; retrievers are reached only through ``retrievers()``; the
declared theta columns exist in results.
"""

from __future__ import annotations

import json

import pytest

from ragkit import registry
from ragkit.allocation import split_column
from ragkit.config import (
    build_component,
    catalog_names,
    component_kind,
    expand_component,
    flatten,
    settings_class,
)
from ragkit.data.base import DatasetLoader, LoadedDataset
from ragkit.generators.base import Generation
from ragkit.generators.scripted import ScriptedGenerator
from ragkit.retrievers.base import Retriever
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example, Prediction, Provenance


def make(i: str, question: str, answer: str, fact: str) -> Example:
    docs = [
        Document(id=f"{i}-gold", title=f"Gold {i}", text=f"{fact} More words follow here about it."),
        Document(id=f"{i}-bread", title="Bread", text="Bread is made from flour, water and yeast. " * 3),
        Document(id=f"{i}-chess", title="Chess", text="Chess is a board game for two players. " * 3),
    ]
    return Example(i, question, [answer], docs, [Evidence(f"{i}-gold", fact)])


QUESTIONS = [
    make("c1", "Where is the treasure buried?", "under the oak", "The treasure is buried under the oak."),
    make("c2", "Who built the red tower?", "Alice", "Alice built the red tower."),
    make("c3", "What colour is the lake?", "green", "The lake is green."),
]
POOL = [
    make("p1", "Who wrote the blue book?", "Bob", "Bob wrote the blue book."),
    make("p2", "Where does the river end?", "the sea", "The river ends in the sea."),
    make("p3", "What is the cat called?", "Tom", "The cat is called Tom."),
]
SCRIPT = {"treasure": "under the oak", "tower": "Alice"}


class Pool(DatasetLoader):
    def __init__(self) -> None:
        self.partition = "train"

    def load(self) -> LoadedDataset:
        return LoadedDataset(list(POOL), None, "contract")


class Guarded(Retriever):
    """BM25 that fails when reached other than through a strategy's declared retrieval settings."""

    def __init__(self) -> None:
        self.inner = registry.build("retriever", "bm25")
        self.open = False

    def spec(self) -> dict:
        return self.inner.spec()

    def retrieve(self, queries, corpus, k, *, evidence=None):
        assert self.open, "a retriever was reached other than through Strategy.retrievers()"
        return self.inner.retrieve(queries, corpus, k, evidence=evidence)


class Declared(Retriever):
    """What the runner does to a declared setting (wraps its retriever); opens the guard."""

    def __init__(self, inner: Guarded) -> None:
        self.inner = inner

    def spec(self) -> dict:
        return self.inner.spec()

    def retrieve(self, queries, corpus, k, *, evidence=None):
        self.inner.open = True
        try:
            return self.inner.retrieve(queries, corpus, k, evidence=evidence)
        finally:
            self.inner.open = False


class Counting(ScriptedGenerator):
    """The scripted generator, keeping every generation it returns (what must be charged)."""

    def _generate(self, prompts, requests) -> list[Generation]:
        out = super()._generate(prompts, requests)
        self.generations_ = [*getattr(self, "generations_", []), *out]
        return out


def gen() -> Counting:
    return Counting(script=SCRIPT, default="no idea", context_window=2048, max_new_tokens=12)


def build(name: str, reranker=None, **overrides):
    """The strategy from its annotations: retrieval settings, demonstration pools, defaults."""
    cls = registry.get("strategy", name)
    params = {}
    for pname, info in registry.params_model(cls).model_fields.items():
        if settings_class(info.annotation) is Retrieval:
            params[pname] = Retrieval(retriever=Guarded(), k=2, reranker=reranker, rerank_depth=3)
        elif component_kind(info.annotation) == "dataset":
            params[pname] = Pool()
        elif info.is_required():
            pytest.fail(f"strategy {name!r}: add a contract fixture for required parameter {pname!r}")
    strategy = cls(**{**params, **overrides})
    for setting in strategy.retrievers():
        setting.retriever = Declared(setting.retriever)
    return strategy


STRATEGIES = registry.names("strategy")


def without_seconds(prediction: Prediction) -> dict:
    data = prediction.to_dict()
    for key in ("prefill_seconds", "decode_seconds", "aux_seconds", "seconds"):
        data["cost"].pop(key)
    for item in data["provenance"]["stages"] + data["provenance"]["calls"]:
        item.pop("seconds")
    return data


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_generator_call_is_charged_and_recorded(name):
    g = gen()
    predictions = build(name).run(QUESTIONS, g)
    assert [p.example_id for p in predictions] == [q.id for q in QUESTIONS]
    seen = getattr(g, "generations_", [])
    answers = registry.get("strategy", name).answers  # retrieval only makes no call
    assert sum(p.cost.calls for p in predictions) == len(seen) and (len(seen) > 0) == answers
    # effective context: every prompt's tokens (the whitespace tokenizer makes this exact)
    assert sum(p.cost.input_tokens for p in predictions) == sum(x.input_tokens for x in seen)
    assert sum(p.cost.output_tokens for p in predictions) == sum(x.output_tokens for x in seen)
    for p in predictions:
        calls, stages = p.provenance.calls, p.provenance.stages
        assert isinstance(p.provenance, Provenance) and isinstance(p.answer, str)
        assert p.cost.calls == len(calls) and p.cost.input_tokens == sum(c.input_tokens for c in calls)
        assert p.cost.output_tokens == sum(c.output_tokens for c in calls)
        assert p.cost.aux_tokens == sum(s.tokens for s in stages)
        assert p.cost.aux_seconds == pytest.approx(sum(s.seconds for s in stages))
        assert (p.cost.flops > 0) == bool(calls) and all(c.role for c in calls)


RETRIEVING = [
    n
    for n in STRATEGIES
    if any(
        settings_class(i.annotation) is Retrieval
        for i in registry.params_model(registry.get("strategy", n)).model_fields.values()
    )
]


@pytest.mark.parametrize("name", RETRIEVING)
def test_a_reranker_that_calls_the_generator_is_charged_to_the_question(name):
    from ragkit.rerankers.listwise import ListwiseReranker

    g = gen()
    predictions = build(name, reranker=ListwiseReranker()).run(QUESTIONS, g)
    assert sum(p.cost.calls for p in predictions) == len(g.generations_)
    assert sum(p.cost.input_tokens for p in predictions) == sum(x.input_tokens for x in g.generations_)
    for p in predictions:
        reranks = [c for c in p.provenance.calls if c.role.rsplit(".", 1)[-1] == "rerank"]
        assert reranks and all("Rank the" in c.messages[-1]["content"] for c in reranks)


@pytest.mark.parametrize("name", STRATEGIES)
def test_provenance_is_typed_and_survives_predictions_jsonl(name):
    for p in build(name).run(QUESTIONS, gen()):
        line = json.dumps(p.to_dict())  # what predictions.jsonl holds
        assert Prediction.from_dict(json.loads(line)) == p
        assert p.provenance.evidence_recall is None or 0.0 <= p.provenance.evidence_recall <= 1.0
        assert all(isinstance(v, bool | int | float) or v is None for v in p.provenance.measures.values())


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_inputs_same_outputs(name):
    first = [without_seconds(p) for p in build(name).run(QUESTIONS, gen())]
    again = [without_seconds(p) for p in build(name).run(QUESTIONS, gen())]
    assert first == again


@pytest.mark.parametrize("name", STRATEGIES)
def test_budget_caps_every_questions_effective_context(name):
    fields = registry.params_model(registry.get("strategy", name)).model_fields
    if "budget" not in fields:
        pytest.skip(f"{name} takes no budget")
    # ALR^2's budget covers both of its prompts (extraction, then reasoning over up to
    # evidence_tokens): a budget smaller than the two prompts' overhead is refused (BudgetError)
    extra, floor = ({"evidence_tokens": 32}, 240) if name == "alr2" else ({}, 120)
    free = build(name, **extra).run(QUESTIONS, gen())
    budget = max(floor, int(0.6 * max(p.cost.input_tokens for p in free)))
    for p in build(name, budget=budget, **extra).run(QUESTIONS, gen()):
        assert p.cost.input_tokens <= budget, f"{name}: {p.cost.input_tokens} > budget {budget}"


@pytest.mark.parametrize("name", STRATEGIES)
def test_estimate_has_one_cost_per_question(name):
    strategy = build(name)
    try:
        estimates = strategy.estimate(QUESTIONS, gen())
    except NotImplementedError:
        pytest.skip(f"{name} has no estimate()")
    predictions = build(name).run(QUESTIONS, gen())
    assert len(estimates) == len(QUESTIONS)
    if not registry.get("strategy", name).answers:  # retrieval only: no call, no prompt
        assert all(e.calls == 0 and e.input_tokens == 0 for e in estimates)
        return
    for estimate, prediction in zip(estimates, predictions, strict=True):
        assert estimate.calls >= 1 and estimate.input_tokens > 0
        if prediction.cost.calls == 1 and estimate.calls == 1:  # one call: the estimate is exact
            assert estimate.input_tokens == prediction.cost.input_tokens


@pytest.mark.parametrize("name", STRATEGIES)
def test_declared_theta_columns_exist_in_results(name):
    cls = registry.get("strategy", name)
    if not cls.theta:
        return
    arm = {"strategy": name}
    fields = registry.params_model(cls).model_fields
    for pname, info in fields.items():
        if settings_class(info.annotation) is Retrieval:
            arm[pname] = {"retriever": "bm25", "k": 2}
    [resolved] = expand_component("strategy", arm, None, "arms[0]")
    columns = set(flatten({"strategy": resolved}))
    measures = {k for p in build(name).run(QUESTIONS, gen()) for k in p.provenance.measures}
    for dim, declared in cls.theta.items():
        column, _ = split_column(declared)
        assert column in columns or column in measures, (
            f"{name}: theta {dim} reads {column!r}, which no run has"
        )


@pytest.mark.parametrize("entry", catalog_names("strategy"))
def test_every_strategy_catalog_entry_resolves_and_builds(entry):
    [resolved] = expand_component("strategy", {"strategy": entry}, None, "arms[0]")
    assert resolved["name"] == entry and resolved["type"] in STRATEGIES
    assert isinstance(build_component("strategy", resolved), registry.get("strategy", resolved["type"]))


def test_an_arm_overrides_its_catalog_entry():
    [resolved] = expand_component("strategy", {"strategy": "chain-of-agents", "workers": 7}, None, "arms[0]")
    assert resolved["type"] == "chain_of_agents" and resolved["workers"] == 7


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_call_keeps_its_prompt(name):
    """What the driver's traces show: each call's messages, the last one the user turn it answered."""
    g = gen()
    for p in build(name).run(QUESTIONS, g):
        for call in p.provenance.calls:
            assert call.messages and call.messages[-1]["role"] == "user", (name, call.role)


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_constructor_parameter_reads_back(name):
    """get_params (specs, cache binding, a unit sent to an executor) reads each parameter by name:
    a strategy that stores one under another name (RAPID's draft_budget as RAG's budget) fails
    only once a run starts."""
    params = build(name).get_params()
    assert set(params) == set(registry.params_model(registry.get("strategy", name)).model_fields)
