"""Retrievers: BM25 backends agree (and match hand arithmetic), dense finds paraphrases, hybrid
fuses ranks as RRF says, the oracle returns exactly the gold chunks; contract edge cases."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from ragkit import registry
from ragkit.cache import get_cache
from ragkit.retrievers.base import Retriever
from ragkit.retrievers.bm25 import BM25Retriever
from ragkit.retrievers.hybrid import HybridRetriever
from ragkit.retrievers.oracle import OracleRetriever
from ragkit.types import Chunk, Corpus, Evidence, Scored

TEXTS = [
    ("Paris", "Paris is the seat of the French government and its largest city."),
    ("Spider", "Arachnids possess eight limbs and most of them spin silk webs."),
    ("Mount Everest", "Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into sugar and oxygen."),
    ("Python", "Python is a programming language created by Guido van Rossum in 1991."),
    ("Nile", "The Nile flows north through eleven countries into the Mediterranean Sea."),
    ("Jazz", "Jazz originated in New Orleans among African-American communities."),
    ("Moon landing", "Apollo 11 landed the first humans on the Moon in July 1969."),
    ("Chess", "Chess is a board game for two players on a checkered board of 64 squares."),
    ("Coffee", "Coffee is brewed from roasted beans of the Coffea plant."),
    ("Volcano", "Mount Vesuvius erupted in 79 AD and buried the city of Pompeii."),
    ("Penguin", "Penguins are flightless seabirds living almost only in the Southern Hemisphere."),
]


def make_corpus(texts: Sequence[tuple[str, str]] = TEXTS, reverse_positions: bool = False) -> Corpus:
    n = len(texts)
    chunks = [
        Chunk(
            id=f"c{i}",
            doc_id=f"d{i}",
            text=text,
            title=title,
            position=(n - 1 - i) if reverse_positions else i,
        )
        for i, (title, text) in enumerate(texts)
    ]
    return Corpus.from_chunks(chunks)


def ids(hits: list[Scored]) -> list[str]:
    return [h.chunk.id for h in hits]


QUERIES = [
    "When did Apollo 11 land on the Moon?",
    "Which city did Vesuvius bury?",
    "Who created the Python programming language?",
    "jazz New Orleans",
    "sea",  # in several documents: exercises BM25Okapi's negative-idf floor
]


# -- BM25 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["bm25s", "rank_bm25"])
def test_bm25_finds_the_obvious_chunk(backend: str) -> None:
    hits = BM25Retriever(backend=backend).retrieve(QUERIES[:4], make_corpus(), 3)
    assert [h[0].chunk.id for h in hits] == ["c7", "c10", "c4", "c6"]
    assert all(len(h) == 3 and h[0].score >= h[1].score >= h[2].score for h in hits)


def test_bm25s_debug_logging_is_silenced(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    with caplog.at_level(logging.DEBUG):  # root at DEBUG: only the bm25s logger's own level filters
        BM25Retriever(backend="bm25s").retrieve(QUERIES[:1], make_corpus(), 2)
    assert logging.getLogger("bm25s").level == logging.WARNING
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]


def test_bm25_backends_agree_on_ranking_and_scores() -> None:
    corpus = make_corpus()
    fast = BM25Retriever(backend="bm25s").retrieve(QUERIES, corpus, len(corpus))
    ref = BM25Retriever(backend="rank_bm25").retrieve(QUERIES, corpus, len(corpus))
    for a, b in zip(fast, ref, strict=True):
        assert ids(a) == ids(b)
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], rtol=1e-9, atol=1e-12)


THREE = [("", "apple banana"), ("", "apple cherry cherry"), ("", "durian")]


@pytest.mark.parametrize("backend", ["bm25s", "rank_bm25"])
def test_bm25_matches_hand_computed_okapi(backend: str) -> None:
    corpus = make_corpus(THREE)
    retriever = BM25Retriever(backend=backend, k1=1.5, b=0.75)
    n, avgdl, k1, b = 3, (2 + 3 + 1) / 3, 1.5, 0.75
    # "cherry": in 1 of 3 documents, tf 2 in a 3-token document.
    idf = math.log((n - 1 + 0.5) / (1 + 0.5))
    expected = idf * 2 * (k1 + 1) / (2 + k1 * (1 - b + b * 3 / avgdl))
    [hits] = retriever.retrieve(["cherry"], corpus, 1)
    assert ids(hits) == ["c1"]
    assert hits[0].score == pytest.approx(expected, rel=1e-12)
    # "apple": in 2 of 3 documents, so log(1.5 / 2.5) < 0 and BM25Okapi floors it at
    # 0.25 * mean idf over the vocabulary (apple, banana, cherry, durian).
    rare = math.log(2.5 / 1.5)
    floor = 0.25 * (3 * rare + math.log(1.5 / 2.5)) / 4
    [hits] = retriever.retrieve(["apple"], corpus, 3)
    assert ids(hits) == ["c0", "c1", "c2"]
    assert hits[0].score == pytest.approx(floor * (k1 + 1) / (1 + k1 * (1 - b + b * 2 / avgdl)), rel=1e-12)
    assert hits[2].score == 0.0


def test_bm25_indexes_titles_and_breaks_ties_by_position() -> None:
    [hits] = BM25Retriever().retrieve(["penguin"], make_corpus(), 1)  # text says "Penguins"
    assert ids(hits) == ["c11"]
    texts = [("", "same words here"), ("", "same words here"), ("", "other"), ("", "more"), ("", "stuff")]
    twins = make_corpus(texts, reverse_positions=True)
    [hits] = BM25Retriever(backend="bm25s").retrieve(["words"], twins, 2)
    assert ids(hits) == ["c1", "c0"]  # equal scores: the lower position (c1 has position 3) first
    [ref] = BM25Retriever(backend="rank_bm25").retrieve(["words"], twins, 2)
    assert ids(ref) == ["c1", "c0"]


def test_bm25_index_is_built_once_per_corpus() -> None:
    retriever, corpus = BM25Retriever(), make_corpus()
    retriever.retrieve(["chess"], corpus, 2)
    retriever.retrieve(["coffee"], corpus, 2)
    assert retriever.indexes_.builds == 1
    assert retriever.aux_tokens_ == 0


def test_bm25_rejects_unknown_stopword_list() -> None:
    with pytest.raises(ValueError, match="field 'stopwords'"):
        BM25Retriever(stopwords="klingon").retrieve(["x"], make_corpus(), 1)


# -- contract edge cases, every cheap retriever --------------------------------------------------------
def cheap_retrievers() -> list[Retriever]:
    return [
        BM25Retriever(backend="bm25s"),
        BM25Retriever(backend="rank_bm25"),
        HybridRetriever(first=BM25Retriever(), second=BM25Retriever(k1=0.9), depth=3),
    ]


@pytest.mark.parametrize("retriever", cheap_retrievers(), ids=repr)
def test_k_larger_than_corpus_and_empty_queries(retriever: Retriever) -> None:
    corpus = make_corpus()
    hits = retriever.retrieve(["Moon landing", "", "the of and"], corpus, 100)
    assert [len(h) for h in hits] == [len(corpus)] * 3
    assert all(sorted(ids(h)) == sorted(c.id for c in corpus.chunks) for h in hits)
    assert hits[0][0].chunk.id == "c7"
    assert ids(hits[1]) == [f"c{i}" for i in range(len(corpus))]  # all scores equal: by position
    assert retriever.retrieve([], corpus, 3) == []


@pytest.mark.parametrize("backend", ["bm25s", "rank_bm25"])
def test_bm25_empty_and_stopword_only_corpora(backend: str) -> None:
    retriever = BM25Retriever(backend=backend)
    assert retriever.retrieve(["anything"], Corpus.from_chunks([]), 5) == [[]]
    [hits] = retriever.retrieve(["the"], make_corpus([("", "the"), ("", "of")]), 5)
    assert ids(hits) == ["c0", "c1"] and all(h.score == 0.0 for h in hits)


def test_registry_builds_bm25_and_rejects_bad_backend() -> None:
    built = registry.build("retriever", "bm25", {"backend": "rank_bm25", "k1": 1.2})
    assert isinstance(built, BM25Retriever) and built.backend == "rank_bm25" and built.k1 == 1.2
    with pytest.raises(Exception, match="backend"):
        registry.build("retriever", "bm25", {"backend": "lucene"})
    assert "backend" not in built.spec()  # both backends give the same results: shared cache keys


# -- hybrid ------------------------------------------------------------------------------------------
class Fixed(Retriever):
    """A retriever that returns a fixed ranking (by chunk id) and records the k it was asked for."""

    def __init__(self, *, ranking: tuple[str, ...] = ()) -> None:
        self.ranking = ranking

    def retrieve(self, queries, corpus, k, *, evidence=None):
        self.asked_k_ = k
        by_id = {c.id: c for c in corpus.chunks}
        return [[Scored(by_id[cid], 1.0) for cid in self.ranking[:k]] for _ in queries]


def test_hybrid_rrf_arithmetic() -> None:
    first, second = Fixed(ranking=("c0", "c1", "c2")), Fixed(ranking=("c2", "c0", "c3"))
    hybrid = HybridRetriever(first=first, second=second, rrf_k=60, depth=2)
    [hits] = hybrid.retrieve(["q"], make_corpus(), 4)
    assert first.asked_k_ == second.asked_k_ == 4  # depth below k: fetch k
    expected = {"c0": 1 / 61 + 1 / 62, "c2": 1 / 63 + 1 / 61, "c1": 1 / 62, "c3": 1 / 63}
    assert ids(hits) == ["c0", "c2", "c1", "c3"]
    assert [h.score for h in hits] == pytest.approx([expected[i] for i in ids(hits)], rel=1e-12)
    hybrid.depth = 50
    [hits] = hybrid.retrieve(["q"], make_corpus(), 2)
    assert first.asked_k_ == 50 and ids(hits) == ["c0", "c2"]


def test_hybrid_ties_by_position_and_spec_nests_children() -> None:
    corpus = make_corpus(reverse_positions=True)  # c11 has position 0
    hybrid = HybridRetriever(first=Fixed(ranking=("c0",)), second=Fixed(ranking=("c11",)))
    [hits] = hybrid.retrieve(["q"], corpus, 2)
    assert ids(hits) == ["c11", "c0"]
    spec = HybridRetriever(first=BM25Retriever(), second=BM25Retriever(k1=0.9)).spec()
    assert spec["second"]["k1"] == 0.9 and spec["first"]["type"] == "bm25"


# -- oracle ------------------------------------------------------------------------------------------
def test_oracle_returns_exactly_the_gold_chunks() -> None:
    corpus = make_corpus()
    gold = [
        Evidence("d10", "buried the city of Pompeii."),
        Evidence("d7", "Apollo 11 landed the first humans"),
        Evidence("d7", "on the Moon in July 1969."),
    ]
    wrong_doc = [Evidence("d3", "Apollo 11 landed")]  # the sentence is not in d3: no match
    other_ids = [Evidence("wiki:Chess", "board game  for two\nplayers")]  # ids unlike the corpus's
    hits = OracleRetriever().retrieve(
        ["q1", "q2", "q3", "q4"], corpus, 5, evidence=[gold, wrong_doc, other_ids, []]
    )
    assert ids(hits[0]) == ["c7", "c10"]  # two gold sentences first
    assert [h.score for h in hits[0]] == [2.0, 1.0]
    assert hits[1] == [] and ids(hits[2]) == ["c8"] and hits[3] == []
    assert ids(OracleRetriever().retrieve(["q"], corpus, 1, evidence=[gold])[0]) == ["c7"]


def test_oracle_needs_evidence() -> None:
    with pytest.raises(ValueError, match="evidence"):
        OracleRetriever().retrieve(["q"], make_corpus(), 3)
    with pytest.raises(ValueError, match="evidence"):
        OracleRetriever().retrieve(["q", "r"], make_corpus(), 3, evidence=[[]])


# -- dense (the packaged all-MiniLM-L6-v2) --------------------------------------------------------------
@pytest.fixture(scope="module")
def dense_pair():
    from ragkit.retrievers.dense import DenseRetriever

    return DenseRetriever(index="flat", device="cpu"), DenseRetriever(index="hnsw", device="cpu")


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path))
    return get_cache()


PARAPHRASES = {
    "What is the capital of France?": "c0",
    "How many legs does a spider have?": "c1",
    "Which is the tallest peak in the world?": "c2",
    "Which river runs into the Mediterranean?": "c5",
}


@pytest.mark.slow
def test_dense_finds_paraphrases_flat_and_hnsw_agree(dense_pair, tmp_cache) -> None:
    flat, hnsw = dense_pair
    corpus = make_corpus()
    queries = list(PARAPHRASES)
    flat_hits = flat.retrieve(queries, corpus, 3)
    hnsw_hits = hnsw.retrieve(queries, corpus, 3)
    assert [h[0].chunk.id for h in flat_hits] == list(PARAPHRASES.values())
    assert [h[0].chunk.id for h in hnsw_hits] == [h[0].chunk.id for h in flat_hits]
    assert all(-1.0 - 1e-5 <= s.score <= 1.0 + 1e-5 for h in flat_hits for s in h)  # cosine
    assert all(h[0].score >= h[1].score >= h[2].score for h in flat_hits)


@pytest.mark.slow
def test_dense_embedding_cache_hit_and_token_counts(tmp_cache) -> None:
    from ragkit.retrievers.dense import DenseRetriever

    corpus = make_corpus()
    cold = DenseRetriever(device="cpu")
    found = cold.retrieve(["Moon landing"], corpus, 2)
    [cold_hits] = found
    assert cold.document_tokens_ > len(corpus) and cold.query_tokens_ >= 4  # [CLS] moon landing [SEP]
    assert found.use[0].tokens == cold.aux_tokens_  # the call returns what it read: query and corpus
    warm = DenseRetriever(device="cpu")
    encoded: list[int] = []
    original = warm._encode
    warm._encode = lambda texts: (encoded.append(len(texts)), original(texts))[1]  # type: ignore[method-assign]
    hits_before = tmp_cache.hits
    [warm_hits] = warm.retrieve(["Moon landing"], corpus, 2)
    assert encoded == [1]  # only the query: the 12 documents came from the disk cache
    assert tmp_cache.hits > hits_before
    assert ids(warm_hits) == ids(cold_hits) and warm_hits[0].score == pytest.approx(cold_hits[0].score)
    assert warm.aux_tokens_ == cold.aux_tokens_  # cost does not depend on the cache being warm
    warm.retrieve(["Apollo"], corpus, 1)
    assert warm.indexes_.builds == 1 and encoded == [1, 1]


@pytest.mark.slow
def test_dense_edge_cases_and_bad_model(dense_pair, tmp_cache) -> None:
    from ragkit.retrievers.dense import DenseRetriever

    flat, hnsw = dense_pair
    corpus = make_corpus()
    for retriever in (flat, hnsw):
        hits = retriever.retrieve(["", "Moon"], corpus, 50)
        assert [len(h) for h in hits] == [len(corpus)] * 2
        assert hits[1][0].chunk.id == "c7"
    assert flat.retrieve(["x"], Corpus.from_chunks([]), 3) == [[]]
    with pytest.raises(RuntimeError, match="no-such-org/no-such-model"):
        DenseRetriever(model="no-such-org/no-such-model").retrieve(["x"], corpus, 1)


@pytest.mark.slow
def test_hybrid_of_bm25_and_dense_counts_dense_tokens(dense_pair, tmp_cache) -> None:
    flat, _ = dense_pair
    before = flat.aux_tokens_
    hybrid = HybridRetriever(first=BM25Retriever(), second=flat, depth=5)
    [hits] = hybrid.retrieve(["How many legs does a spider have?"], make_corpus(), 3)
    assert hits[0].chunk.id == "c1" and hybrid.aux_tokens_ > before


@pytest.mark.parametrize(
    "name",
    ["bm25", "bm25-reference", "dense-minilm", "dense-minilm-hnsw", "hybrid", "llamaindex-vector", "oracle"],
)
def test_catalog_entries_build(name: str) -> None:
    from ragkit import config

    [spec] = config.expand_component("retriever", name, None, "retriever")
    built = config.build_component("retriever", spec)  # lazy: no model or index is loaded here
    assert isinstance(built, Retriever) and built.registry_name == spec["type"]
    if name == "hybrid":
        assert isinstance(built.first, BM25Retriever) and built.second.registry_name == "dense"


def test_bm25s_vocabulary_is_in_first_occurrence_order():
    # bm25s's own vocabulary follows set order (PYTHONHASHSEED), and the mean idf behind BM25Okapi's
    # epsilon floor summed in that order changed scores' last bits from one process to the next.
    from ragkit.types import Chunk, Corpus

    texts = ["zeta alpha common", "beta common", "gamma common delta"]
    corpus = Corpus.from_chunks(
        [Chunk(id=f"c{i}", doc_id=f"c{i}", text=t, position=i) for i, t in enumerate(texts)]
    )
    index = BM25Retriever(stopwords=None)._build(corpus)
    assert list(index.vocab) == ["zeta", "alpha", "common", "beta", "gamma", "delta"]


def test_model_loading_is_not_charged_as_retrieval_time(tmp_cache, monkeypatch) -> None:
    import time

    from ragkit.cached import CachedRetriever

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    class SlowToLoad(BM25Retriever):
        loads = 0

        def warm_up(self) -> None:
            if not self.loads:
                clock[0] += 100.0  # an embedding model loading: start-up, not retrieval
            self.loads += 1

        def retrieve(self, queries, corpus, k, *, evidence=None):
            assert self.loads, "warm_up runs before retrieval is timed"
            clock[0] += 1.0 * len(queries)
            return super().retrieve(queries, corpus, k, evidence=evidence)

    inner = SlowToLoad()
    cached = CachedRetriever(inner, tmp_cache)
    found = cached.retrieve(QUERIES[:2], make_corpus(), 3)
    assert [u.seconds for u in found.use] == pytest.approx([1.0, 1.0])  # 1 s a query, not the 100 s load
    again = CachedRetriever(SlowToLoad(), tmp_cache)
    hits = again.retrieve(QUERIES[:2], make_corpus(), 3)
    assert again.inner.loads == 0 and hits.use == found.use  # hits: no model load, the original cost
