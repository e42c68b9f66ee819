"""The tagged Redis backend against the real Redis: Django's cache contract, then tags,
stamps, races, single flight and pattern invalidation.

Every key lives under this run's prefix; nothing else in Redis is touched (the test
that shows `clear()` is safe writes one outside key and removes it itself).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
from django.core.cache import cache as default_cache
from django.core.cache import caches

from perf.cache import RedisTaggedCache
from perf.cache.metrics import read_totals

pytestmark = pytest.mark.django_db

# The default cache is always the tagged backend: typed as such for the checker.
cache = cast("RedisTaggedCache", default_cache)


@pytest.fixture(autouse=True)
def _no_leftover_stamps() -> Iterator[None]:
    """Values, stamps, locks and metrics of this run's prefix start empty in every test."""
    cache.clear()
    yield
    cache.clear()


def backend(**options: Any) -> RedisTaggedCache:
    """A second instance of the configured backend (same Redis, same prefix) with other options."""
    params = dict(caches.settings["default"])
    params["OPTIONS"] = {**params.get("OPTIONS", {}), **options}
    return RedisTaggedCache(params["LOCATION"], params)


# --- Django's cache API, unchanged --------------------------------------------------


def test_it_is_the_configured_default_backend() -> None:
    assert isinstance(caches["default"], RedisTaggedCache)


def test_set_and_get_round_trip_any_picklable_value() -> None:
    values = {"int": 7, "str": "seven", "dict": {"a": [1, 2]}, "none": None, "bool": False, "bytes": b"\x00\x01"}
    for key, value in values.items():
        cache.set(key, value)
    for key, value in values.items():
        assert cache.get(key, "missing") == value
    assert cache.get("never-set") is None
    assert cache.get("never-set", "fallback") == "fallback"


def test_add_stores_only_when_absent() -> None:
    assert cache.add("a", 1) is True
    assert cache.add("a", 2) is False
    assert cache.get("a") == 1


def test_a_timeout_of_zero_or_less_does_not_keep_the_value() -> None:
    cache.set("k", 1)
    cache.set("k", 2, timeout=0)
    assert cache.get("k") is None
    cache.set("t", 1, timeout=-1, tags=["users"])
    assert cache.get("t") is None


def test_touch_ttl_and_persist_work_on_plain_and_tagged_keys() -> None:
    cache.set("plain", 1, timeout=100)
    cache.set("tagged", 1, timeout=100, tags=["users"])
    assert cache.touch("plain", 1000) is True
    assert cache.touch("tagged", None) is True
    assert 100 < cache.ttl("plain") <= 1000
    assert cache.ttl("tagged") is None
    assert cache.touch("missing", 10) is False


def test_incr_and_decr_count_and_refuse_a_missing_key() -> None:
    cache.set("n", 10)
    assert cache.incr("n") == 11
    assert cache.incr("n", 5) == 16
    assert cache.decr("n", 6) == 10
    assert cache.get("n") == 10
    with pytest.raises(ValueError):
        cache.incr("absent")


def test_delete_and_delete_many_remove_keys() -> None:
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert cache.delete("a") is True
    assert cache.delete("a") is False
    cache.delete_many(["b", "c"])
    assert cache.get_many(["a", "b", "c"]) == {}


def test_has_key_get_many_and_set_many() -> None:
    assert cache.set_many({"x": 1, "y": None}) == []
    assert cache.has_key("x") and cache.has_key("y")
    assert not cache.has_key("z")
    assert cache.get_many(["x", "y", "z"]) == {"x": 1, "y": None}


def test_versions_keep_values_apart() -> None:
    cache.set("v", "one", version=1)
    cache.set("v", "two", version=2)
    assert cache.get("v", version=1) == "one"
    assert cache.get("v", version=2) == "two"
    assert cache.incr_version("v", version=2) == 3
    assert cache.get("v", version=3) == "two"


