"""Redis stopped, restarted, or hanging: pages render from the database, the cache page
says Redis is unreachable, the failure is logged once per interval, and everything comes
back by itself. The Redis here is a private redis-server this module starts and stops;
the shared one is never touched.
"""

from __future__ import annotations

import copy
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache as default_cache
from django.test import Client, override_settings

from perf.cache import RedisTaggedCache
from perf.cache.metrics import CacheMetricsUnavailable, read_totals

pytestmark = pytest.mark.django_db

# The default cache is always the tagged backend: typed as such for the checker.
cache = cast("RedisTaggedCache", default_cache)


@dataclass
class PrivateRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None
    extra: tuple[str, ...] = ()

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                time.sleep(0.05)
        probe.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(closed_port: int) -> Iterator[PrivateRedis]:
    server = PrivateRedis(closed_port)
    server.start()
    yield server
    server.stop()


def caches_at(port: int, **options: Any) -> dict[str, Any]:
    caches: dict[str, Any] = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    caches["default"]["OPTIONS"].update({"RETRY_INTERVAL": 0.2, "FAILURE_LOG_INTERVAL": 60, **options})
    return caches


def count_users_through_the_cache() -> int:
    return cache.get_or_set("users:count", lambda: User.objects.count(), 60, tags=["users"])


def wait_until_the_cache_answers() -> None:
    """Recovery needs no action: poll until a write reads back (bounded, not a timing assertion)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        cache.set("recovered", "yes", 60)
        if cache.get("recovered") == "yes":
            return
        time.sleep(0.1)
    raise AssertionError("the cache did not recover by itself within 15 s")


def test_a_stopped_redis_leaves_pages_rendering_from_the_database_and_it_recovers_by_itself(
    owner_client: Client, private_redis: PrivateRedis
) -> None:
    with override_settings(CACHES=caches_at(private_redis.port)):
        assert count_users_through_the_cache() == 1
        cache.set("card", "cached", 60, tags=["users"])

        private_redis.stop()
        assert cache.get("card") is None
        assert cache.set("card", "new", 60, tags=["users"]) is False
        assert cache.invalidate_tags(["users"]) == 0
        User.objects.create_user("second")
        assert count_users_through_the_cache() == 2  # from the database
        for url in ("/", "/perf/", "/perf/cache/", "/users/"):
            assert owner_client.get(url).status_code == 200, url
        body = owner_client.get("/perf/cache/").content.decode()
        assert 'data-cache-state="unreachable"' in body
        assert "Redis is unreachable" in body

        private_redis.start()  # empty, as after a restart without persistence
        wait_until_the_cache_answers()
        assert count_users_through_the_cache() == 2
        assert cache.get("users:count") == 2
        assert 'data-cache-state="up"' in owner_client.get("/perf/cache/").content.decode()


def test_a_hanging_redis_is_skipped_after_one_timeout_and_logged_once(
    owner_client: Client, silent_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with override_settings(CACHES=caches_at(silent_port, RETRY_INTERVAL=60)), caplog.at_level(logging.WARNING):
        for _ in range(20):
            assert cache.get("anything", "default") == "default"
            assert count_users_through_the_cache() == 1
        # After the first timeout the breaker is open: later calls do not wait on the socket.
        assert cache.breaker is not None and cache.breaker.is_open
        warnings = [r for r in caplog.records if r.name == "perf.cache" and r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "TimeoutError" in warnings[0].getMessage()
        response = owner_client.get("/perf/cache/")
        assert response.status_code == 200
        assert "Redis is unreachable" in response.content.decode()


def test_the_socket_timeouts_are_explicit_and_below_the_worker_timeout() -> None:
    options = cast("dict[str, Any]", settings.CACHES["default"]["OPTIONS"])
    assert options["SOCKET_TIMEOUT"] == settings.CACHE_SOCKET_TIMEOUT
    assert options["SOCKET_CONNECT_TIMEOUT"] == settings.CACHE_SOCKET_TIMEOUT
    assert settings.CACHE_SOCKET_TIMEOUT < 1


def test_pattern_actions_say_redis_is_unreachable_instead_of_counting_zero(
    owner_client: Client, closed_port: int
) -> None:
    with override_settings(CACHES=caches_at(closed_port)):
        response = owner_client.post("/perf/cache/invalidate-pattern/", {"pattern": "users:*"}, follow=True)
        assert response.status_code == 200
        assert "the cache did not answer" in response.content.decode()
        response = owner_client.post("/perf/cache/invalidate-tag/", {"tag": "users"}, follow=True)
        assert "was not invalidated" in response.content.decode()


def test_the_metrics_say_they_are_unavailable_when_redis_is_down(closed_port: int) -> None:
    with override_settings(CACHES=caches_at(closed_port)), pytest.raises(CacheMetricsUnavailable):
        read_totals()


@pytest.mark.parametrize(
    ("policy", "warning"),
    [("allkeys-lru", None), ("volatile-lru", "can never be evicted"), ("noeviction", "refuses writes")],
)
def test_the_page_shows_memory_against_maxmemory_and_warns_when_keys_cannot_be_evicted(
    owner_client: Client, closed_port: int, policy: str, warning: str | None
) -> None:
    server = PrivateRedis(closed_port, extra=("--maxmemory", "64mb", "--maxmemory-policy", policy))
    server.start()
    try:
        with override_settings(CACHES=caches_at(server.port)):
            cache.set("users:list:1", "rows", 60)
            body = owner_client.get("/perf/cache/").content.decode()
    finally:
        server.stop()
    assert f'data-figure="policy">{policy}<' in body
    assert "of 64.0\xa0MB" in body or "of 64.0 MB" in body
    assert 'data-figure="keys">' in body
    if warning is None:
        assert 'data-warning="eviction"' not in body
    else:
        assert warning in body
