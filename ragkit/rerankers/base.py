"""The reranker contract: ``rerank(queries, candidates) -> re-scored candidates, best first``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ragkit.component import Component
from ragkit.types import AuxUse, Scored


class Reranker(Component, ABC):
    # Per query of the last ``rerank`` call: tokens the model read and seconds it took. A reranker
    # that runs a model sets it on every call; one that reads nothing (score order) leaves it empty.
    last_use_: Sequence[AuxUse] = ()

    @abstractmethod
    def rerank(self, queries: Sequence[str], candidates: Sequence[Sequence[Scored]]) -> list[list[Scored]]:
        """For each query, its candidates with new scores, sorted by descending score."""
