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

from ragkit.cache import Cache
from ragkit.cached import CachedGenerator, CachedRetriever
from ragkit.component import bind_cache
from ragkit.config import build_component
from ragkit.types import stable_hash
from ragkit.units import Unit, UnitResult, retriever_attributes, strategy_retrievers

Progress = Callable[[int], None]  # questions of the running unit answered so far


def _corpus_builder(strategy: Any) -> Any:
    """The strategy's own corpus builder (its chunked shared corpus is then built once), else one
    with its chunker."""
    from ragkit.strategies.context import CorpusBuilder

    own = getattr(strategy, "_corpora", None)
    return own if isinstance(own, CorpusBuilder) else CorpusBuilder(getattr(strategy, "chunker", None))


class Worker:
    """Builds components for units and runs them; one per process (or per Ray actor)."""

    def __init__(self, datasets: dict[str, Any], cache: Cache) -> None:
        self.datasets = datasets  # dataset key -> LoadedDataset (the driver's, already limited)
        self.cache = cache
        self.strategies: dict[str, Any] = {}  # configuration hash -> strategy
        self.generators: dict[str, CachedGenerator] = {}  # generator hash -> generator
        self.retrievers: list[CachedRetriever] = []  # every shared retriever built here

    # -- building ------------------------------------------------------------------------------
    def generator(self, resolved: dict[str, Any]) -> CachedGenerator:
        key = stable_hash(resolved)
        if key not in self.generators:
            inner = build_component("generator", resolved)
            bind_cache(inner, self.cache)
            self.generators[key] = CachedGenerator(inner, self.cache)
        return self.generators[key]

    def adopt(self, config_hash: str, strategy: Any, depths: Mapping[str, int]) -> Any:
        """Take a built strategy for a configuration: its retrievers are wrapped in the shared
        retrieval cache and every component gets this worker's cache."""
        for name, value in retriever_attributes(strategy):
            if not isinstance(value, CachedRetriever):
                wrapped = CachedRetriever(value, self.cache, depths.get(stable_hash(value.spec()), 0))
                setattr(strategy, name, wrapped)
                self.retrievers.append(wrapped)
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
            predictions = strategy.run(examples, self.generator(unit.generator), dataset.corpus)
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
        """Retrieve every question at the shared depth, batch by batch as the strategy would, so
        each cache entry is what the strategy itself would have computed."""
        from ragkit.strategies.context import retrieve_batch

        retriever = next(r for r in strategy_retrievers(strategy) if stable_hash(r.spec()) == unit.retriever)
        builder = _corpus_builder(strategy)
        depth = unit.depths.get(unit.retriever or "", 0)
        for examples in batches:
            corpora = [builder.for_example(e, dataset.corpus) for e in examples]
            retrieve_batch(
                retriever, [e.question for e in examples], corpora, depth, [e.evidence for e in examples]
            )