def test_get_or_set_calls_the_fetch_only_on_a_miss() -> None:
    calls = []

    def fetch() -> str:
        calls.append(1)
        return "fresh"

    assert cache.get_or_set("g", fetch, 60) == "fresh"
    assert cache.get_or_set("g", fetch, 60) == "fresh"
    assert len(calls) == 1
    assert cache.get_or_set("plain-default", "value") == "value"
    assert cache.get("plain-default") == "value"


def test_get_or_set_caches_a_none_result() -> None:
    calls = []
    assert cache.get_or_set("none", lambda: calls.append(1), 60) is None
    assert cache.get_or_set("none", lambda: calls.append(1), 60) is None
    assert calls == [1]


def test_django_redis_extras_keep_working() -> None:
    cache.set_many({"list:1": 1, "list:2": 2, "other": 3})
    assert sorted(cache.keys("list:*")) == ["list:1", "list:2"]
    assert sorted(cache.iter_keys("list:*")) == ["list:1", "list:2"]
    assert cache.delete_pattern("list:*") == 2
    assert cache.get("other") == 3
    with cache.lock("a-lock", timeout=2):
        pass


def test_clear_deletes_only_keys_under_its_own_prefix(redis_client: Any) -> None:
    outside = f"not-ours-{time.monotonic_ns()}"
    redis_client.set(outside, "stays", ex=60)
    try:
        cache.set("mine", 1)
        cache.set("tagged", 1, tags=["users"])
        cache.clear()
        assert cache.get("mine") is None
        assert redis_client.get(outside) == b"stays"
        assert redis_client.keys(f"{cache.key_prefix}:*") == []
    finally:
        redis_client.delete(outside)


# --- tags and stamps ------------------------------------------------------------------


def test_a_tagged_value_is_a_hit_until_one_of_its_tags_is_invalidated() -> None:
    cache.set("user:1:card", {"name": "ann"}, tags=["users", "user:1"])
    cache.set("user:2:card", {"name": "bob"}, tags=["users", "user:2"])
    assert cache.get("user:1:card") == {"name": "ann"}
    assert cache.invalidate_tags(["user:1"]) == 1
    assert cache.get("user:1:card") is None
    assert not cache.has_key("user:1:card")
    assert cache.get("user:2:card") == {"name": "bob"}
    cache.invalidate_tags(["users"])
    assert cache.get("user:2:card") is None


def test_set_many_and_get_many_with_tags() -> None:
    assert cache.set_many({"s:1": 1, "s:2": 2}, 60, tags=["stats"]) == []
    cache.set("s:3", 3, tags=["users"])
    assert cache.get_many(["s:1", "s:2", "s:3"], tags=["stats"]) == {"s:1": 1, "s:2": 2, "s:3": 3}
    cache.invalidate_tags(["stats"])
    assert cache.get_many(["s:1", "s:2", "s:3"]) == {"s:3": 3}


def test_a_lost_stamp_turns_a_hit_into_a_miss_never_into_a_stale_hit(redis_client: Any) -> None:
    cache.set("card", "old", tags=["user:9"])
    redis_client.delete(cache.stamp_key("user:9"))  # as if Redis evicted it
    assert cache.get("card") is None
    # A new stamp is made by the next tagged write; the old value stays invalid.
    cache.set("other", "x", tags=["user:9"])
    assert cache.get("card") is None
    assert cache.get("other") == "x"


def test_invalidating_a_tag_costs_one_write_whatever_carries_it(redis_client: Any) -> None:
    cache.set_many({f"k:{i}": i for i in range(2000)}, tags=["wide"])
    before = redis_client.dbsize()
    cache.invalidate_tags(["wide"])
    assert redis_client.dbsize() == before  # nothing deleted or rewritten: one stamp changed
    assert cache.get_many([f"k:{i}" for i in range(0, 2000, 97)]) == {}


