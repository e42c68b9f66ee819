"""The embedded (file-based) backend the zero-config run uses: the same API and tag rules."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from perf.cache import FileTaggedCache
from perf.cache_metrics import FileMetricsStore


@pytest.fixture
def embedded(tmp_path: Path) -> FileTaggedCache:
    return FileTaggedCache(str(tmp_path / "cache"), {"OPTIONS": {"MAX_ENTRIES": 100_000}})


def test_the_django_cache_api_works_on_the_embedded_backend(embedded: FileTaggedCache) -> None:
    embedded.set("a", 1)
    assert embedded.get("a") == 1
    assert embedded.add("a", 2) is False
    assert embedded.add("b", None) is True
    assert embedded.has_key("b")
    assert embedded.get("b", "default") is None
    assert embedded.incr("a", 4) == 5
    assert embedded.decr("a") == 4
    assert embedded.touch("a", 100) is True
    embedded.set_many({"c": 3, "d": 4})
    assert embedded.get_many(["a", "c", "d", "zz"]) == {"a": 4, "c": 3, "d": 4}
    embedded.delete_many(["c", "d"])
    assert embedded.get("c") is None
    assert embedded.delete("a") is True
    assert embedded.get_or_set("e", lambda: "computed", 60) == "computed"
    embedded.clear()
    assert embedded.get("e") is None


def test_tags_invalidate_values_on_the_embedded_backend(embedded: FileTaggedCache) -> None:
    embedded.set("u1", "ann", tags=["users", "user:1"])
    embedded.set_many({"s1": 1, "s2": 2}, tags=["stats"])
    assert embedded.invalidate_tags(["user:1"]) == 1
    assert embedded.get("u1") is None
    assert embedded.get_many(["s1", "s2"]) == {"s1": 1, "s2": 2}
    embedded.invalidate_tags(["stats"])
    assert embedded.get_many(["s1", "s2"]) == {}
    assert embedded.add("u1", "ann again", tags=["users"]) is True


def test_the_embedded_backend_does_not_store_a_stale_computation(embedded: FileTaggedCache) -> None:
    def fetch() -> str:
        embedded.invalidate_tags(["users"])
        return "old"

    assert embedded.get_or_set("list", fetch, 60, tags=["users"]) == "old"
    assert embedded.get("list") is None


def test_the_embedded_backend_runs_a_contended_fetch_once(embedded: FileTaggedCache) -> None:
    calls = []
    barrier = threading.Barrier(20)
    results: list[Any] = []

    def fetch() -> str:
        calls.append(1)
        time.sleep(0.2)
        return "v"

    def worker() -> None:
        barrier.wait()
        results.append(embedded.get_or_set("hot", fetch, 60, tags=["users"]))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == ["v"] * 20


def test_pattern_invalidation_on_the_embedded_backend(embedded: FileTaggedCache) -> None:
    embedded.set_many({f"users:list:{i}": i for i in range(30)})
    embedded.set("users:stats", 1, tags=["stats"])
    assert embedded.count_pattern("users:list:*") == 30
    assert embedded.invalidate_pattern("users:list:*") == 30
    assert embedded.get("users:stats") == 1


def test_embedded_metrics_are_shared_through_a_file(embedded: FileTaggedCache, tmp_path: Path) -> None:
    embedded.set("k", 1)
    embedded.get("k")
    embedded.get("nope")
    embedded.metrics.flush()
    totals = FileMetricsStore(tmp_path / "cache").read().totals
    assert totals["hits"] == 1
    assert totals["misses"] == 1
    assert totals["sets"] == 1
