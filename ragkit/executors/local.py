"""The local executor (the default): every unit in this process, in plan order.

It runs the driver's own worker, whose components were built when the experiment was prepared,
so nothing is built twice and a generator's weights load once for the whole sweep.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragkit.executors.base import Executor
from ragkit.registry import register
from ragkit.units import Unit


@register("executor", "local")
class LocalExecutor(Executor):
    def __init__(self) -> None:
        pass

    def execute(self, units: Sequence[Unit], prepared: Any, recorder: Any) -> None:
        for unit in units:
            progress = lambda answered, u=unit: recorder.unit_progress(u, answered)  # noqa: E731
            recorder.record(prepared.worker.run(unit, progress=progress))
