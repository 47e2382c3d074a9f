import pytest

from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.strategies.context import cut_tokens
from ragkit.strategies.full_context import FullContext
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Document, Evidence, Example

DOCS = [
    Document(id="a", title="Alpha", text="alpha " * 30),
    Document(id="b", title="Beta", text="The treasure is buried under the old oak tree. " + "beta " * 30),
    Document(id="c", title="Gamma", text="gamma " * 30),
]
EXAMPLE = Example(
    id="e1",
    question="Where is the treasure buried?",
    answers=["under the old oak tree"],
    documents=DOCS,
    evidence=[Evidence(doc_id="b", text="The treasure is buried under the old oak tree.")],
)


def bm25(k, **params):
    return Retrieval(retriever=build("retriever", "bm25"), k=k, **params)


def gen(window=4096):
    return ScriptedGenerator(
        script={"treasure": "under the old oak tree"}, context_window=window, max_new_tokens=8
    )


def test_rag_prompt_and_exact_token_accounting():
    g = gen()
    [prediction] = RAG(retrieval=bm25(1)).run([EXAMPLE], g)
    prompt = g.prompts_[-1]
    assert "Document [1] (Title: Beta) The treasure is buried" in prompt
    assert "alpha" not in prompt and "gamma" not in prompt
    assert prediction.cost.input_tokens == len(prompt.split())  # whitespace tokenizer: exact
    assert prediction.cost.calls == 1 and prediction.cost.output_tokens == 5
    assert prediction.provenance.gold_survived is True
    assert prediction.provenance.evidence_recall == 1.0
    assert prediction.provenance.context_ids == ["b#0"]
    assert prediction.answer == "under the old oak tree"


def test_rag_budget_cuts_and_records():
    g = gen()
    full = RAG(retrieval=bm25(3)).run([EXAMPLE], g)[0]
    budget = full.cost.input_tokens - 20
    [cut] = RAG(retrieval=bm25(3), budget=budget).run([EXAMPLE], g)
    assert cut.cost.input_tokens <= budget
    assert cut.provenance.dropped_tokens >= 20
    assert cut.provenance.gold_survived is True  # the best passage (the gold one) is kept whole


def test_rag_orders():
    g = gen()
    rag = RAG(retrieval=bm25(3, order="original"))
    [prediction] = rag.run([EXAMPLE], g)
    assert prediction.provenance.context_ids == ["a#0", "b#0", "c#0"]


def test_full_context_fits_window_and_records_truncation():
    g = gen(window=90)
    [prediction] = FullContext().run([EXAMPLE], g)
    assert prediction.cost.input_tokens <= 90 - 8
    assert prediction.provenance.measures["truncated"] is True
    assert prediction.provenance.dropped_tokens > 0
    assert prediction.provenance.measures["full_context_tokens"] > prediction.provenance.context_tokens
    assert isinstance(prediction.provenance.gold_survived, bool)
    roomy = FullContext().run([EXAMPLE], gen())[0]
    assert roomy.provenance.measures["truncated"] is False and roomy.provenance.dropped_tokens == 0
    assert roomy.provenance.gold_survived is True


def test_full_context_estimate_matches_run():
    g = gen(window=90)
    strategy = FullContext(truncation="end")
    [estimate] = strategy.estimate([EXAMPLE], g)
    [prediction] = strategy.run([EXAMPLE], g)
    assert estimate.input_tokens == prediction.cost.input_tokens


@pytest.mark.parametrize(
    "where, expected", [("middle", [0, 1, 8, 9]), ("end", [0, 1, 2, 3]), ("start", [6, 7, 8, 9])]
)
def test_cut_tokens(where, expected):
    assert cut_tokens(list(range(10)), 4, where) == expected


def test_rag_charges_reranker_and_pruner_tokens_and_seconds_per_question():
    from ragkit.pruners.base import Pruner
    from ragkit.rerankers.base import Reranker
    from ragkit.types import AuxUse, Batch

    class Reverse(Reranker):
        def rerank(self, queries, candidates, *, generator=None):
            use = [AuxUse(tokens=3 * (i + 1), seconds=0.5 * (i + 1)) for i in range(len(queries))]
            return Batch([list(reversed(c)) for c in candidates], use)

    class Keep(Pruner):
        def prune(self, queries, candidates, *, evidence=None):
            return Batch([list(c) for c in candidates], [AuxUse(tokens=100, seconds=2.0) for _ in queries])

    other = Example(id="e2", question="What is gamma?", answers=["gamma"], documents=DOCS)
    rag = RAG(retrieval=bm25(2, reranker=Reverse(), rerank_depth=3, pruner=Keep()))
    plain = RAG(retrieval=bm25(2))
    predictions = rag.run([EXAMPLE, other], gen())
    baseline = plain.run([EXAMPLE, other], gen())
    for i, (p, b) in enumerate(zip(predictions, baseline, strict=True)):
        assert p.cost.aux_tokens - b.cost.aux_tokens == 3 * (i + 1) + 100
        retrieve, rerank, prune = p.provenance.stages
        assert [retrieve.name, rerank.name, prune.name] == ["retrieve", "rerank", "prune"]
        assert rerank.seconds == 0.5 * (i + 1) and prune.seconds == 2.0 and rerank.tokens == 3 * (i + 1)
        assert rerank.ids == list(reversed(retrieve.ids)) and prune.ids == rerank.ids[:2]
        assert p.cost.aux_seconds == pytest.approx(retrieve.seconds + 0.5 * (i + 1) + 2.0)
    estimated = rag.estimate([EXAMPLE, other], gen())
    assert [c.aux_tokens for c in estimated] == [p.cost.aux_tokens for p in predictions]
