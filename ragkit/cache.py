"""Content-addressed cache for every expensive stage.

Keys are hashes of (stage, component spec, upstream key, data fingerprint, stage version), built
with :func:`cache_key`; never hand-built names. Small JSON values (retrieval results, scores,
generations) live in one SQLite file, written in transactions so a killed process leaves either
the old or the new value; each value carries a checksum, and a value that fails it (or does not
parse) is reported, deleted and treated as a miss so the stage recomputes it. Arrays (embeddings)
are ``.npy`` files written to a temporary name and renamed into place, with a checksum sidecar.

Why not joblib.Memory or diskcache: joblib keys on pickled function arguments (our keys must be
stable across code reorganisation and readable in provenance), and neither verifies entries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ragkit.types import stable_hash

log = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = ".ragkit/cache"


def cache_key(*parts: Any) -> str:
    """Key of a cache entry: a hash of JSON-serialisable parts (order of dict keys ignored)."""
    return stable_hash(parts, length=32)


def _checksum(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()[:16]


class Cache:
    """A cache rooted at a folder. Thread-safe; one SQLite connection per instance."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "cache.sqlite", check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS entries (stage TEXT, key TEXT, value TEXT, checksum TEXT,"
            " PRIMARY KEY (stage, key))"
        )
        self._db.commit()
        self.hits = 0
        self.misses = 0
        self.broken = 0

    # -- JSON values ---------------------------------------------------------------------------
    def get_many(self, stage: str, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                batch = keys[start : start + 500]
                marks = ",".join("?" * len(batch))
                rows = self._db.execute(
                    f"SELECT key, value, checksum FROM entries WHERE stage=? AND key IN ({marks})",
                    [stage, *batch],
                ).fetchall()
                for key, value, checksum in rows:
                    try:
                        if _checksum(value.encode("utf-8")) != checksum:
                            raise ValueError("checksum mismatch")
                        found[key] = json.loads(value)
                    except (ValueError, AttributeError) as exc:
                        self.broken += 1
                        log.warning("cache entry %s/%s is broken (%s); recomputing it", stage, key, exc)
                        self._db.execute("DELETE FROM entries WHERE stage=? AND key=?", (stage, key))
                self._db.commit()
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def get(self, stage: str, key: str) -> Any | None:
        return self.get_many(stage, [key]).get(key)

    def put_many(self, stage: str, items: dict[str, Any]) -> None:
        rows = []
        for key, value in items.items():
            blob = json.dumps(value, ensure_ascii=False, default=str)
            rows.append((stage, key, blob, _checksum(blob.encode("utf-8"))))
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO entries VALUES (?, ?, ?, ?)", rows)
            self._db.commit()

    def put(self, stage: str, key: str, value: Any) -> None:
        self.put_many(stage, {key: value})

    def count(self, stage: str | None = None) -> int:
        with self._lock:
            if stage is None:
                return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM entries WHERE stage=?", (stage,)).fetchone()[0]

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


def default_cache_root() -> Path:
    """Where a cache lives when nothing names one: ``$RAGKIT_CACHE_DIR`` or ``.ragkit/cache``."""
    return Path(os.environ.get("RAGKIT_CACHE_DIR", DEFAULT_CACHE_DIR))


_OPEN: dict[str, Cache] = {}


def get_cache(root: str | os.PathLike[str] | None = None) -> Cache:
    """The open cache rooted at ``root`` (default: :func:`default_cache_root`), one per folder and
    process: SQLite connections are opened once, not once per stage or unit. Components never call
    this; they use the cache they were handed (:func:`ragkit.component.bind_cache`)."""
    path = str(Path(root or default_cache_root()).resolve())
    if path not in _OPEN:
        _OPEN[path] = Cache(path)
    return _OPEN[path]
