"""Hybrid retrieval: reciprocal rank fusion (RRF) of two retrievers.

``score(chunk) = sum over the two lists of 1 / (rrf_k + rank)``, rank counted from 1, a chunk
missing from a list contributing nothing (Cormack, Clarke and Buettcher, SIGIR 2009; rrf_k = 60
is their constant). Each list is fetched ``max(depth, k)`` deep. RRF uses ranks only, so BM25 and
cosine scores need no calibration against each other. Ties are broken by chunk position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.constraints import Count, NonNegativeInt
from ragkit.registry import register
from ragkit.retrievers.base import Retriever
from ragkit.types import AuxUse, Batch, Corpus, Evidence, Scored, uses


@register("retriever", "hybrid")
class HybridRetriever(Retriever):
    version = "1"

    def __init__(
        self, *, first: Retriever, second: Retriever, rrf_k: NonNegativeInt = 60, depth: Count = 50
    ) -> None:
        self.first = first
        self.second = second
        self.rrf_k = rrf_k
        self.depth = depth

    @property
    def aux_tokens_(self) -> int:
        return getattr(self.first, "aux_tokens_", 0) + getattr(self.second, "aux_tokens_", 0)

    def spec(self) -> dict[str, Any]:
        # The inner retrievers' own specs (not their repr), so cache keys follow their parameters.
        return {**super().spec(), "first": self.first.spec(), "second": self.second.spec()}

    def warm_up(self) -> None:
        self.first.warm_up()
        self.second.warm_up()

    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        depth = max(self.depth, k)
        lists = [r.retrieve(queries, corpus, depth, evidence=evidence) for r in (self.first, self.second)]
        # each query's cost is what both retrievers spent on it
        use = [
            AuxUse(tokens=a.tokens + b.tokens, seconds=a.seconds + b.seconds)
            for a, b in zip(*(uses(found) for found in lists), strict=True)
        ]
        out = []
        for ranked in zip(*lists, strict=True):
            fused: dict[str, float] = {}
            chunks = {}
            for hits in ranked:
                for rank, hit in enumerate(hits, start=1):
                    fused[hit.chunk.id] = fused.get(hit.chunk.id, 0.0) + 1.0 / (self.rrf_k + rank)
                    chunks[hit.chunk.id] = hit.chunk
            order = sorted(fused, key=lambda cid: (-fused[cid], chunks[cid].position, cid))
            out.append([Scored(chunks[cid], fused[cid]) for cid in order[:k]])
        return Batch(out, use)
