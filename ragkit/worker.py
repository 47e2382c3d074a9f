"""Runs units: the execute step, the same in the driver's process and on a cluster's workers.

A :class:`Worker` builds each configuration's components from the unit's resolved settings the
first time it meets them and keeps them: a generator's weights load once per worker, not once per
unit, and a strategy keeps what it prepared (demonstrations, a chunked shared corpus) for the
configuration's next batches. Every component gets the worker's cache (the experiment's
``cache_dir``, or a cluster node's own, see ragkit.executors.ray), never a global one.

Retrievers are shared through :class:`~ragkit.cached.CachedRetriever`: each retrieves at the
deepest k the sweep asks of it (``depths``) and the others slice that result, so the k-sweep
costs one retrieval per question.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Mapping
from typing import Any

from ragkit.budget import BudgetError
from ragkit.cache import Cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.component import bind_cache
from ragkit.config import build_component
from ragkit.types import stable_hash
from ragkit.units import Unit, UnitResult, retrieval_key, retrieval_unit_key

Progress = Callable[[int], None]  # questions of the running unit answered so far


class UnitBudgetError(BudgetError):
    """A configuration's budget (or window) cannot hold a question's prompt: the unit's
    configuration travels with the error, so the driver names the field, wherever the unit ran.
    Its arguments are its state, so it pickles back from another process."""

    def __init__(self, config_index: int, message: str) -> None:
        super().__init__(config_index, message)
        self.config_index = config_index
        self.message = message

    def __str__(self) -> str:
        return self.message


def build_generator(resolved: dict[str, Any], cache: Cache) -> CachedGenerator:
    """A generator from its resolved settings, handed ``cache`` and wrapped in the generation
    cache (no weights load)."""
    inner = build_component("generator", resolved)
    bind_cache(inner, cache)
    return CachedGenerator(inner, cache)


class Worker:
    """Builds components for units and runs them; one per process (or per Ray actor)."""

    def __init__(
        self, datasets: dict[str, Any], cache: Cache, generators: dict[str, CachedGenerator] | None = None
    ) -> None:
        self.datasets = datasets  # dataset key -> LoadedDataset (the driver's, already limited)
        self.cache = cache
        self.strategies: dict[str, Any] = {}  # configuration hash -> strategy
        self.generators = generators if generators is not None else {}  # generator hash -> generator
        self.retrievers: list[CachedRetriever] = []  # every shared retriever built here

    # -- building ------------------------------------------------------------------------------
    def generator(self, resolved: dict[str, Any]) -> CachedGenerator:
        key = stable_hash(resolved)
        if key not in self.generators:
            self.generators[key] = build_generator(resolved, self.cache)
        return self.generators[key]

    def adopt(self, config_hash: str, strategy: Any, depths: Mapping[str, int]) -> Any:
        """Take a built strategy for a configuration: the retriever of every retrieval setting it
        reads (:meth:`~ragkit.strategies.base.Strategy.retrievers`) is wrapped in the shared
        retrieval cache at the sweep's deepest depth, and every component gets this worker's cache."""
        for setting in strategy.retrievers():
            if not isinstance(setting.retriever, CachedRetriever):  # a setting shared by two steps
                depth = depths.get(retrieval_key(setting), 0)
                setting.retriever = CachedRetriever(setting.retriever, self.cache, depth)
                self.retrievers.append(setting.retriever)
        bind_cache(strategy, self.cache)
        self.strategies[config_hash] = strategy
        return strategy

    def strategy(self, unit: Unit) -> Any:
        if unit.config_hash not in self.strategies:
            self.adopt(unit.config_hash, build_component("strategy", unit.strategy), unit.depths)
        return self.strategies[unit.config_hash]

    # -- running -------------------------------------------------------------------------------
    def run(self, unit: Unit, progress: Progress | None = None) -> UnitResult:
        began, started = time.time(), time.perf_counter()
        dataset = self.datasets[unit.dataset]
        by_id = {e.id: e for e in dataset.examples}
        strategy = self.strategy(unit)
        predictions = []
        if unit.kind == "retrieve":
            self._retrieve(unit, strategy, [[by_id[i] for i in batch] for batch in unit.batches], dataset)
        else:
            examples = [by_id[i] for i in unit.question_ids]
            try:
                predictions = strategy.run(examples, self.generator(unit.generator), dataset.corpus)
            except BudgetError as exc:
                raise UnitBudgetError(unit.config_index, str(exc)) from None
            if len(predictions) != len(examples):
                raise RuntimeError(
                    f"{type(strategy).__name__} returned {len(predictions)} predictions for {len(examples)}"
                )
            if progress is not None:
                progress(len(predictions))
        seconds = time.perf_counter() - started
        return UnitResult(
            unit.key, predictions, node=platform.node(), process=os.getpid(), started=began, seconds=seconds
        )

    def _retrieve(self, unit: Unit, strategy: Any, batches: list[list[Any]], dataset: Any) -> None:
        """Retrieve every question at the shared depth, batch by batch and through the same
        setting methods as :meth:`~ragkit.strategies.retrieval.Retrieval.select`, so each cache
        entry is what the strategy itself would have computed."""
        setting = next(s for s in strategy.retrievers() if retrieval_unit_key(s, unit.dataset) == unit.key)
        depth = unit.depths.get(unit.retriever or "", 0)
        for examples in batches:
            corpora = [setting.corpus(e, dataset.corpus) for e in examples]
            setting.retrieve([e.question for e in examples], corpora, depth, [e.evidence for e in examples])
