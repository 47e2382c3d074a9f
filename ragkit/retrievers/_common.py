"""Helpers the retrievers share: what text of a chunk is indexed, deterministic top-k, an index LRU.

Not a component module (the leading underscore keeps registry discovery away from it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import numpy as np

from ragkit.types import Chunk, Corpus, Evidence, Scored

T = TypeVar("T")

# Built indexes kept per retriever instance: per-example corpora change every question, so only a
# few recent ones are worth keeping, and a shared corpus stays at the front while it is in use.
INDEX_LRU_SIZE = 4


def indexed_text(chunk: Chunk) -> str:
    """Title and text: HotpotQA questions often name the entity that is only in the title."""
    return f"{chunk.title}\n{chunk.text}" if chunk.title else chunk.text


def positions(corpus: Corpus) -> np.ndarray:
    return np.fromiter((c.position for c in corpus.chunks), dtype=np.int64, count=len(corpus))


def top_k(scores: np.ndarray, chunk_positions: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best scores, best first, ties broken by chunk position (then index).

    ``argpartition`` alone would cut ties at the k-th score arbitrarily; every index scoring at
    least the k-th best value is kept and the cut happens after the (score, position) sort.
    """
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(n)
    order = np.lexsort((candidates, chunk_positions[candidates], -scores[candidates]))
    return candidates[order[:k]]


def to_scored(corpus: Corpus, indices: np.ndarray, scores: np.ndarray) -> list[Scored]:
    return [Scored(corpus.chunks[i], float(scores[i])) for i in indices]


def check_evidence(
    evidence: Sequence[Sequence[Evidence]] | None, queries: Sequence[str], who: str
) -> Sequence[Sequence[Evidence]]:
    if evidence is None:
        raise ValueError(f"the {who} retriever needs the gold evidence of every query (got evidence=None)")
    if len(evidence) != len(queries):
        raise ValueError(f"{who} retriever: {len(queries)} queries but evidence for {len(evidence)}")
    return evidence


class IndexLRU(Generic[T]):
    """A small least-recently-used map ``corpus.key -> built index``."""

    def __init__(self, size: int = INDEX_LRU_SIZE) -> None:
        self.size = size
        self._items: OrderedDict[str, T] = OrderedDict()
        self.builds = 0  # how many indexes were built (tests and benchmarks read it)

    def get(self, corpus: Corpus, build: Callable[[Corpus], T]) -> T:
        if corpus.key in self._items:
            self._items.move_to_end(corpus.key)
            return self._items[corpus.key]
        item = build(corpus)
        self.builds += 1
        self._items[corpus.key] = item
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def __len__(self) -> int:
        return len(self._items)
