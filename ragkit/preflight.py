"""Checks that run before any data or model loads: the tracking store and the folders a run writes.

A damaged ``mlflow.db`` used to surface as an SQLAlchemy traceback 47 s into a run (after the data
loaded), an unwritable ``cache_dir`` or ``output_dir`` as a NotADirectoryError traceback. Each is
now one :class:`~ragkit.config.ConfigError` naming the experiment file and the field.

The MLflow store is the user's record of every run: ragkit never moves or repairs it, it says what
is wrong and how to start a fresh one. (A damaged *cache* is different: it holds only what can be
recomputed, so :mod:`ragkit.cache` moves it aside by itself.)
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from ragkit.config import ConfigError
from ragkit.security import redact
from ragkit.tracking import TrackingError, check_reachable


def damaged_sqlite(path: Path) -> str | None:
    """Why the SQLite file at ``path`` cannot be used (None: it can, or it does not exist yet).
    Opened read-only; ``quick_check`` reads every page, so a truncated file is found too."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            result = db.execute("PRAGMA quick_check(1)").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if result is None or result[0] != "ok":
        return f"integrity check failed: {result[0] if result else 'no result'}"
    return None


def check_tracking_store(uri: str, file: Any) -> None:
    """A tracking server answers; a local SQLite store is a readable database."""
    try:
        check_reachable(uri)
    except TrackingError as exc:
        raise ConfigError(file, "tracking_uri", str(exc)) from None
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri.removeprefix("sqlite:///"))
    problem = damaged_sqlite(path)
    if problem:
        raise ConfigError(
            file,
            "tracking_uri",
            f"the MLflow store {path} is damaged ({problem}); ragkit leaves it as it is: move it aside"
            f" (mv {path} {path}.damaged) to start a new store, or restore it from a backup",
        )


def check_writable_folder(folder: str | os.PathLike[str], file: Any, field: str) -> Path:
    """``folder`` exists (created if needed) and a file can be written in it."""
    path = Path(folder).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".ragkit-write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise ConfigError(
            file, field, f"cannot write to the folder {redact(str(path))} ({reason}); choose another"
        ) from None
    return path
