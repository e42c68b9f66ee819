"""A fixed-window request limit per client address, for the public subscription URL.

Counters live in Redis (one INCR + EXPIRE per request, shared by every worker). When
Redis cannot be reached the limit is kept per process instead (a bounded dict): the
endpoint keeps limiting and keeps answering, it never fails open and never turns the
outage into a 500. Unknown and valid tokens count alike, so guessing costs the same
budget as fetching.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

from vpnadmin.requestctx import client_ip

logger = logging.getLogger(__name__)

# Addresses the per-process fallback remembers; beyond that the oldest window is dropped.
LOCAL_MAX_KEYS = 10_000


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    count: int
    limit: int
    retry_after: int


def client_key(request: HttpRequest) -> str:
    """The client's address (an IPv6 client by its /64: one host usually holds the whole prefix).

    The address the app believes everywhere (`vpnadmin.requestctx.client_ip`: behind
    BEHIND_PROXY the right-most X-Forwarded-For entry, the one our proxy appended), or
    SUBSCRIPTION_CLIENT_IP_HEADER when a proxy passes it in a header of its own.
    """
    header = settings.SUBSCRIPTION_CLIENT_IP_HEADER
    raw = request.META.get(header, "").strip() if header else ""
    raw = raw or client_ip(request)
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False).network_address) + "/64"
    return str(address)


class _LocalWindows:
    """The per-process fallback: counts per (window, address), old windows forgotten."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[tuple[int, str], int] = {}

    def hit(self, window: int, key: str) -> int:
        with self.lock:
            if len(self.counts) >= LOCAL_MAX_KEYS:
                for stale in [k for k in self.counts if k[0] < window]:
                    del self.counts[stale]
                if len(self.counts) >= LOCAL_MAX_KEYS:
                    self.counts.clear()  # a flood of addresses in one window: start over, still bounded
            count = self.counts.get((window, key), 0) + 1
            self.counts[(window, key)] = count
            return count


_local = _LocalWindows()


# INCR, and start the window's expiry on its first hit: one round trip, atomic (a key
# can never be left without a TTL by a worker dying between two commands).
_INCR_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""
_sha: str | None = None  # the script's SHA on the Redis server, loaded once per process
WARN_EVERY_SECONDS = 30.0
_last_warning = -WARN_EVERY_SECONDS


@dataclass
class PendingHit:
    """A request counted in Redis whose answer is read later (`verdict`), so the count's
    round trip overlaps the cache read that follows instead of adding to it."""

    window: int
    key: str
    limit: int
    retry_after: int
    connection: Any = None
    pool: Any = None

    def verdict(self) -> Verdict:
        count: int | None = None
        if self.connection is not None:
            connection, self.connection = self.connection, None
            try:
                count = int(connection.read_response())
            except Exception as error:  # any Redis failure means "count locally"
                connection.disconnect()
                _redis_failed(error)
            finally:
                self.pool.release(connection)
        if count is None:
            count = _local.hit(self.window, self.key)
        return Verdict(allowed=count <= self.limit, count=count, limit=self.limit, retry_after=self.retry_after)


def _redis_failed(error: Exception) -> None:
    global _sha, _last_warning  # the per-process script SHA and log throttle
    from redis.exceptions import ResponseError

    if isinstance(error, ResponseError):
        _sha = None  # Redis answered (e.g. NOSCRIPT after a restart): load the script again next time
    else:
        breaker = getattr(cache, "breaker", None)
        if breaker is not None and not breaker.is_open:
            breaker.trip(error)  # the rest of this request (the cache read) skips Redis too
    now = time.monotonic()
    if now - _last_warning >= WARN_EVERY_SECONDS:  # an outage under load must not flood the log
        _last_warning = now
        logger.warning("subscription rate limit counted in-process: Redis failed (%s)", type(error).__name__)


def start(request: HttpRequest) -> PendingHit:
    """Count this request: the INCR is sent now, its answer read by `verdict()`."""
    global _sha  # the per-process script SHA
    limit, period = settings.SUBSCRIPTION_RATE_LIMIT, settings.SUBSCRIPTION_RATE_PERIOD
    now = time.time()
    window = int(now // period)
    key = client_key(request)
    pending = PendingHit(window, key, limit, retry_after=max(1, int((window + 1) * period - now)))
    client_factory = getattr(getattr(cache, "client", None), "get_client", None)
    if client_factory is None:
        return pending
    try:
        client = client_factory(write=True)  # raises while the cache's breaker is open
        if _sha is None:
            _sha = str(client.script_load(_INCR_SCRIPT))
        name = cache.make_key(f"subrl:{window}:{key}")
        pool = client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_command("EVALSHA", _sha, 1, name, period + 1)
        except Exception:
            connection.disconnect()
            pool.release(connection)
            raise
        pending.connection, pending.pool = connection, pool
    except Exception as error:  # any Redis failure means "count locally"
        _redis_failed(error)
    return pending


def hit(request: HttpRequest) -> Verdict:
    return start(request).verdict()
