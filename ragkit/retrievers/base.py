"""The retriever contract: ``retrieve(queries, corpus, k) -> top-k per query``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ragkit.component import Component
from ragkit.types import Corpus, Evidence, Scored


class Retriever(Component, ABC):
    """Returns, for each query, at most ``k`` chunks of ``corpus`` sorted by descending score.

    A retriever may keep built indexes keyed by ``corpus.key`` (per-example corpora are tiny and
    change every question; a shared corpus is indexed once). ``aux_tokens_`` counts tokens read by
    auxiliary models (e.g. an embedder) since construction, for cost accounting.
    """

    def warm_up(self) -> None:
        """Load what the first call would load (an embedding model), so that measured retrieval
        seconds are the questions' cost, not the process's start-up. Called before timing."""

    @abstractmethod
    def retrieve(
        self,
        queries: Sequence[str],
        corpus: Corpus,
        k: int,
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        """Top-``k`` chunks for every query, best first. ``evidence`` (the gold evidence of each
        query's example) is passed by strategies always and used only by oracle retrievers."""
