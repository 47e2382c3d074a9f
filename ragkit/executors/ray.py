"""The Ray executor: a sweep's units over a Ray cluster, with the results of a local run.

Why actors in a :class:`ray.util.ActorPool` (not tasks, not Ray Data): a unit needs its
generator's weights, which take seconds to minutes to load; an actor holds one generator for its
whole life, so weights load once per worker, not once per unit (tasks would reload them, or need
a hand-made model cache per process). ActorPool hands the next unit to whichever actor is free,
which is all the scheduling a sweep needs (units are independent once their retrieval is done);
Ray Data's batch pipelines answer a different question (streaming rows through stateless or
per-row models) and would hide the unit boundaries that recording and resuming are built on.
Retrieval a sweep shares runs first, as its own units; a generation unit takes the retrieval
units it reads as arguments (ObjectRefs), so Ray itself holds it back until they are done.

What runs where: the driver (``ragkit run``) loads the datasets, plans, records every prediction,
score and MLflow run, and stores every cache entry; the actors only run units. One pool of actors
per generator, one generator after another (an actor reserves the generator's GPUs while it
lives). Resources per actor: the generator's GPUs (``Generator.gpus``: CUDA transformers, vLLM)
and one CPU, or ``num_cpus`` / ``num_gpus`` from the YAML.

Caches on a cluster: SQLite is unsafe on network file systems, so no SQLite file is shared over
one. An actor on the driver's own node uses the experiment's ``cache_dir`` (a local disk; SQLite
handles several processes there). An actor on any other node caches on its own disk
(``worker_cache_dir``, default ``<tmp>/ragkit-cache``: de-quantised weights, embeddings) and sends
every new entry back with its unit's results; the driver stores them in ``cache_dir``. So a user
needs no shared folder: models and data packages installed on every node, that is all.

Faults: an actor that dies (node lost, OOM-killed) is restarted and its unit retried up to
``max_retries`` times by Ray; the recorder keeps one prediction per question, so a retry never
duplicates one. Ctrl-C kills the actors; what was recorded stays, and the next run resumes.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from ragkit.config import ConfigError
from ragkit.constraints import Count, NonNegativeFloat, NonNegativeInt, PositiveFloat
from ragkit.executors.base import Executor
from ragkit.registry import register
from ragkit.types import stable_hash
from ragkit.units import Unit, UnitResult


class UnitActor:
    """A Ray actor: one process with a :class:`~ragkit.worker.Worker` (components built once)."""

    def __init__(self, cache_root: str, driver: tuple[str, str], options: dict) -> None:
        import ray

        from ragkit.cache import JournalingCache
        from ragkit.process import configure_process
        from ragkit.worker import Worker

        configure_process()
        if os.path.isdir(options["cwd"]):  # relative paths in the settings mean what they meant
            os.chdir(options["cwd"])  # to the driver (a model folder next to the experiment)
        self.node = ray.get_runtime_context().get_node_id()
        self.on_driver_node = (self.node, platform.node()) == driver
        default = os.path.join(tempfile.gettempdir(), "ragkit-cache")
        cache = JournalingCache(cache_root if self.on_driver_node else options["worker_cache_dir"] or default)
        self.worker = Worker({}, cache)  # datasets arrive with the first unit that reads them
        self.seeded: set[str] = set()

    def run(self, unit: Unit, dataset: list[Any], *seeds: UnitResult) -> UnitResult:
        """``dataset``: [an ObjectRef of the unit's dataset], fetched once per actor (inside a list,
        so Ray does not fetch it for every unit); ``seeds``: the retrieval units it reads."""
        import ray

        if unit.dataset not in self.worker.datasets:
            self.worker.datasets[unit.dataset] = ray.get(dataset[0])
        for seed in seeds:  # the retrieval this unit reads, computed by another actor
            if seed.journal is not None and seed.key not in self.seeded:
                seed.journal.store(self.worker.cache)
                self.seeded.add(seed.key)
        result = self.worker.run(unit)
        result.node = self.node
        journal = self.worker.cache.take_journal()
        # The driver already has what an actor on its node wrote, but a retrieval unit's entries
        # also seed the generation units that read it, wherever they run: always send those.
        if not self.on_driver_node or unit.kind == "retrieve":
            result.journal = journal
        return result


@register("executor", "ray")
class RayExecutor(Executor):
    """``address``: a running cluster (``auto``: the one ``ray start`` runs on this machine;
    ``ray://host:10001``: Ray Client, with ``ray[client]``); none: ``$RAY_ADDRESS``, else a new local cluster.
    ``workers``: actors per generator (default: as many as the cluster's resources hold).
    ``num_cpus`` / ``num_gpus``: per actor (default: 1 CPU and the generator's GPUs)."""

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: Count | None = None,
        num_cpus: PositiveFloat | None = None,
        num_gpus: NonNegativeFloat | None = None,
        max_retries: NonNegativeInt = 3,
        worker_cache_dir: str | None = None,
        runtime_env: dict[str, Any] | None = None,
    ) -> None:
        self.address = address
        self.workers = workers
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.worker_cache_dir = worker_cache_dir
        self.runtime_env = runtime_env
        # per unit of the last run: key, node, submitted/received (driver clock), started/seconds
        # (worker clock): what the executor benchmark reads Ray's overhead from
        self.units_: list[dict[str, Any]] = []

    def check(self, file: Any) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError(
                file, "executor", "the ray executor needs Ray: pip install 'ragkit[ray]'"
            ) from None

    # -- cluster -------------------------------------------------------------------------------
    def _connect(self, file: Any) -> bool:
        """Connect (or start a local cluster); True when this call started Ray here."""
        import ray

        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS") or None
        extra = {} if address else {"include_dashboard": False}  # a new local cluster
        try:
            ray.init(address=address, runtime_env=self.runtime_env, **extra)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise ConfigError(file, "executor.address", f"cannot connect to {where}: {exc}") from None
        return True

    def _driver(self) -> tuple[str, str]:
        import ray

        if (self.address or os.environ.get("RAY_ADDRESS") or "").startswith("ray://"):
            return ("", platform.node())  # Ray Client: the driver is on no node of the cluster
        return (ray.get_runtime_context().get_node_id(), platform.node())

    def resources(self, generator: Any, cluster: dict[str, float], file: Any = None) -> dict[str, float]:
        """Per actor: the generator's GPUs and one CPU, unless the YAML says otherwise."""
        gpus_there = cluster.get("GPU", 0.0)
        gpus = float(self.num_gpus if self.num_gpus is not None else generator.gpus(gpus_there > 0))
        cpus = float(self.num_cpus if self.num_cpus is not None else 1)
        if gpus > gpus_there or cpus > cluster.get("CPU", 0.0):
            raise ConfigError(
                file,
                "executor",
                f"each worker needs {cpus:g} CPU and {gpus:g} GPU but the cluster has"
                f" {cluster.get('CPU', 0.0):g} CPU and {gpus_there:g} GPU (set num_cpus / num_gpus)",
            )
        return {"num_cpus": cpus, "num_gpus": gpus}

    def _pool_size(self, resources: dict[str, float], cluster: dict[str, float], units: int) -> int:
        if self.workers:
            return max(1, min(self.workers, units))
        fits = [
            cluster.get(name, 0.0) // need
            for name, need in (("CPU", resources["num_cpus"]), ("GPU", resources["num_gpus"]))
            if need
        ]
        return max(1, min(int(min(fits)) if fits else units, units))

    # -- running -------------------------------------------------------------------------------
    def execute(self, units: Sequence[Unit], prepared: Any, recorder: Any) -> None:
        import ray
        from ray.util import ActorPool

        from ragkit.process import process_environment

        if not units:
            return
        file = prepared.experiment.file
        started_here = self._connect(file)
        actors: list[Any] = []
        try:
            cluster = ray.cluster_resources()
            datasets = {key: ray.put(prepared.datasets[key]) for key in {u.dataset for u in units}}
            options = {"cwd": os.getcwd(), "worker_cache_dir": self.worker_cache_dir}
            driver = self._driver()
            refs: dict[str, Any] = {}
            planned = {u.key: u for u in units}
            submitted: dict[str, float] = {}
            self.units_ = []

            def submit(actor: Any, unit: Unit) -> Any:
                # ActorPool calls this in submission order, so the retrieval units a unit reads
                # were submitted before it and their refs exist.
                submitted[unit.key] = time.time()
                seeds = [refs[key] for key in unit.after if key in refs]
                refs[unit.key] = actor.run.remote(unit, [datasets[unit.dataset]], *seeds)
                return refs[unit.key]

            for generator_key, group in _by_generator(units).items():
                generator = prepared.generators[generator_key]
                resources = self.resources(generator, cluster, file)
                actor_class = ray.remote(UnitActor).options(
                    **resources,
                    max_restarts=self.max_retries,
                    max_task_retries=self.max_retries,
                    runtime_env={"env_vars": process_environment()},
                )
                size = self._pool_size(resources, cluster, len(group))
                actors = [
                    actor_class.remote(prepared.cache.root.as_posix(), driver, options) for _ in range(size)
                ]
                # Each actor is in the pool twice: it always has its next unit queued, so it never
                # sits idle while the driver records the unit it just finished.
                pool = ActorPool(actors * 2)
                for unit in group:
                    pool.submit(submit, unit)
                while pool.has_next():
                    result = pool.get_next_unordered()
                    received = time.time()
                    recorder.record(result)
                    self.units_.append(
                        {
                            "key": result.key,
                            "node": result.node,
                            "worker": f"{result.node}:{result.process}",
                            "after": list(planned[result.key].after),
                            "submitted": submitted[result.key],
                            "started": result.started,
                            "seconds": result.seconds,
                            "received": received,
                        }
                    )
                _kill(actors)
                actors = []
        finally:
            _kill(actors)  # Ctrl-C or a failed unit: stop the cluster's work on this run
            if started_here:
                ray.shutdown()


def _by_generator(units: Sequence[Unit]) -> dict[str, list[Unit]]:
    """Units grouped by generator, in plan order; retrieval units go with the first group."""
    groups: dict[str, list[Unit]] = defaultdict(list)
    first = stable_hash(units[0].generator)
    for unit in units:
        groups[first if unit.kind == "retrieve" else stable_hash(unit.generator)].append(unit)
    return dict(groups)


def _kill(actors: list[Any]) -> None:
    import ray

    for actor in actors:
        ray.kill(actor, no_restart=True)
