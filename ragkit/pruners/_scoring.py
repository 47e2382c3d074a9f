"""What every scoring pruner shares: sentences of a chunk, cached scores, threshold applied after.

A scoring pruner computes, once per (scoring spec, query, chunk text), a keep score per sentence and
optionally a passage score, and stores them in ``ragkit.cache``. The scoring spec is the pruner's
spec WITHOUT its selection parameters (threshold, keep ratio, ...), so a threshold sweep reads the
same cache entries and never re-runs the model. Selection (which sentences pass) happens after.

Not a component module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from ragkit.cache import cache_key
from ragkit.data.sentences import split_sentences
from ragkit.pruners.base import Pruner
from ragkit.types import AuxUse, Batch, Chunk, Evidence, Scored

CACHE_STAGE = "pruner-scores"


def chunk_sentences(chunk: Chunk) -> list[str]:
    """The chunk's sentences: the chunker's (``meta["sentences"]``) when present, else split here."""
    sentences = dict(chunk.meta).get("sentences")
    if sentences:
        return [s.strip() for s in sentences if s.strip()]
    return split_sentences(chunk.text)


def normalise(text: str) -> str:
    return " ".join(text.split())


@dataclass
class SentenceScores:
    """A pruner's view of one (query, chunk): keep score per sentence, passage score, tokens read."""

    sentences: list[float]
    passage: float | None = None
    tokens: int = 0
    text: str | None = None  # a model's own pruned text, when it returns text rather than scores
    seconds: float = 0.0  # this item's share of the measured scoring time (set by the cache layer)

    def to_json(self) -> dict[str, Any]:
        return {
            "sentences": self.sentences,
            "passage": self.passage,
            "tokens": self.tokens,
            "text": self.text,
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SentenceScores:
        return cls(
            list(data["sentences"]),
            data.get("passage"),
            int(data.get("tokens", 0)),
            data.get("text"),
            float(data.get("seconds", 0.0)),
        )


@dataclass
class ScoringItem:
    query: str
    chunk: Chunk
    sentences: list[str]


def pruned_chunk(chunk: Chunk, sentences: Sequence[str], keep: Sequence[bool]) -> Chunk:
    """The chunk with only the kept sentences, joined in their original order (id/doc_id/position kept)."""
    kept = [s for s, k in zip(sentences, keep, strict=True) if k]
    meta = dict(chunk.meta)
    meta["sentences"] = tuple(kept)
    meta["kept_sentences"] = tuple(i for i, k in enumerate(keep) if k)
    meta["sentences_before_pruning"] = len(sentences)
    return replace(chunk, text=" ".join(kept), meta=tuple(meta.items()))


class ScoringPruner(Pruner):
    """Base of pruners that score sentences with a model. Subclasses implement :meth:`_score`
    and may override :meth:`select`; they must have ``keep_empty`` and ``rerank`` attributes."""

    # Constructor parameters that only choose among scored sentences (left out of score cache keys).
    selection_params: ClassVar[tuple[str, ...]] = ("threshold", "keep_empty", "rerank")
    # Parameters that change speed, not scores (left out of every cache key).
    runtime_params: ClassVar[tuple[str, ...]] = ("batch_size", "device")

    keep_empty: bool
    rerank: bool
    scored_: int = 0  # (query, chunk) pairs actually sent to the model; cache hits do not count
    aux_tokens_: int = (
        0  # tokens the pruning model reads (cached or not: the cache is an experiment shortcut)
    )

    def spec(self) -> dict[str, Any]:
        spec = super().spec()
        for name in self.runtime_params:
            spec.pop(name, None)
        return spec

    def score_spec(self) -> dict[str, Any]:
        """Identity of the scores (what the cache key is built from): the spec without selection."""
        spec = self.spec()
        for name in self.selection_params:
            spec.pop(name, None)
        return {**spec, **self.model_identity()}

    def model_identity(self) -> dict[str, Any]:
        """Extra identity of the loaded weights (e.g. a file fingerprint); override when useful."""
        return {}

    def warm_up(self) -> None:
        """Load the scoring model before the clock starts (see ``Retriever.warm_up``); models
        that load lazily override it."""

    @abstractmethod
    def _score(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        """Scores for a batch of (query, chunk, sentences); one ``SentenceScores`` per item."""

    def select(self, scores: SentenceScores) -> list[bool]:
        """Which sentences to keep; the default keeps those scoring at least ``self.threshold``."""
        threshold = self.threshold  # type: ignore[attr-defined]
        return [s >= threshold for s in scores.sentences]

    def apply(self, chunk: Chunk, sentences: list[str], scores: SentenceScores) -> Chunk | None:
        """The pruned chunk, or None when nothing is kept."""
        keep = self.select(scores) if sentences else []
        return pruned_chunk(chunk, sentences, keep) if any(keep) else None

    # -- cached scoring --------------------------------------------------------------------------
    def scores(self, items: Sequence[ScoringItem]) -> list[SentenceScores]:
        """Scores of every item, from the cache when there; misses are scored in one batch."""
        cache = self.stage_cache()
        identity = self.score_spec()
        keys = [
            cache_key(CACHE_STAGE, identity, it.query, it.chunk.title, it.chunk.text, it.sentences)
            for it in items
        ]
        # Entries written before scoring time was stored are recomputed, not charged zero seconds.
        found = {key: v for key, v in cache.get_many(CACHE_STAGE, keys).items() if "seconds" in v}
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        missing = [key for key in first if key not in found]
        if missing:
            self.warm_up()
            started = time.perf_counter()
            fresh = self._score([items[first[key]] for key in missing])
            each = (time.perf_counter() - started) / len(missing)
            self.scored_ += len(missing)
            new = {key: replace(s, seconds=each).to_json() for key, s in zip(missing, fresh, strict=True)}
            cache.put_many(CACHE_STAGE, new)
            found.update(new)
        out = [SentenceScores.from_json(found[key]) for key in keys]
        self.aux_tokens_ += sum(s.tokens for s in out)
        return out

    # -- the pruner contract ---------------------------------------------------------------------
    def prune(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        items = [
            ScoringItem(q, s.chunk, chunk_sentences(s.chunk))
            for q, cands in zip(queries, candidates, strict=True)
            for s in cands
        ]
        flat = iter(self.scores(items) if items else [])
        out: list[list[Scored]] = []
        use: list[AuxUse] = []
        for cands in candidates:
            kept: list[Scored] = []
            spent = AuxUse()
            for scored in cands:
                scores = next(flat)
                spent.tokens += scores.tokens
                spent.seconds += scores.seconds
                sentences = chunk_sentences(scored.chunk)
                chunk = self.apply(scored.chunk, sentences, scores)
                if chunk is None:
                    if not self.keep_empty:
                        continue  # Provence behaviour: a passage with nothing relevant is dropped whole
                    chunk = pruned_chunk(scored.chunk, sentences, [False] * len(sentences))
                score = scores.passage if self.rerank and scores.passage is not None else scored.score
                kept.append(Scored(chunk, float(score)))
            if self.rerank:
                kept.sort(key=lambda s: (-s.score, s.chunk.position))
            out.append(kept)
            use.append(spent)
        return Batch(out, use)
