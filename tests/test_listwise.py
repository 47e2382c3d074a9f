import pytest

from ragkit.generators.scripted import ScriptedGenerator
from ragkit.registry import build
from ragkit.rerankers.listwise import ListwiseReranker, parse_ranking
from ragkit.strategies.rag import RAG
from ragkit.strategies.retrieval import Retrieval
from ragkit.types import Chunk, Document, Evidence, Example, Scored

CANDIDATES = [
    Scored(Chunk(id=f"c{i}", doc_id=f"c{i}", text=f"passage {i}", position=i), 1.0 / (i + 1))
    for i in range(6)
]


class Reverser(ScriptedGenerator):
    """Ranks every window it is shown in reverse, so the last candidates bubble to the top."""

    def _answer(self, prompt: str) -> str:
        if "Rank the " not in prompt:
            return "fact"
        n = int(prompt.rsplit("Rank the ", 1)[1].split(" ", 1)[0])
        return " > ".join(f"[{i}]" for i in range(n, 0, -1))


@pytest.mark.parametrize(
    "text, expected", [("[3] > [1] > [2]", [2, 0, 1]), ("2, 2, 9, 1", [1, 0, 2]), ("no idea", [0, 1, 2])]
)
def test_parse_ranking(text, expected):
    assert parse_ranking(text, 3) == expected


def test_full_ranking_is_one_call_over_every_candidate():
    g = Reverser()
    [ranked] = ListwiseReranker().rerank(["q"], [CANDIDATES], generator=g)
    assert len(g.prompts_) == 1 and all(f"[{i + 1}] passage {i}" in g.prompts_[0] for i in range(6))
    assert [s.chunk.id for s in ranked] == [f"c{i}" for i in reversed(range(6))]
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)


def test_sliding_windows_move_from_the_back_and_read_candidates_again():
    g = Reverser()
    found = ListwiseReranker(window=4, stride=2).rerank(["q"], [CANDIDATES], generator=g)
    assert len(g.prompts_) == 2  # windows [2, 6) then [0, 4)
    assert len(found.use[0].generations) == 2
    # the first window reverses c2..c5; the second re-reads the two it moved forward (c5, c4)
    assert [s.chunk.id for s in found[0]] == ["c4", "c5", "c1", "c0", "c3", "c2"]


def test_without_a_generator_it_says_so():
    with pytest.raises(ValueError, match="generator"):
        ListwiseReranker().rerank(["q"], [CANDIDATES])
    with pytest.raises(ValueError, match="window"):
        ListwiseReranker(window=4, stride=4)


def test_its_calls_are_charged_to_the_question_as_generator_calls():
    docs = [Document(id=f"d{i}", title="", text=f"fact number {i} here") for i in range(5)]
    example = Example("e", "Which fact?", ["fact"], docs, [Evidence("d4", "fact number 4 here")])
    retrieval = Retrieval(
        retriever=build("retriever", "bm25"), k=2, reranker=ListwiseReranker(), rerank_depth=5
    )
    g = Reverser()
    [p] = RAG(retrieval=retrieval).run([example], g)
    assert [c.role for c in p.provenance.calls] == ["rerank", "answer"] and p.cost.calls == 2
    assert p.cost.input_tokens == sum(len(x.split()) for x in g.prompts_)  # both prompts count
    rerank = next(s for s in p.provenance.stages if s.name == "rerank")
    assert len(rerank.ids) == 5 and p.provenance.context_ids == rerank.ids[:2]
