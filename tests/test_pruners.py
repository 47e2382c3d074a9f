"""Pruners: the shared scoring base (cache, threshold after), oracle, sentence-similarity,
provence-lite (untrained weights: mechanics only) and the Provence adapter (fake model)."""

from __future__ import annotations

import pytest

from ragkit.pruners._scoring import ScoringItem, ScoringPruner, SentenceScores, chunk_sentences
from ragkit.pruners.oracle import OraclePruner
from ragkit.pruners.provence import ProvencePruner
from ragkit.registry import build, names
from ragkit.types import Chunk, Evidence, Scored

QUESTION = "Where is the treasure buried?"
GOLD = Chunk(
    id="b#0",
    doc_id="b",
    title="Island",
    text="The island is small. The treasure is buried under the old oak tree. Parrots live there.",
    position=1,
    meta=(
        (
            "sentences",
            ("The island is small.", "The treasure is buried under the old oak tree.", "Parrots live there."),
        ),
    ),
)
OTHER = Chunk(
    id="a#0", doc_id="a", title="Bread", text="Bread is made from flour. It is baked in an oven.", position=0
)
CANDIDATES = [[Scored(GOLD, 2.0), Scored(OTHER, 1.0)]]
EVIDENCE = [[Evidence(doc_id="b", text="The  treasure is buried under the old oak tree.", sentence=1)]]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAGKIT_CACHE_DIR", str(tmp_path / "cache"))


class KeywordPruner(ScoringPruner):
    """Scores a sentence 0.9 when it shares a word with the query (after stop words), else 0.1;
    counts how often the 'model' runs."""

    registry_name = "keyword-test"

    def __init__(self, *, threshold: float = 0.5, rerank: bool = True, keep_empty: bool = False) -> None:
        self.threshold = threshold
        self.rerank = rerank
        self.keep_empty = keep_empty
        self.calls = 0

    def _score(self, items):
        self.calls += len(items)
        out = []
        for it in items:
            words = {w.strip("?.").lower() for w in it.query.split()} - {"is", "the", "where"}
            scores = [0.9 if words & {w.strip(".").lower() for w in s.split()} else 0.1 for s in it.sentences]
            out.append(SentenceScores(scores, max(scores, default=0.0), tokens=10))
        return out


def test_every_pruner_is_registered():
    assert {"oracle", "sentence-similarity", "provence-lite", "provence"} <= set(names("pruner"))


def test_chunk_sentences_prefers_the_chunkers_split():
    assert chunk_sentences(GOLD)[1] == "The treasure is buried under the old oak tree."
    assert chunk_sentences(OTHER) == ["Bread is made from flour.", "It is baked in an oven."]


def test_scoring_base_keeps_sentences_drops_empty_and_reranks():
    pruner = KeywordPruner(threshold=0.5)
    [kept] = pruner.prune([QUESTION], CANDIDATES, evidence=EVIDENCE)
    assert [s.chunk.id for s in kept] == ["b#0"]  # the bread passage lost every sentence: dropped
    chunk = kept[0].chunk
    assert chunk.text == "The treasure is buried under the old oak tree."
    assert (chunk.doc_id, chunk.position, chunk.title) == ("b", 1, "Island")
    assert dict(chunk.meta)["kept_sentences"] == (1,)
    assert kept[0].score == pytest.approx(0.9)  # the passage score replaces the retriever's
    assert pruner.aux_tokens_ == 20

    [with_empty] = KeywordPruner(threshold=0.5, keep_empty=True, rerank=False).prune([QUESTION], CANDIDATES)
    assert [s.chunk.id for s in with_empty] == ["b#0", "a#0"] and with_empty[1].chunk.text == ""
    assert [s.score for s in with_empty] == [2.0, 1.0]  # rerank off: original scores


def test_threshold_sweep_reuses_cached_scores():
    first = KeywordPruner(threshold=0.5)
    first.prune([QUESTION], CANDIDATES)
    assert first.calls == 2 and first.scored_ == 2
    texts = {}
    for threshold in (0.05, 0.5, 0.95):
        pruner = KeywordPruner(threshold=threshold)
        [kept] = pruner.prune([QUESTION], CANDIDATES)
        assert pruner.calls == 0  # every score came from the cache
        texts[threshold] = [s.chunk.text for s in kept]
    assert texts[0.05][0] == GOLD.text and len(texts[0.05]) == 2  # everything kept
    assert texts[0.95] == []  # nothing kept: every passage dropped
    assert KeywordPruner(threshold=0.5).score_spec() == KeywordPruner(threshold=0.9).score_spec()


