"""The reranker contract: ``rerank(queries, candidates) -> re-scored candidates, best first``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ragkit.component import Component
from ragkit.types import Scored


class Reranker(Component, ABC):
    @abstractmethod
    def rerank(self, queries: Sequence[str], candidates: Sequence[Sequence[Scored]]) -> list[list[Scored]]:
        """For each query, its candidates with new scores, sorted by descending score."""