def test_add_replaces_a_value_whose_tag_was_invalidated() -> None:
    cache.set("a", "old", tags=["users"])
    assert cache.add("a", "new", tags=["users"]) is False
    cache.invalidate_tags(["users"])
    assert cache.add("a", "new", tags=["users"]) is True
    assert cache.get("a") == "new"


def test_it_rejects_bad_tags_with_a_clear_message() -> None:
    with pytest.raises(TypeError, match="not one string"):
        cache.set("a", 1, tags="users")
    with pytest.raises(ValueError, match="invalid cache tag"):
        cache.set("a", 1, tags=["has space"])
    with pytest.raises(ValueError, match="invalid cache tag"):
        cache.invalidate_tags([""])
    with pytest.raises(ValueError, match="invalid cache tag"):
        cache.get_or_set("a", lambda: 1, tags=[None])  # type: ignore[list-item]


def test_a_value_computed_while_its_tag_was_invalidated_is_not_stored() -> None:
    def fetch() -> str:
        # A write lands while this value is being computed.
        cache.invalidate_tags(["users"])
        return "computed from the old rows"

    assert cache.get_or_set("list", fetch, 60, tags=["users"]) == "computed from the old rows"
    assert cache.get("list") is None
    assert cache.get_or_set("list", lambda: "recomputed", 60, tags=["users"]) == "recomputed"
    assert cache.get("list") == "recomputed"


def test_get_or_set_with_tags_is_invalidated_by_its_tags() -> None:
    assert cache.get_or_set("page", lambda: "v1", 60, tags=["users", "stats"]) == "v1"
    cache.invalidate_tags(["stats"])
    assert cache.get_or_set("page", lambda: "v2", 60, tags=["users", "stats"]) == "v2"


def _commands_sent(probe: RedisTaggedCache, key: str, read: Any) -> list[str]:
    client = probe.raw_client(key)
    sent = []
    original = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return original(*args, **kwargs)

    client.execute_command = counting
    try:
        read()
    finally:
        del client.execute_command
    return sent


def test_a_read_costs_what_django_redis_pays_plus_one_mget_for_a_tagged_value(redis_client: Any) -> None:
    cache.set("plain-trip", "p")
    cache.set("tagged-trip", "v", tags=["a", "b", "c", "d"])
    probe = backend()
    assert _commands_sent(probe, "plain-trip", lambda: probe.get("plain-trip") == "p") == ["GET"]
    assert _commands_sent(probe, "tagged-trip", lambda: probe.get("tagged-trip") == "v") == ["GET", "MGET"]
    # Naming the tags makes it one MGET of the value and its stamps.
    assert _commands_sent(probe, "tagged-trip", lambda: probe.get("tagged-trip", tags=["a", "b", "c", "d"])) == ["MGET"]
    assert probe.get("tagged-trip", tags=["a", "b", "c", "d"]) == "v"


# --- single flight and races ---------------------------------------------------------


def test_fifty_threads_missing_one_key_run_the_fetch_once() -> None:
    calls = []
    calls_lock = threading.Lock()
    start = threading.Barrier(50)
    results: list[Any] = []

    def fetch() -> str:
        with calls_lock:
            calls.append(1)
        time.sleep(0.2)
        return "expensive"

    def worker() -> None:
        start.wait()
        # Each thread's own backend instance, as in a threaded worker.
        results.append(cast("RedisTaggedCache", caches["default"]).get_or_set("hot", fetch, 60, tags=["users"]))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert results == ["expensive"] * 50


def test_waiters_compute_themselves_when_the_lock_holder_died(redis_client: Any) -> None:
    impatient = backend(SINGLE_FLIGHT_WAIT=0.3)
    # A holder that died: its lock stays until it expires.
    redis_client.set(impatient._lock_key("orphan", None), "dead-worker", px=60_000)
    assert impatient.get_or_set("orphan", lambda: "computed", 60) == "computed"
    # Its lock expiring lets the next caller take it.
    redis_client.set(impatient._lock_key("expiring", None), "dead-worker", px=50)
    patient = backend(SINGLE_FLIGHT_WAIT=5)
    assert patient.get_or_set("expiring", lambda: "after expiry", 60) == "after expiry"


