"""The llama-index adapters (optional extra): any llama-index retriever as a ragkit retriever, and
llama-index node parsers as a chunker that keeps ragkit's chunk contract."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, TextNode

from ragkit.config import load_experiment
from ragkit.registry import build
from ragkit.runner import run_experiment
from ragkit.types import Chunk, Corpus, Document

ITEMS = [
    ("Paris", "Paris is the capital of France."),
    ("Berlin", "Berlin is the capital of Germany."),
    ("Apple", "Apples are fruit that grow on trees."),
    ("Rome", "Rome is the capital of Italy."),
    ("Pear", "Pears are fruit too."),
]
CORPUS = Corpus.from_chunks(
    [Chunk(id=f"{t}#0", doc_id=t, text=text, title=t, position=i) for i, (t, text) in enumerate(ITEMS)]
)


# -- factories the tests name as "tests.test_llamaindex:..." -------------------------------------
class OverlapRetriever(BaseRetriever):
    """Scores a node by how many query words it contains (so ties are easy to make)."""

    def __init__(self, nodes: list[TextNode], similarity_top_k: int = 2, with_scores: bool = True) -> None:
        super().__init__()
        self.nodes = nodes
        self.similarity_top_k = similarity_top_k
        self.with_scores = with_scores
        self.asked: list[int] = []

    def _retrieve(self, query_bundle):
        self.asked.append(self.similarity_top_k)
        words = set(query_bundle.query_str.lower().split())
        scored = [(sum(w in n.text.lower() for w in words), n) for n in self.nodes]
        # a stable sort of the reversed list: later chunks come first among equal scores
        scored = sorted(reversed(scored), key=lambda pair: -pair[0])
        return [
            NodeWithScore(node=n, score=float(s) if self.with_scores else None)
            for s, n in scored[: self.similarity_top_k]
        ]


def overlap(nodes, **options):
    return OverlapRetriever(nodes, **options)


class NoTopK(BaseRetriever):
    """Returns every node, reversed, with no ``similarity_top_k`` attribute and no scores."""

    def __init__(self, nodes):
        super().__init__()
        self.nodes = nodes

    def _retrieve(self, query_bundle):
        return [NodeWithScore(node=n, score=None) for n in reversed(self.nodes)]


def foreign(nodes):
    class Foreign(BaseRetriever):
        def _retrieve(self, query_bundle):
            return [NodeWithScore(node=TextNode(id_="elsewhere", text="x"), score=1.0)]

    return Foreign()


def retriever(**params):
    return build("retriever", "llamaindex", params)


# -- retriever -----------------------------------------------------------------------------------
def test_factory_retriever_maps_nodes_back_to_chunks_and_breaks_ties_by_position():
    r = retriever(factory="tests.test_llamaindex:overlap")
    (hits,) = r.retrieve(["capital of"], CORPUS, 2)
    # Paris, Berlin and Rome tie at 2 words; the retriever listed Rome first, ragkit orders by position
    assert [h.chunk.id for h in hits] == ["Paris#0", "Berlin#0"]
    assert [h.score for h in hits] == [2.0, 2.0]
    assert hits[0].chunk is CORPUS.chunks[0]
    built = r.indexes_.get(CORPUS, r._build)
    assert built.retriever.asked == [5]  # k plus a tie margin (8), capped at the corpus size
    big = Corpus.from_chunks(
        [Chunk(id=f"c{i}", doc_id=f"c{i}", text=f"filler {i}", position=i) for i in range(30)]
    )
    r.retrieve(["filler"], big, 3)
    assert r.indexes_.get(big, r._build).retriever.asked == [3 + 8]
    r.retrieve(["capital"], CORPUS, 4)
    assert r.indexes_.builds == 2  # one index per corpus, reused


def test_retriever_without_top_k_or_scores_is_cut_at_k_with_rank_scores():
    (hits,) = retriever(factory="tests.test_llamaindex:NoTopK").retrieve(["q"], CORPUS, 3)
    assert [h.chunk.id for h in hits] == ["Pear#0", "Rome#0", "Apple#0"]  # its order is kept
    assert [h.score for h in hits] == [1.0, 1 / 2, 1 / 3]


def test_factory_returning_an_index_uses_its_retriever():
    # SummaryIndex's retriever returns every node in order, without scores
    (hits,) = retriever(factory="llama_index.core:SummaryIndex").retrieve(["q"], CORPUS, 2)
    assert [h.chunk.id for h in hits] == ["Paris#0", "Berlin#0"]


def test_options_reach_the_factory_and_the_cache_key():
    plain = retriever(factory="tests.test_llamaindex:overlap")
    unscored = retriever(factory="tests.test_llamaindex:overlap", options={"with_scores": False})
    (hits,) = unscored.retrieve(["fruit"], CORPUS, 2)
    assert [h.score for h in hits] == [1.0, 0.5]  # no scores: 1 / rank
    assert plain.spec_hash() != unscored.spec_hash()
    assert plain.spec()["llama_index_core"]  # the library version is part of the key
    assert "model" not in plain.spec()  # no embedder is used


def test_bad_factories_fail_clearly():
    with pytest.raises(ValueError, match=r"field 'factory' is 'nope'; expected 'package\.module:name'"):
        retriever(factory="nope").retrieve(["q"], CORPUS, 1)
    with pytest.raises(ValueError, match="has no 'missing'"):
        retriever(factory="tests.test_llamaindex:missing").warm_up()
    with pytest.raises(ValueError, match="not a chunk of the corpus"):
        retriever(factory="tests.test_llamaindex:foreign").retrieve(["q"], CORPUS, 1)
    with pytest.raises(TypeError, match="expected a llama-index retriever"):
        retriever(factory="builtins:dict").retrieve(["q"], CORPUS, 1)
    with pytest.raises(ValueError, match="cannot be called with nodes and field 'options'"):
        retriever(factory="tests.test_llamaindex:overlap", options={"top": 3}).retrieve(["q"], CORPUS, 1)


def test_empty_corpus_and_zero_k():
    r = retriever(factory="tests.test_llamaindex:overlap")
    assert r.retrieve(["a", "b"], Corpus.from_chunks([]), 3) == [[], []]
    assert r.retrieve(["a"], CORPUS, 0) == [[]]


def test_vector_index_matches_ragkit_dense_retrieval():
    """llama-index's VectorStoreIndex over ragkit's embedder ranks and scores as the dense
    retriever does, and its embedder tokens are counted the same way."""
    queries = ["What is the capital of Germany?", "Which fruit grows on trees?"]
    vector = retriever()
    dense = build("retriever", "dense", {})
    got = vector.retrieve(queries, CORPUS, 3)
    want = dense.retrieve(queries, CORPUS, 3)
    assert [[h.chunk.id for h in hits] for hits in got] == [[h.chunk.id for h in hits] for hits in want]
    for g, w in zip(got, want, strict=True):
        assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-5)
    assert got[0][0].chunk.id == "Berlin#0"
    assert vector.aux_tokens_ == dense.aux_tokens_ > 0


# -- chunker -------------------------------------------------------------------------------------
TEXT = (
    "First para has  two   spaces. And a second sentence here.\n\nSecond paragraph starts. "
    + " ".join(f"Word{i} is here." for i in range(60))
    + "\n\n\nThird para."
)
DOCS = [Document(id="x", title="X", text=TEXT), Document(id="y", text="Short."), Document(id="z", text=" ")]


@pytest.mark.parametrize("parser", ["sentence", "token"])
def test_chunks_are_slices_of_the_document_with_overlap(parser):
    chunker = build(
        "chunker", "llamaindex", {"parser": parser, "options": {"chunk_size": 60, "chunk_overlap": 10}}
    )
    chunks = chunker.chunk(DOCS)
    x = [c for c in chunks if c.doc_id == "x"]
    assert len(x) > 3 and chunks[-1].id == "y#0" and not [c for c in chunks if c.doc_id == "z"]
    assert [c.id for c in x] == [f"x#{i}" for i in range(len(x))]
    assert [c.position for c in chunks] == list(range(len(chunks)))
    starts = []
    for c in x:
        assert c.text in TEXT and c.title == "X"
        starts.append(TEXT.index(c.text))
        sentences = dict(c.meta)["sentences"]
        assert sentences and all(s in c.text for s in sentences)
    assert starts == sorted(starts)
    # consecutive chunks overlap, and together they cover every word of the document
    assert all(TEXT.index(b.text) < TEXT.index(a.text) + len(a.text) for a, b in itertools.pairwise(x))
    assert set(" ".join(c.text for c in x).split()) == set(TEXT.split())
    assert chunker.chunk(DOCS) == chunks  # deterministic


def test_chunk_size_counts_tokens_of_the_chosen_tokenizer():
    words = build(
        "chunker",
        "llamaindex",
        {"parser": "token", "tokenizer": "whitespace", "options": {"chunk_size": 12, "chunk_overlap": 0}},
    ).chunk(DOCS[:1])
    assert max(len(c.text.split()) for c in words) <= 12
    cl100k = build(
        "chunker", "llamaindex", {"parser": "token", "options": {"chunk_size": 12, "chunk_overlap": 0}}
    )
    assert len(cl100k.chunk(DOCS[:1])) > len(words)  # "Word12" is several cl100k tokens


class CollapsingParser:
    """A node parser that re-joins words with single spaces and reports no offsets."""

    def __init__(self, rewrite: bool = False) -> None:
        self.rewrite = rewrite

    def get_nodes_from_documents(self, documents):
        text = documents[0].text
        pieces = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
        if self.rewrite:
            pieces = [p.upper() for p in pieces]
        return [TextNode(text=p) for p in pieces]


def test_nodes_without_offsets_are_located_in_the_original_text():
    chunks = build("chunker", "llamaindex", {"parser": "tests.test_llamaindex:CollapsingParser"}).chunk(
        DOCS[:1]
    )
    assert chunks[0].text == "First para has  two   spaces. And a second sentence here."  # original spacing
    assert chunks[-1].text == "Third para."
    with pytest.raises(ValueError, match="not in its text"):
        build(
            "chunker",
            "llamaindex",
            {"parser": "tests.test_llamaindex:CollapsingParser", "options": {"rewrite": True}},
        ).chunk(DOCS[:1])


def test_bad_chunker_fields_fail_clearly():
    def chunk(**params):
        return build("chunker", "llamaindex", params).chunk(DOCS)

    with pytest.raises(ValueError, match="field 'parser' is 'nope'; expected 'sentence', 'token'"):
        chunk(parser="nope")
    with pytest.raises(ValueError, match="not a llama-index node parser"):
        chunk(parser="json:loads")
    with pytest.raises(ValueError, match="rejected field 'options'"):
        chunk(options={"chunk_size": -3})
    with pytest.raises(ValueError, match="takes no 'tokenizer'"):
        chunk(parser="tests.test_llamaindex:CollapsingParser", tokenizer="whitespace")


def test_an_experiment_with_llamaindex_chunker_and_retriever(experiment_dict):
    experiment_dict["arms"] = [
        {
            "strategy": "rag",
            "chunker": {"type": "llamaindex", "options": {"chunk_size": 64, "chunk_overlap": 0}},
            "retriever": {"type": "llamaindex", "factory": "tests.test_llamaindex:overlap"},
            "k": 1,
        }
    ]
    (result,) = run_experiment(load_experiment(experiment_dict, allow_code=True))  # a factory from tests
    assert result.summary["n_questions"] == 6
    assert result.summary["contains_answer"] == pytest.approx(4 / 6)  # the scripted generator's score
    # word overlap at k=1 finds the gold passage for 5 of the 6 questions
    assert result.summary["evidence_recall"] == pytest.approx(5 / 6)
