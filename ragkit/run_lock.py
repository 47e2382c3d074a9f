"""One ``ragkit run`` per experiment at a time, and one process creating an MLflow store at a time.

Two identical runs started together used to append the same questions twice to every
``predictions.jsonl`` and log every configuration twice in MLflow (or crash in MLflow's schema
migration on a new store). Each run now holds an exclusive ``flock`` on ``<runs>/<experiment>/.lock``
for its whole duration; a second run refuses at once, naming the process that holds it, or waits
for it with ``--wait`` (and then resumes: everything the first run finished is read back, nothing
is computed or logged twice).

``flock`` locks belong to the open file: the kernel releases them when the process dies, however
it dies, so a kill -9 never leaves a stale lock behind. The pid written into the file is only for
the message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import platform
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
log = logging.getLogger(__name__)


class RunLockError(RuntimeError):
    """Another process holds the lock."""


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return "another process"
    return text or "another process"


@contextlib.contextmanager
def exclusive(path: Path, *, wait: bool, what: str, announce: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    if fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise RunLockError(
                    f"{what} is already running ({_holder(path)}; lock {path}); wait for it to finish,"
                    " or pass --wait to start when it does"
                ) from None
            if announce:
                log.warning("%s is already running (%s); waiting for it to finish", what, _holder(path))
            fcntl.flock(fd, fcntl.LOCK_EX)
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {platform.node()} since {stamp}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def experiment_lock(runs_folder: Path, name: str, *, wait: bool = False) -> contextlib.AbstractContextManager:
    """The lock of experiment ``name`` whose results go to ``runs_folder`` (``<output_dir>/<name>``)."""
    return exclusive(runs_folder / LOCK_NAME, wait=wait, what=f"experiment {name!r}")


def store_lock(uri: str) -> contextlib.AbstractContextManager:
    """Serialises creating/upgrading a local SQLite MLflow store (two processes migrating a new
    store at once crash in alembic); a no-op for servers and other databases."""
    if not uri.startswith("sqlite:///"):
        return contextlib.nullcontext()
    db = Path(uri.removeprefix("sqlite:///"))
    lock = db.with_name(f".{db.name}.lock")
    return exclusive(lock, wait=True, what=f"the MLflow store {db}", announce=False)  # waits are short