def test_a_failing_fetch_releases_the_lock_for_the_next_caller(redis_client: Any) -> None:
    def broken() -> str:
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        cache.get_or_set("fragile", broken, 60)
    assert redis_client.exists(cache._lock_key("fragile", None)) == 0
    assert cache.get_or_set("fragile", lambda: "ok", 60) == "ok"


# --- pattern invalidation ------------------------------------------------------------


def test_invalidate_pattern_counts_what_it_deletes_in_batches() -> None:
    cache.set_many({f"users:list:{i}": i for i in range(2500)})
    cache.set_many({"users:stats": 1, "containers:list:1": 1})
    cache.set("tagged", 1, tags=["users"])
    assert cache.count_pattern("users:list:*") == 2500
    assert cache.invalidate_pattern("users:list:*") == 2500
    assert cache.count_pattern("users:list:*") == 0
    assert cache.get_many(["users:stats", "containers:list:1"]) == {"users:stats": 1, "containers:list:1": 1}
    # The stamps (internal keys) survive a catch-all pattern, so tagged values stay valid.
    assert cache.invalidate_pattern("*") == 3
    cache.set("tagged-again", 1, tags=["users"])
    assert cache.get("tagged-again") == 1


def test_invalidate_pattern_rejects_an_empty_pattern() -> None:
    with pytest.raises(ValueError, match="non-empty glob"):
        cache.invalidate_pattern("")


# --- metrics ---------------------------------------------------------------------------


def test_metrics_count_hits_misses_sets_invalidations_and_stampedes() -> None:
    before = read_totals()
    cache.set("m:1", 1, tags=["users"])
    cache.get("m:1")
    cache.get("m:2")
    cache.invalidate_tags(["users"])
    after = read_totals()
    assert after["sets"] - before["sets"] == 1
    assert after["hits"] - before["hits"] == 1
    assert after["misses"] - before["misses"] == 1
    assert after["invalidations"] - before["invalidations"] == 1
    assert set(after) >= {"hits", "misses", "sets", "invalidations", "stampedes_avoided"}


def test_a_read_naming_the_tags_checks_every_tag_the_value_carries() -> None:
    cache.set("card", "v", tags=["users", "user:3"])
    assert cache.get("card", tags=["users", "user:3"]) == "v"
    # The caller names fewer tags than the value carries: the other one is still checked.
    cache.invalidate_tags(["user:3"])
    assert cache.get("card", tags=["users"]) is None
    cache.set("card", "v2", tags=["users"])
    assert cache.get("card", tags=["users", "never-stamped"]) == "v2"
    cache.set("plain", "p")
    assert cache.get("plain", tags=["users"]) == "p"


def test_a_tagged_hit_through_get_or_set_is_one_mget(redis_client: Any) -> None:
    cache.get_or_set("hot-read", lambda: "v", 60, tags=["users", "stats"])
    probe = backend()
    client = probe.raw_client("hot-read")
    sent = []
    original = client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        sent.append(args[0])
        return original(*args, **kwargs)

    client.execute_command = counting
    try:
        assert probe.get_or_set("hot-read", lambda: "never", 60, tags=["users", "stats"]) == "v"
    finally:
        del client.execute_command
    assert sent == ["MGET"]


def test_metric_keys_expire_when_nobody_updates_them(redis_client: Any) -> None:
    cache.set("m:ttl", 1)
    cache.get("m:ttl")
    read_totals()
    totals_key = f"{cache.internal_key('m')}:totals"
    assert 0 < redis_client.ttl(totals_key) <= 7 * 24 * 3600
