"""Content-addressed cache for every expensive stage.

Keys are hashes of (stage, component spec, upstream key, data fingerprint, stage version), built
with :func:`cache_key`; never hand-built names. Small JSON values (retrieval results, scores,
generations) live in one SQLite file, written in transactions so a killed process leaves either
the old or the new value; each value carries a checksum, and a value that fails it (or does not
parse) is reported, deleted and treated as a miss so the stage recomputes it. Arrays (embeddings)
are ``.npy`` files written to a temporary name and renamed into place, with a checksum sidecar.

Trust: checksums detect damage (a torn write, a truncated or overwritten file), not tampering. The
cache folder is trusted like the results it feeds: an entry someone rewrote with a valid checksum is
used (stages reject entries of the wrong shape, e.g. unknown chunk ids). See README, "Trust and
safety".

Why not joblib.Memory or diskcache: joblib keys on pickled function arguments (our keys must be
stable across code reorganisation and readable in provenance), and neither verifies entries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ragkit.types import stable_hash

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".ragkit/cache"
T = TypeVar("T")


def cache_key(*parts: Any) -> str:
    """Key of a cache entry: a hash of JSON-serialisable parts (order of dict keys ignored)."""
    return stable_hash(parts, length=32)


def _checksum(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """A damaged file ("file is not a database", "database disk image is malformed"), as opposed
    to a busy one (OperationalError: locked, full disk), which must not cost the cache."""
    return type(exc) is sqlite3.DatabaseError or "malformed" in str(exc) or "not a database" in str(exc)


class Cache:
    """A cache rooted at a folder. Thread-safe; one SQLite connection per instance.

    A damaged ``cache.sqlite`` (truncated, overwritten) is found when it is opened or when a query
    reaches a damaged page: it is moved aside to ``cache.sqlite.damaged-<time>``, reported, and a
    new empty store takes its place, so everything it held is recomputed. The cache only ever
    holds what can be recomputed; the MLflow store and ``runs/`` are never touched this way."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.path = self.root / "cache.sqlite"
        self.hits = 0
        self.misses = 0
        self.broken = 0
        self.moved_aside: list[Path] = []
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._db = self._recover(exc, None)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS entries (stage TEXT, key TEXT, value TEXT, checksum TEXT,"
                " PRIMARY KEY (stage, key))"
            )
            db.commit()
            self._inode = self.path.stat().st_ino
        except BaseException:
            db.close()
            raise
        return db

    def _recover(self, exc: Exception, db: sqlite3.Connection | None) -> sqlite3.Connection:
        """Move the damaged store aside (unless another process already did) and start a new one."""
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        try:
            same_file = self.path.stat().st_ino == getattr(self, "_inode", None) or db is None
        except FileNotFoundError:
            same_file = False
        if same_file:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{os.getpid()}")
            os.replace(self.path, target)
            for suffix in ("-wal", "-shm"):  # a journal of the damaged file must not meet the new one
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, target.with_name(target.name + suffix))
            self.moved_aside.append(target)
            log.warning(
                "the cache store %s is damaged (%s); moved it aside to %s and started a new one:"
                " cached results will be recomputed",
                self.path,
                exc,
                target.name,
            )
        return self._connect()

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the connection (caller holds the lock); once more on a fresh store if the
        file turns out to be damaged."""
        try:
            return work(self._db)
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._db = self._recover(exc, self._db)
            return work(self._db)

    # -- JSON values ---------------------------------------------------------------------------
    def get_many(self, stage: str, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        with self._lock:
            found = self._run(lambda db: self._get_many(db, stage, keys))
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def _get_many(self, db: sqlite3.Connection, stage: str, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            marks = ",".join("?" * len(batch))
            rows = db.execute(
                f"SELECT key, value, checksum FROM entries WHERE stage=? AND key IN ({marks})",
                [stage, *batch],
            ).fetchall()
            for key, value, checksum in rows:
                try:
                    if _checksum(value.encode("utf-8")) != checksum:
                        raise ValueError("checksum mismatch")
                    found[key] = json.loads(value)
                except (ValueError, AttributeError) as exc:
                    self.discard(stage, key, str(exc), db=db)
            db.commit()
        return found

    def discard(self, stage: str, key: str, why: str, *, db: sqlite3.Connection | None = None) -> None:
        """Drop a broken entry (it fails its checksum, or a stage finds it malformed) so it is
        recomputed. ``db``: the connection, when the caller already holds the lock."""
        self.broken += 1
        log.warning("cache entry %s/%s is broken (%s); recomputing it", stage, key, why)
        if db is not None:
            db.execute("DELETE FROM entries WHERE stage=? AND key=?", (stage, key))
            return
        with self._lock:
            self._run(
                lambda db: self._write(db, "DELETE FROM entries WHERE stage=? AND key=?", [(stage, key)])
            )

    @staticmethod
    def _write(db: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
        db.executemany(sql, rows)
        db.commit()

    def get(self, stage: str, key: str) -> Any | None:
        return self.get_many(stage, [key]).get(key)

    def put_many(self, stage: str, items: dict[str, Any]) -> None:
        rows = []
        for key, value in items.items():
            blob = json.dumps(value, ensure_ascii=False, default=str)
            rows.append((stage, key, blob, _checksum(blob.encode("utf-8"))))
        with self._lock:
            self._run(lambda db: self._write(db, "INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows))

    def put(self, stage: str, key: str, value: Any) -> None:
        self.put_many(stage, {key: value})

    def count(self, stage: str | None = None) -> int:
        sql, args = (
            ("SELECT COUNT(*) FROM entries", ())
            if stage is None
            else (
                "SELECT COUNT(*) FROM entries WHERE stage=?",
                (stage,),
            )
        )
        with self._lock:
            return self._run(lambda db: db.execute(sql, args).fetchone()[0])

    # -- arrays ----------------------------------------------------------------------------------
    def _array_path(self, stage: str, key: str) -> Path:
        return self.root / "arrays" / stage / key[:2] / f"{key}.npy"

    def get_array(self, stage: str, key: str) -> np.ndarray | None:
        path = self._array_path(stage, key)
        sidecar = path.with_suffix(".sha256")
        if not path.exists():
            self.misses += 1
            return None
        try:
            blob = path.read_bytes()
            if not sidecar.exists() or sidecar.read_text().strip() != _checksum(blob):
                raise ValueError("checksum mismatch")
            array = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            self.broken += 1
            log.warning("cached array %s is broken (%s); recomputing it", path, exc)
            path.unlink(missing_ok=True)
            sidecar.unlink(missing_ok=True)
            return None
        self.hits += 1
        return array

    def put_array(self, stage: str, key: str, array: np.ndarray) -> Path:
        path = self._array_path(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"tmp_{os.getpid()}_{path.name}")
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        blob = tmp.read_bytes()
        path.with_suffix(".sha256").write_text(_checksum(blob))
        os.replace(tmp, path)  # the rename is the "done" marker
        return path

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Journal:
    """Cache entries written by one process, to be stored in another cache (a cluster worker's
    new entries, stored by the driver). Plain data: it pickles."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}  # stage -> key -> JSON value
        self.arrays: dict[tuple[str, str], np.ndarray] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.values.values()) + len(self.arrays)

    def store(self, cache: Cache) -> None:
        """Write the entries into ``cache`` (the base class's writes: a journaling cache does not
        record them again, so seeding a worker never sends its seed back)."""
        for stage, items in self.values.items():
            Cache.put_many(cache, stage, items)
        for (stage, key), array in self.arrays.items():
            if not cache._array_path(stage, key).exists():
                Cache.put_array(cache, stage, key, array)


