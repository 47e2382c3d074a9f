"""The reranker contract: ``rerank(queries, candidates) -> re-scored candidates, best first``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ragkit.component import Component
from ragkit.types import Scored

if TYPE_CHECKING:
    from ragkit.generators.base import Generator


class Reranker(Component, ABC):
    @abstractmethod
    def rerank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        generator: Generator | None = None,
    ) -> list[list[Scored]]:
        """For each query, its candidates with new scores, sorted by descending score.

        A reranker that runs a model returns a :class:`~ragkit.types.Batch` whose ``use`` says,
        per query, what the model read and how long it took; one that reads nothing (score
        order) may return a plain list. ``generator`` is the question's generator, for rerankers
        that prompt it to rank (listwise LLM rankers): they return its generations in ``use``,
        and the strategy charges them to the question like its own calls."""
