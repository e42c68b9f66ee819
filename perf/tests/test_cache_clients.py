"""Tags composed with the django-redis client the settings name, against the real Redis.

django-redis's own suite (test_django_redis_suite.py) proves the untagged calls behave
as stock; these tests prove the tags hold under each client and that what would lose
them is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django_redis.client import HerdClient, ShardClient

from perf.cache import RedisTaggedCache, TaggedValueError


def _backend(client_class: str, location: Any = None, **options: Any) -> RedisTaggedCache:
    """A tagged cache on the test Redis under this run's prefix plus `client_class`'s name."""
    params = {
        "LOCATION": location or str(settings.CACHES["default"]["LOCATION"]),
        "KEY_PREFIX": f"{settings.CACHE_KEY_PREFIX}-{client_class.rsplit('.', 1)[-1]}",
        "OPTIONS": {"CLIENT_CLASS": client_class, **options},
    }
    return RedisTaggedCache(location or str(settings.CACHES["default"]["LOCATION"]), params)


@pytest.fixture
def herd() -> Iterator[RedisTaggedCache]:
    cache = _backend("django_redis.client.HerdClient")
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def sharded() -> Iterator[RedisTaggedCache]:
    # Two shards: two databases of the test Redis (only this run's prefix is touched).
    base = str(settings.CACHES["default"]["LOCATION"]).rsplit("/", 1)[0]
    cache = _backend("django_redis.client.ShardClient", [f"{base}/14", f"{base}/15"])
    cache.clear()
    yield cache
    cache.clear()
    cache.close()


@pytest.fixture
def plain() -> Iterator[RedisTaggedCache]:
    cache = _backend("django_redis.client.DefaultClient")
    cache.clear()
    yield cache
    cache.clear()


def test_tags_hold_with_the_herd_client_and_untagged_values_keep_herd_packing(herd: RedisTaggedCache) -> None:
    assert isinstance(herd.client, HerdClient)
    herd.set("card", {"v": 1}, 60, tags=["users"])
    herd.set("plain", "herded", 60)
    assert herd.get("card") == {"v": 1}
    assert herd.get("plain") == "herded"
    assert herd.get_or_set("plain", lambda: "never", 60) == "herded"
    herd.invalidate_tags(["users"])
    assert herd.get("card") is None
    assert herd.get_or_set("card", lambda: {"v": 2}, 60, tags=["users"]) == {"v": 2}
    # The herd client stores untagged values packed with its own marker and timeout.
    assert herd.ttl("plain") > 60


def test_tags_hold_across_shards_with_the_shard_client(sharded: RedisTaggedCache) -> None:
    assert isinstance(sharded.client, ShardClient)
    keys = [f"user:{n}" for n in range(40)]
    sharded.set_many({key: key for key in keys}, 60, tags=["users"])
    shards = {sharded.client.get_server_name(sharded.make_key(key)) for key in keys}
    assert len(shards) == 2, "the keys should land on both shards"
    assert sharded.get_many(keys) == {key: key for key in keys}
    assert all(sharded.get(key, tags=["users"]) == key for key in keys)
    sharded.invalidate_tags(["users"])
    assert sharded.get_many(keys) == {}
    assert not any(sharded.has_key(key) for key in keys)
    # A value computed on one shard is checked against that shard's stamp.
    assert sharded.get_or_set("user:1", lambda: "fresh", 60, tags=["users"]) == "fresh"
    assert sharded.get("user:1") == "fresh"


def test_an_invalidated_value_counts_as_absent_for_has_key_add_and_get_many(plain: RedisTaggedCache) -> None:
    plain.set("a", 1, 60, tags=["stats"])
    plain.set("b", 2, 60)
    assert plain.has_key("a") and plain.get_many(["a", "b"]) == {"a": 1, "b": 2}
    plain.invalidate_tags(["stats"])
    assert not plain.has_key("a")
    assert plain.get_many(["a", "b"]) == {"b": 2}
    assert plain.add("a", "again", 60)
    assert plain.get("a") == "again"
    assert not plain.add("b", "kept?", 60)


def test_a_lock_and_other_values_under_the_prefix_read_as_django_redis_reads_them(plain: RedisTaggedCache) -> None:
    lock = plain.lock("job")
    assert lock.acquire(blocking=False)
    assert plain.has_key("job")
    lock.release()
    assert not plain.has_key("job")
    plain.sadd("members", "x", "y")
    assert plain.has_key("members") and plain.smembers("members") == {"x", "y"}
    plain.zadd("board", {"a": 1.0})
    assert plain.zscore("board", "a") == 1.0


def test_incr_decr_and_incr_version_refuse_a_tagged_value_and_change_nothing(plain: RedisTaggedCache) -> None:
    plain.set("count", 5, 60, tags=["stats"])
    for call in (lambda: plain.incr("count"), lambda: plain.decr("count"), lambda: plain.incr_version("count")):
        with pytest.raises(TaggedValueError, match="carries tags"):
            call()
    assert plain.get("count") == 5
    plain.invalidate_tags(["stats"])
    assert plain.get("count") is None
    plain.set("plain-count", 5, 60)
    assert plain.incr("plain-count") == 6 and plain.decr("plain-count", 2) == 4


def test_a_client_class_that_is_not_django_redis_s_is_refused_at_start() -> None:
    with pytest.raises(ImproperlyConfigured, match="composes with django-redis clients"):
        _backend("logging.Logger")


def test_the_breaker_rate_limited_log_and_metrics_are_off_unless_the_options_ask(plain: RedisTaggedCache) -> None:
    assert plain.breaker is None
    assert plain.logger is None or isinstance(plain.logger, logging.Logger)
    plain.set("m", 1, 60)
    plain.get("m")
    assert plain.iter_keys("*") is not None
    assert sorted(plain.keys("*")) == ["m"]  # no counters, stamps or locks under the prefix
    with pytest.raises(ImproperlyConfigured, match="RETRY_INTERVAL"):
        _backend("django_redis.client.DefaultClient", RETRY_INTERVAL="soon")
