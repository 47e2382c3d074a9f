"""The pruner contract: ``prune(queries, candidates) -> candidates with only the kept text``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ragkit.component import Component
from ragkit.types import Evidence, Scored


class Pruner(Component, ABC):
    @abstractmethod
    def prune(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[Scored]],
        *,
        evidence: Sequence[Sequence[Evidence]] | None = None,
    ) -> list[list[Scored]]:
        """For each query, its candidates with text reduced to what is kept (a candidate may be
        dropped entirely). Chunk ids are kept so provenance and gold checks still work.
        ``evidence`` is passed by strategies always and used only by the oracle pruner.

        A pruner that runs a model returns a :class:`~ragkit.types.Batch` whose ``use`` says, per
        query, what the model read and how long it took; one that reads nothing (oracle) may
        return a plain list."""
