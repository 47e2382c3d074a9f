"""Set-up hooks the Ray executor tests give Ray (``runtime_env.worker_process_setup_hook``): they
run in every worker process of the test's job, before any unit."""

import os
import time
from pathlib import Path


def slow_scripted_generation() -> None:
    """Each scripted generator call first writes ``<pid>`` into ``$RAGKIT_TEST_MARKERS`` (so a
    test knows a unit is running in that process), then takes ``$RAGKIT_TEST_LATENCY`` seconds,
    standing in for a model's time."""
    from ragkit.generators.scripted import ScriptedGenerator

    original = ScriptedGenerator._generate
    markers = Path(os.environ["RAGKIT_TEST_MARKERS"])
    latency = float(os.environ.get("RAGKIT_TEST_LATENCY", "0.5"))

    def slow(self, prompts, requests):
        (markers / str(os.getpid())).touch()
        time.sleep(latency)  # simulated work inside the unit, not a test waiting
        return original(self, prompts, requests)

    ScriptedGenerator._generate = slow
