"""The executor contract: run a plan's units somewhere and hand each result to the recorder.

``execute(units, prepared, recorder)`` runs every unit (a retrieval unit before the generation
units that list it in ``after``) and calls ``recorder.record(result)`` in the driver's process
for each finished one, in any order; a unit may be reported twice (a retry), the recorder keeps
the first. Executors that can see progress inside a running unit report it with
``recorder.unit_progress(unit, answered)``. An executor never writes predictions, scores or
MLflow runs itself, so a new executor is one module: how to run units, nothing about recording.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from ragkit.component import Component
from ragkit.units import Unit


class Executor(Component, ABC):
    def check(self, file: Any) -> None:
        """Fail with a ConfigError naming ``file`` before any data or model loads (a missing
        package, say); the default checks nothing."""

    @abstractmethod
    def execute(self, units: Sequence[Unit], prepared: Any, recorder: Any) -> None:
        """Run ``units`` (from ``ragkit.runner.plan``) for ``prepared`` (the driver's loaded
        datasets and built components) and report each result to ``recorder``."""
