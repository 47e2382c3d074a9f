"""Process set-up: the environment and logging every ragkit process runs with.

One function, called by the command line before any command runs and by every executor worker
(a Ray actor starts in a fresh process on another machine): nothing here happens at import time,
so importing ragkit as a library changes nothing in the caller's process.
"""

from __future__ import annotations

import logging
import os

# setdefault: a user's own setting wins. Several are read when their library is first imported
# (transformers, tqdm, mlflow), so set-up must run before any of them loads.
ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",  # packaged models only; never a hub download at run time
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TRANSFORMERS_VERBOSITY": "error",  # "Loading weights" bars would bury ours
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",  # GGUF de-quantising and encode bars (raw tqdm) under ours
    "TOKENIZERS_PARALLELISM": "false",
    # mlflow sets its own logger to INFO when it is imported, which printed "Creating initial MLflow
    # database tables..." on every first run; it reads this variable at that import.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
NOISY_LOGGERS = ("bm25s", "sentence_transformers", "transformers", "faiss", "httpx", "alembic", "mlflow")


def process_environment() -> dict[str, str]:
    """The variables :func:`configure_process` sets, with this process's values where it has its
    own (what a worker process elsewhere should start with)."""
    return {name: os.environ.get(name, default) for name, default in ENVIRONMENT.items()}


def configure_process(level: int = logging.WARNING) -> None:
    """Environment defaults and logging for a ragkit process (idempotent)."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
