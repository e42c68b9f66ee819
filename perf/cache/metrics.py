"""Cache metrics every worker shares, kept cheap.

Each process counts into an in-memory buffer (a lock and a few dict increments per
operation) and flushes it in one pipeline every FLUSH_EVERY_OPS operations or
FLUSH_EVERY_SECONDS, whichever comes first. So an operation costs no extra round trip,
and all workers' figures add up in Redis.

What is kept: totals (hits, misses, sets, invalidations, stampedes avoided, fetches, keys
deleted by pattern), the same per key prefix (the part of a key before its first ':'),
per tag (sorted sets trimmed to the busiest MAX_TAGS), a latency histogram per kind of
operation (read, write) in fixed buckets, and operations per 5-second window.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger("perf.cache")

TOTAL_NAMES = (
    "hits",
    "misses",
    "sets",
    "invalidations",
    "stampedes_avoided",
    "fetches",
    "pattern_deleted",
)
TAG_METRICS = ("hits", "misses", "sets", "invalidations")
PREFIX_METRICS = ("hits", "misses", "sets")
# Upper bounds of the latency buckets, in microseconds; the last bucket is open-ended.
LATENCY_BUCKETS_US = (50, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000, 10000, 50000, 250000)
LATENCY_KINDS = ("read", "write")
OPS_WINDOW_SECONDS = 5
OPS_WINDOWS_KEPT = 24
MAX_TAGS = 500
MAX_PREFIX_LENGTH = 40
FLUSH_EVERY_OPS = 5000
FLUSH_EVERY_SECONDS = 1.0
METRICS_TTL_SECONDS = 7 * 24 * 3600


def key_prefix_of(key: str) -> str:
    """The family a key belongs to: `users:list:1` -> `users`."""
    return str(key).split(":", 1)[0][:MAX_PREFIX_LENGTH] or "(empty)"


def latency_bucket(seconds: float) -> str:
    index = bisect_left(LATENCY_BUCKETS_US, seconds * 1_000_000)
    return str(LATENCY_BUCKETS_US[index]) if index < len(LATENCY_BUCKETS_US) else "inf"


@dataclass
class Batch:
    """What one process counted since its last flush."""

    totals: Counter[str] = field(default_factory=Counter)
    prefixes: Counter[str] = field(default_factory=Counter)  # "prefix|metric"
    tags: Counter[tuple[str, str]] = field(default_factory=Counter)  # (metric, tag)
    latency: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, bucket)
    ops: int = 0

    def __bool__(self) -> bool:
        return bool(self.ops or self.totals or self.tags)


@dataclass
class Snapshot:
    """Everything the shared store holds, summed over every worker."""

    totals: dict[str, int]
    prefixes: dict[str, dict[str, int]]
    tags: dict[str, dict[str, int]]
    latency: dict[str, dict[str, int]]
    ops_windows: list[int]


def empty_totals() -> dict[str, int]:
    return dict.fromkeys(TOTAL_NAMES, 0)


def percentile_us(histogram: dict[str, int], fraction: float) -> float | None:
    """The bucket bound under which `fraction` of the samples fall (None without samples)."""
    total = sum(histogram.values())
    if not total:
        return None
    wanted = total * fraction
    seen = 0
    for bound in (*[str(b) for b in LATENCY_BUCKETS_US], "inf"):
        seen += histogram.get(bound, 0)
        if seen >= wanted:
            return float("inf") if bound == "inf" else float(bound)
    return float("inf")


class MetricsStore(Protocol):
    """Where flushed batches go and snapshots come from."""

    def write(self, batch: Batch) -> None: ...

    def read(self) -> Snapshot: ...

    def reset(self) -> None: ...


class MetricsBuffer:
    """Per-process counters, flushed to a shared store in one write.

    Recording an operation appends one tuple to a list (no lock: list.append is atomic);
    the tuples are summed into a Batch when the buffer flushes.
    """

    def __init__(
        self,
        store: MetricsStore,
        *,
        flush_every_ops: int = FLUSH_EVERY_OPS,
        flush_every_seconds: float = FLUSH_EVERY_SECONDS,
    ) -> None:
        self.store = store
        self._flush_every_ops = flush_every_ops
        self._flush_every_seconds = flush_every_seconds
        self._lock = threading.Lock()
        self._events: list[tuple[Any, ...]] = []
        self._next_flush = time.monotonic() + flush_every_seconds

    def record_read(self, key: str, *, hits: int, misses: int, seconds: float, tags: tuple[str, ...] = ()) -> None:
        events = self._events
        events.append(("read", key, hits, misses, latency_bucket(seconds), tags))
        if len(events) >= self._flush_every_ops or time.monotonic() >= self._next_flush:
            self.flush()

    def record_write(self, key: str, *, count: int, seconds: float, tags: tuple[str, ...] = ()) -> None:
        events = self._events
        events.append(("write", key, count, 0, latency_bucket(seconds), tags))
        if len(events) >= self._flush_every_ops or time.monotonic() >= self._next_flush:
            self.flush()

    def add(self, name: str, count: int = 1, *, tags: tuple[str, ...] = ()) -> None:
        events = self._events
        events.append((name, "", count, 0, "", tags))
        if len(events) >= self._flush_every_ops or time.monotonic() >= self._next_flush:
            self.flush()

    @staticmethod
    def summarize(events: list[tuple[Any, ...]]) -> Batch:
        batch = Batch(ops=len(events))
        totals, prefixes, tag_counts, latency = batch.totals, batch.prefixes, batch.tags, batch.latency
        # Repeated reads of one key are identical events: count them first, in C.
        for (kind, key, first, second, bucket, tags), times in Counter(events).items():
            if kind == "read":
                latency["read", bucket] += times
                prefix = key_prefix_of(key)
                for metric, count in (("hits", first * times), ("misses", second * times)):
                    if count:
                        totals[metric] += count
                        prefixes[f"{prefix}|{metric}"] += count
                        for tag in tags:
                            tag_counts[metric, tag] += count
            elif kind == "write":
                latency["write", bucket] += times
                totals["sets"] += first * times
                prefixes[f"{key_prefix_of(key)}|sets"] += first * times
                for tag in tags:
                    tag_counts["sets", tag] += first * times
            else:
                totals[kind] += first * times
                if kind in TAG_METRICS:
                    for tag in tags:
                        tag_counts[kind, tag] += times
        return batch

    def flush(self) -> None:
        """Send what this process counted; on a store failure the counts are dropped, never retried."""
        with self._lock:
            events, self._events = self._events, []
            self._next_flush = time.monotonic() + self._flush_every_seconds
        if not events:
            return
        batch = self.summarize(events)
        try:
            self.store.write(batch)
        except Exception:  # a metrics write must never fail the cache operation it rides on
            logger.debug("cache metrics flush failed; %s operations not counted", batch.ops, exc_info=True)


class DisabledMetrics(MetricsBuffer):
    """What a cache without OPTIONS["METRICS"] records: nothing, and no keys in Redis."""

    def __init__(self) -> None:
        super().__init__(_NoStore())

    def record_read(self, key: str, *, hits: int, misses: int, seconds: float, tags: tuple[str, ...] = ()) -> None:
        return

    def record_write(self, key: str, *, count: int, seconds: float, tags: tuple[str, ...] = ()) -> None:
        return

    def add(self, name: str, count: int = 1, *, tags: tuple[str, ...] = ()) -> None:
        return


class _NoStore:
    def write(self, batch: Batch) -> None:
        return

    def read(self) -> Snapshot:
        raise CacheMetricsUnavailable('this cache keeps no metrics: set CACHES OPTIONS "METRICS": True')

    def reset(self) -> None:
        return


# --- Redis ---------------------------------------------------------------------------


class RedisMetricsStore:
    """Hashes and sorted sets under `<base>:...`, written in one pipeline per flush."""

    def __init__(self, get_client: Callable[[], Any], base: str) -> None:
        self._get_client = get_client
        self.base = base

    def _key(self, *parts: str) -> str:
        return ":".join((self.base, *parts))

    def write(self, batch: Batch) -> None:
        pipe = self._get_client().pipeline(transaction=False)
        written: set[str] = set()
        for name, count in batch.totals.items():
            pipe.hincrby(self._key("totals"), name, count)
            written.add(self._key("totals"))
        for field_name, count in batch.prefixes.items():
            pipe.hincrby(self._key("prefix"), field_name, count)
            written.add(self._key("prefix"))
        for (metric, tag), count in batch.tags.items():
            pipe.zincrby(self._key("tag", metric), count, tag)
            written.add(self._key("tag", metric))
        for key in sorted(k for k in written if ":tag:" in k[len(self.base) :]):
            # Keep the busiest tags only: a per-user tag must not grow the set without bound.
            pipe.zremrangebyrank(key, 0, -(MAX_TAGS + 1))
        for (kind, bucket), count in batch.latency.items():
            pipe.hincrby(self._key("lat", kind), bucket, count)
            written.add(self._key("lat", kind))
        for key in written:
            # Figures nobody updates for a week go away (a test run's prefix, a renamed one).
            pipe.expire(key, METRICS_TTL_SECONDS)
        if batch.ops:
            window = int(time.time() // OPS_WINDOW_SECONDS)
            ops_key = self._key("ops", str(window))
            pipe.incrby(ops_key, batch.ops)
            pipe.expire(ops_key, OPS_WINDOW_SECONDS * OPS_WINDOWS_KEPT)
        pipe.execute()

    def read(self) -> Snapshot:
        window = int(time.time() // OPS_WINDOW_SECONDS)
        windows = [str(window - offset) for offset in range(1, OPS_WINDOWS_KEPT)]
        pipe = self._get_client().pipeline(transaction=False)
        pipe.hgetall(self._key("totals"))
        pipe.hgetall(self._key("prefix"))
        for metric in TAG_METRICS:
            pipe.zrevrange(self._key("tag", metric), 0, MAX_TAGS - 1, withscores=True)
        for kind in LATENCY_KINDS:
            pipe.hgetall(self._key("lat", kind))
        pipe.mget([self._key("ops", w) for w in windows])
        replies = pipe.execute()
        totals = empty_totals()
        totals.update({_text(k): int(v) for k, v in replies[0].items()})
        prefixes: dict[str, dict[str, int]] = {}
        for raw_field, value in replies[1].items():
            prefix, _, metric = _text(raw_field).rpartition("|")
            prefixes.setdefault(prefix, dict.fromkeys(PREFIX_METRICS, 0))[metric] = int(value)
        tags: dict[str, dict[str, int]] = {}
        for metric, members in zip(TAG_METRICS, replies[2 : 2 + len(TAG_METRICS)], strict=True):
            for member, score in members:
                tags.setdefault(_text(member), dict.fromkeys(TAG_METRICS, 0))[metric] = int(score)
        offset = 2 + len(TAG_METRICS)
        latency = {
            kind: {_text(k): int(v) for k, v in replies[offset + i].items()} for i, kind in enumerate(LATENCY_KINDS)
        }
        ops_windows = [int(v) if v is not None else 0 for v in replies[-1]]
        return Snapshot(totals, prefixes, tags, latency, ops_windows)

    def reset(self) -> None:
        client = self._get_client()
        keys = list(client.scan_iter(match=self._key("*"), count=1000))
        if keys:
            client.delete(*keys)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --- what other code reads -----------------------------------------------------------


def _default_buffer() -> MetricsBuffer | None:
    from django.core.exceptions import ImproperlyConfigured

    from perf.cache.tags import tagged_cache

    try:
        return tagged_cache().metrics
    except ImproperlyConfigured:  # settings that name another backend: no metrics to read
        return None


class CacheMetricsUnavailable(RuntimeError):
    """The shared metrics could not be read (no tagged cache configured, or its store does not answer)."""


def read_totals() -> dict[str, int]:
    """Totals summed over every worker: hits, misses, sets, invalidations, stampedes_avoided, ...

    Raises CacheMetricsUnavailable when they cannot be read, so an exporter can say so
    instead of reporting zeros (which would look like a counter reset).
    """
    buffer = _default_buffer()
    if buffer is None:
        raise CacheMetricsUnavailable("the configured cache backend keeps no metrics (use perf.cache.RedisTaggedCache)")
    buffer.flush()
    try:
        return buffer.store.read().totals
    except CacheMetricsUnavailable:
        raise
    except Exception as error:
        raise CacheMetricsUnavailable(f"the cache metrics store did not answer: {type(error).__name__}") from error


def read_snapshot() -> Snapshot | None:
    """The full shared snapshot, or None when there is no store or it does not answer."""
    buffer = _default_buffer()
    if buffer is None:
        return None
    buffer.flush()
    try:
        return buffer.store.read()
    except Exception:
        logger.debug("cache metrics unreadable", exc_info=True)
        return None