def test_oracle_keeps_exactly_the_gold_sentences():
    [kept] = OraclePruner().prune([QUESTION], CANDIDATES, evidence=EVIDENCE)
    assert [(s.chunk.id, s.chunk.text, s.score) for s in kept] == [
        ("b#0", "The treasure is buried under the old oak tree.", 2.0)
    ]
    [both] = OraclePruner(keep_empty=True).prune([QUESTION], CANDIDATES, evidence=EVIDENCE)
    assert [s.chunk.text for s in both] == ["The treasure is buried under the old oak tree.", ""]
    with pytest.raises(ValueError, match="gold evidence"):
        OraclePruner().prune([QUESTION], CANDIDATES)


class FakeProvence:
    """Stands in for the checkpoint's remote-code model: records calls, prunes like process()."""

    def __init__(self):
        self.calls = []

    def process(self, question, context, title=None, threshold=0.1, **kwargs):
        self.calls.append({"question": question, "context": context, "title": title, "threshold": threshold})
        pruned = [
            ["The treasure is buried under the old oak tree." if "treasure" in c else "" for c in group]
            for group in context
        ]
        scores = [[3.5 if "treasure" in c else -2.0 for c in group] for group in context]
        return {"pruned_context": pruned, "reranking_score": scores}


def test_provence_adapter_maps_process_output():
    pruner = ProvencePruner(threshold=0.3)
    pruner.model_ = FakeProvence()
    [kept] = pruner.prune([QUESTION], CANDIDATES)
    [call] = pruner.model_.calls
    assert call["question"] == [QUESTION] and call["threshold"] == 0.3
    assert call["context"] == [[GOLD.text, OTHER.text]] and call["title"] == [["Island", "Bread"]]
    assert [(s.chunk.id, s.chunk.text, s.score) for s in kept] == [
        ("b#0", "The treasure is buried under the old oak tree.", 3.5)
    ]
    assert dict(kept[0].chunk.meta)["kept_sentences"] == (1,)
    # Cached per threshold: the same threshold does not call the model again, another one does.
    again = ProvencePruner(threshold=0.3)
    again.model_ = pruner.model_
    again.prune([QUESTION], CANDIDATES)
    assert len(pruner.model_.calls) == 1
    other = ProvencePruner(threshold=0.5)
    other.model_ = pruner.model_
    other.prune([QUESTION], CANDIDATES)
    assert len(pruner.model_.calls) == 2


def test_provence_not_available_offline_is_a_clear_error(tmp_path):
    missing = str(tmp_path / "no-such-provence")
    with pytest.raises(RuntimeError, match=r"cannot load .*no-such-provence.* offline"):
        ProvencePruner(model=missing).prune([QUESTION], CANDIDATES)


def test_provence_lite_without_a_model_says_how_to_train(tmp_path):
    pruner = build("pruner", "provence-lite", {"model": str(tmp_path / "none")})
    with pytest.raises(FileNotFoundError, match="ragkit train-pruner"):
        pruner.prune([QUESTION], CANDIDATES)


def test_sentence_similarity_needs_exactly_one_selection():
    pruner = build("pruner", "sentence-similarity", {"threshold": 0.3, "keep_ratio": 0.5})
    with pytest.raises(ValueError, match="exactly one of fields 'threshold'"):
        pruner.select(SentenceScores([0.1, 0.2]))


@pytest.mark.slow
def test_sentence_similarity_prunes_and_sweeps_from_cache():
    pruner = build("pruner", "sentence-similarity", {"keep_ratio": 0.3})
    [kept] = pruner.prune([QUESTION], CANDIDATES)
    assert kept[0].chunk.text == "The treasure is buried under the old oak tree."  # best of three
    assert len(kept) == 2 and pruner.aux_tokens_ > 0  # keep_ratio keeps >= 1 sentence per passage
    calls = pruner.scored_
    swept = build("pruner", "sentence-similarity", {"threshold": 0.99, "keep_ratio": None})
    swept.model_ = pruner.model_
    assert swept.prune([QUESTION], CANDIDATES) == [[]]  # nothing that similar: all dropped
    assert swept.scored_ == 0 and calls == 2


