import sqlite3

import numpy as np

from ragkit.cache import Cache, cache_key


def test_json_roundtrip_and_counts(tmp_path):
    cache = Cache(tmp_path)
    key = cache_key("stage", {"b": 1, "a": 2})
    assert key == cache_key("stage", {"a": 2, "b": 1})  # dict order does not matter
    assert cache.get("s", key) is None
    cache.put("s", key, {"answer": "Paris", "tokens": [1, 2]})
    assert cache.get("s", key) == {"answer": "Paris", "tokens": [1, 2]}
    assert cache.count("s") == 1 and cache.hits == 1 and cache.misses == 1


def test_broken_json_entry_is_detected_and_dropped(tmp_path):
    cache = Cache(tmp_path)
    cache.put("s", "k", {"v": 1})
    db = sqlite3.connect(tmp_path / "cache.sqlite")
    db.execute("UPDATE entries SET value = '{\"v\": 2}' WHERE key = 'k'")  # checksum no longer matches
    db.commit()
    assert cache.get("s", "k") is None
    assert cache.broken == 1
    assert cache.count("s") == 0  # deleted, so the stage recomputes and rewrites it


def test_array_roundtrip_and_corruption(tmp_path):
    cache = Cache(tmp_path)
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    path = cache.put_array("emb", "abcd", array)
    np.testing.assert_array_equal(cache.get_array("emb", "abcd"), array)
    path.write_bytes(path.read_bytes()[:-8])  # a truncated write
    assert cache.get_array("emb", "abcd") is None
    assert cache.broken == 1 and not path.exists()
