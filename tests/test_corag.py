from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.rerankers.base import Reranker
from ragkit.strategies.corag import CORAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import AuxUse, Batch, Document, Evidence, Example, Scored

DOCS = [
    Document(id="a", title="", text="Cairo is the capital city of Egypt and its largest city."),
    Document(id="b", title="", text="Cairo, the capital of Egypt, is a large capital city in Egypt."),
    Document(id="c", title="", text="The Nile river flows north through Cairo."),
    Document(id="d", title="", text="Bread is made from flour, water and yeast."),
]
EXAMPLE = Example(
    "q", "Which river flows through the capital of Egypt?", ["Nile"], DOCS, [Evidence("c", DOCS[2].text)]
)


def gen(window=4096):
    return ScriptedGenerator(script={"Nile": "Nile"}, context_window=window, max_new_tokens=8)


def corag(**params):
    retrieval = Retrieval(retriever=build("retriever", "bm25"), k=4)
    return CORAG(retrieval=retrieval, **params)


def test_combinations_are_scored_jointly_not_chunk_by_chunk():
    # two chunks: the redundant pair (a, b) covers "capital" and "Egypt" twice and "river" never;
    # the search prefers the complementary pair, which covers every content word of the question
    [p] = corag(max_chunks=2, cost_weight=0.0).run([EXAMPLE], gen())
    chosen = set(p.provenance.context_ids)
    assert "c#0" in chosen and chosen != {"a#0", "b#0"} and p.answer == "Nile"
    assert p.provenance.measures["chunks_chosen"] == len(chosen) <= 2


def test_the_cost_term_makes_fewer_chunks_win():
    [free] = corag(cost_weight=0.0).run([EXAMPLE], gen())
    [thrifty] = corag(cost_weight=200.0).run([EXAMPLE], gen())
    assert thrifty.provenance.measures["chunks_chosen"] < free.provenance.measures["chunks_chosen"]
    assert thrifty.cost.input_tokens < free.cost.input_tokens


def test_budget_is_a_hard_constraint_of_the_search():
    [free] = corag(cost_weight=0.0).run([EXAMPLE], gen())
    budget = free.cost.input_tokens - 15
    [capped] = corag(cost_weight=0.0, budget=budget).run([EXAMPLE], gen())
    assert capped.cost.input_tokens <= budget and capped.provenance.dropped_tokens == 0  # nothing cut


def test_a_scorer_reads_each_combination_whole_and_its_cost_is_charged():
    class NileFirst(Reranker):
        def __init__(self):
            self.seen = []

        def rerank(self, queries, candidates, *, generator=None):
            self.seen += [c[0].chunk.text for c in candidates]
            scored = [[Scored(c[0].chunk, float("Nile" in c[0].chunk.text))] for c in candidates]
            return Batch(scored, [AuxUse(tokens=10, seconds=0.5) for _ in candidates])

    scorer = NileFirst()
    [p] = corag(scorer=scorer, iterations=6, cost_weight=0.5).run([EXAMPLE], gen())
    assert any("\n" in text for text in scorer.seen)  # combinations of several chunks were scored
    assert p.provenance.context_ids == ["c#0"]  # the one chunk that makes the score, at least cost
    [search] = [s for s in p.provenance.stages if s.name == "search"]
    assert p.provenance.measures["nodes_evaluated"] == 6 == len(scorer.seen)
    assert search.tokens == 60 and p.cost.aux_tokens == 60 + sum(
        s.tokens for s in p.provenance.stages if s.name != "search"
    )