@pytest.mark.slow
def test_provence_lite_prunes_with_a_saved_model(tmp_path):
    from ragkit.pruners import _lite_model as lite

    model, tokenizer = lite.fresh_model()
    lite.save(model, tokenizer, tmp_path / "m", {"default_threshold": 0.0, "max_length": 64})
    pruner = build("pruner", "provence-lite", {"model": str(tmp_path / "m"), "max_length": 24})
    [kept] = pruner.prune([QUESTION], CANDIDATES)  # threshold from the folder: 0.0 keeps everything
    assert [s.chunk.text for s in kept if s.chunk.id == "b#0"] == [GOLD.text]
    assert all(0.0 <= s.score <= 1.0 for s in kept)  # passage relevance (rerank) replaces the score
    assert pruner.scored_ == 2 and pruner.aux_tokens_ > 0
    # max_length 24 forces several windows per passage; every sentence still gets a score
    [scores] = pruner.scores([ScoringItem(QUESTION, GOLD, chunk_sentences(GOLD))])
    assert len(scores.sentences) == 3 and all(0 < s < 1 for s in scores.sentences)
    strict = build(
        "pruner", "provence-lite", {"model": str(tmp_path / "m"), "max_length": 24, "threshold": 1.0}
    )
    assert strict.prune([QUESTION], CANDIDATES) == [[]] and strict.scored_ == 0


class Clock:
    """A stand-in for time.perf_counter that advances one second per reading."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_pruner_reports_each_querys_tokens_and_seconds_even_from_cache(monkeypatch):
    import ragkit.pruners._scoring as scoring

    monkeypatch.setattr(scoring.time, "perf_counter", Clock())
    queries = [QUESTION, "How is bread baked?"]
    candidates = [CANDIDATES[0], [Scored(OTHER, 1.0)]]  # 2 passages, then 1 (already scored: a hit)
    first = KeywordPruner().prune(queries, candidates)
    # one model call for the 3 distinct (query, passage) pairs, one clock second: 1/3 s each
    assert [u.tokens for u in first.use] == [20, 10]
    assert [u.seconds for u in first.use] == pytest.approx([2 / 3, 1 / 3])
    pruner = KeywordPruner(threshold=0.9)
    again = pruner.prune(queries, candidates)
    assert pruner.calls == 0  # all cached, yet each query is charged what its scoring cost
    assert again.use == first.use


def test_pruner_score_entries_without_seconds_are_recomputed():
    from ragkit.cache import cache_key, get_cache
    from ragkit.pruners._scoring import CACHE_STAGE

    pruner = KeywordPruner()
    item = ScoringItem(QUESTION, OTHER, chunk_sentences(OTHER))
    key = cache_key(CACHE_STAGE, pruner.score_spec(), item.query, OTHER.title, OTHER.text, item.sentences)
    old = SentenceScores([0.9, 0.9], 0.9, tokens=10).to_json()
    del old["seconds"]  # the layout before scoring time was stored
    get_cache().put_many(CACHE_STAGE, {key: old})
    [scores] = pruner.scores([item])
    assert pruner.calls == 1 and scores.sentences == [0.1, 0.1]  # re-scored, not read back


def test_loading_the_model_is_not_charged_to_the_first_questions(monkeypatch):
    import time

    clock = [0.0]
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])

    class SlowToLoad(KeywordPruner):
        loaded = False

        def warm_up(self):
            if not self.loaded:
                clock[0] += 100.0  # loading weights: start-up, not scoring
                self.loaded = True

        def _score(self, items):
            assert self.loaded, "warm_up runs before the scoring is timed"
            clock[0] += 1.0 * len(items)
            return super()._score(items)

    pruned = SlowToLoad(threshold=0.5).prune([QUESTION], CANDIDATES)
    assert [u.seconds for u in pruned.use] == [pytest.approx(2.0)]  # 2 passages x 1 s, no load
