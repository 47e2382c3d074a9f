"""Units of work: what an executor runs, anywhere, and what it hands back.

A plan is a list of units, in the order a single process should run them:

- one **retrieval unit** per retriever a sweep shares (per dataset and chunking), first: it
  retrieves every question that still needs an answer at the deepest k any configuration asks
  of that retriever (the settings :meth:`~ragkit.strategies.base.Strategy.retrievers` returns),
  batch by batch like the first configuration using it, so the k-sweep reads one retrieval per
  question and a shared corpus is embedded once;
- **generation units**: a configuration x a batch of its unanswered questions, the batches of
  the resume checkpoints (``checkpoint_every``), questions over the same documents next to each
  other (``documents_together``). A generation unit lists the retrieval units it reads in
  ``after``.

A unit is plain data (resolved settings, question ids, the cache root): it pickles to another
process or machine, where a :class:`ragkit.worker.Worker` builds the components and runs it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ragkit.types import Prediction, stable_hash


@dataclass(frozen=True)
class Unit:
    key: str  # unique within a plan
    kind: Literal["retrieve", "generate"]
    config_index: int  # generate: its configuration; retrieve: the first configuration using it
    config_hash: str
    dataset: str  # key of the loaded dataset (hash of its resolved settings)
    strategy: dict[str, Any]  # resolved settings to build from
    generator: dict[str, Any]
    depths: dict[str, int]  # retriever spec hash -> the depth shared by the whole sweep
    batches: tuple[tuple[str, ...], ...]  # question ids; a generate unit has one batch
    cache_root: str
    retriever: str | None = None  # retrieve: the shared retriever's spec hash
    batch: int = 0  # generate: position among its configuration's units
    after: tuple[str, ...] = ()  # keys of the retrieval units it reads

    @property
    def question_ids(self) -> list[str]:
        return [qid for batch in self.batches for qid in batch]


@dataclass
class UnitResult:
    """What a unit hands back to the driver, which alone records it."""

    key: str
    predictions: list[Prediction] = field(default_factory=list)  # empty for retrieval units
    node: str = ""  # where it ran (tests and progress over a cluster)
    process: int = 0  # the worker's process id
    started: float = 0.0  # when the worker began it (epoch seconds)
    seconds: float = 0.0  # wall time inside the worker
    # New cache entries for the driver to store, from workers that do not write the driver's
    # cache themselves (see ragkit.executors.ray); None when the worker wrote them directly.
    journal: Any = None


def checkpoint_every(batch_size: int, generator: Any) -> int:
    """Questions per generation unit (predictions reach disk after each): the experiment's
    ``batch_size``, but never more than the generator batches itself. A generator that takes one
    32k-token prompt at a time would otherwise run 16 questions (an hour on a CPU) before the
    first write, and a kill would lose them all."""
    own = getattr(generator, "batch_size", None)
    size = max(1, batch_size)
    return min(size, own) if isinstance(own, int) and own >= 1 else size


def documents_together(examples: Sequence[Any]) -> list[Any]:
    """``examples`` with those over the same documents next to each other (in order of first
    appearance; results keep the dataset's order). A document's questions then reach the generator
    together, in one call or consecutive ones, so an engine computes their shared prompt prefix
    (system text and documents, before the question) once. Questions without their own documents
    (a shared corpus) keep their order."""
    groups: dict[Any, list[Any]] = {}
    for i, example in enumerate(examples):
        key = tuple(d.id for d in example.documents) or ("#", i)
        groups.setdefault(key, []).append(example)
    return [e for group in groups.values() for e in group]


def retrieval_key(setting: Any) -> str:
    """Which shared retrieval cache a retrieval setting reads: its retriever's spec (a wrapped
    retriever has its inner one's)."""
    return stable_hash(setting.retriever.spec())


def retrieval_depths(strategies: Iterable[Any]) -> dict[str, int]:
    """Retriever spec hash -> the deepest ``depth()`` any strategy's retrieval setting asks of it
    (:meth:`ragkit.strategies.base.Strategy.retrievers`)."""
    depth: dict[str, int] = {}
    for strategy in strategies:
        for setting in strategy.retrievers():
            key = retrieval_key(setting)
            depth[key] = max(depth.get(key, 0), setting.depth())
    return depth


def retrieval_unit_key(setting: Any, dataset: str) -> str:
    """The retrieval unit that fills a setting's shared cache for a dataset: a retriever's results
    depend on the corpus it searches, the dataset and the chunking."""
    chunker = setting.chunker.spec() if setting.chunker is not None else None
    return "retrieve:" + stable_hash([retrieval_key(setting), dataset, chunker])


def _chunks(ids: Sequence[str], size: int) -> list[tuple[str, ...]]:
    return [tuple(ids[start : start + size]) for start in range(0, len(ids), size)]


def plan_units(
    configurations: Sequence[Any],
    todo: Mapping[int, Sequence[str]],
    *,
    strategies: Sequence[Any],
    generators: Mapping[str, Any],
    depths: Mapping[str, int],
    batch_size: int,
    cache_root: str,
) -> list[Unit]:
    """The units answering ``todo`` (configuration index -> unanswered question ids, in the order
    they are answered: :func:`documents_together`): retrieval units first, then each
    configuration's batches in order."""
    retrievals: dict[str, dict[str, Any]] = {}
    generation: list[Unit] = []
    for index in sorted(todo):
        ids = list(todo[index])
        if not ids:
            continue
        configuration = configurations[index]
        resolved = configuration.resolved
        dataset = stable_hash(resolved["dataset"])
        generator = generators[stable_hash(resolved["generator"])]
        size = checkpoint_every(batch_size, generator)
        after = []
        for setting in strategies[index].retrievers():
            spec = retrieval_key(setting)
            if not depths.get(spec):
                continue  # closed book everywhere (k = 0): nothing to share
            key = retrieval_unit_key(setting, dataset)
            if key in after:
                continue
            group = retrievals.setdefault(
                key,
                {"index": index, "hash": configuration.hash, "size": size, "spec": spec, "ids": {}},
            )
            group["ids"].update(dict.fromkeys(ids))  # first configuration's order, then the rest
            after.append(key)
        common = {
            "config_index": index,
            "config_hash": configuration.hash,
            "dataset": dataset,
            "strategy": resolved["strategy"],
            "generator": resolved["generator"],
            "depths": dict(depths),
            "cache_root": cache_root,
        }
        for number, batch in enumerate(_chunks(ids, size)):
            key = f"{configuration.hash}:{number}"
            generation.append(
                Unit(key=key, kind="generate", batches=(batch,), batch=number, after=tuple(after), **common)
            )
    units = []
    for key, group in retrievals.items():
        resolved = configurations[group["index"]].resolved
        units.append(
            Unit(
                key=key,
                kind="retrieve",
                config_index=group["index"],
                config_hash=group["hash"],
                dataset=stable_hash(resolved["dataset"]),
                strategy=resolved["strategy"],
                generator=resolved["generator"],
                depths=dict(depths),
                batches=tuple(_chunks(list(group["ids"]), group["size"])),
                cache_root=cache_root,
                retriever=group["spec"],
            )
        )
    return units + generation