class JournalingCache(Cache):
    """A cache that also remembers what it writes, until :meth:`take_journal`. A cluster worker
    off the driver's machine caches on its own disk and sends its new entries back with its
    results, so no SQLite file is ever shared over a network file system."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__(root)
        self._journal = Journal()

    def put_many(self, stage: str, items: dict[str, Any]) -> None:
        super().put_many(stage, items)
        self._journal.values.setdefault(stage, {}).update(items)

    def put_array(self, stage: str, key: str, array: np.ndarray) -> Path:
        self._journal.arrays[(stage, key)] = np.ascontiguousarray(array)
        return super().put_array(stage, key, array)

    def take_journal(self) -> Journal:
        journal, self._journal = self._journal, Journal()
        return journal


def default_cache_dir() -> str:
    """Where a cache lives when nothing names one: ``$RAGKIT_CACHE_DIR`` or ``.ragkit/cache``."""
    return os.environ.get("RAGKIT_CACHE_DIR") or DEFAULT_CACHE_DIR


_OPEN: dict[str, Cache] = {}


def get_cache(root: str | os.PathLike[str] | None = None) -> Cache:
    """The open cache rooted at ``root`` (default: :func:`default_cache_dir`), one per folder and
    process: SQLite connections are opened once, not once per stage or unit. Components never call
    this; they use the cache they were handed (:func:`ragkit.component.bind_cache`)."""
    path = str(Path(root or default_cache_dir()).resolve())
    if path not in _OPEN:
        _OPEN[path] = Cache(path)
    return _OPEN[path]
