"""What every tagged cache shares: tag names, the constants, single-flight get_or_set.

The Redis primitives it runs on (`_read`, `_write_checked`, `_try_lock`, `_unlock`,
`_guard`) are defined by `perf.cache.redis.RedisTaggedCache`.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django_redis.exceptions import ConnectionInterrupted

from perf.cache.metrics import MetricsBuffer

T = TypeVar("T")

INTERNAL = "_cache:"
TAG_PATTERN = re.compile(r"[A-Za-z0-9_.:@\-]{1,200}")
# Stamps outlive any value that refers to them; an expired stamp only costs misses.
STAMP_TTL_SECONDS = 30 * 24 * 3600
MAGIC = b"\x00TG1"
_MISSING = object()
_FAILED = object()

DEFAULT_SINGLE_FLIGHT_WAIT = 3.0
DEFAULT_SINGLE_FLIGHT_LOCK_TTL = 10.0


def normalize_tags(tags: Iterable[str] | None) -> tuple[str, ...]:
    """Validate tags; a clear ValueError for a bad one, duplicates dropped, order kept."""
    if tags is None:
        return ()
    if isinstance(tags, (str, bytes)):
        raise TypeError(f"tags must be a list of tag names, not one string: tags=[{tags!r}]")
    given = tuple(tags)
    try:
        return _normalized(given)
    except TypeError:  # an unhashable item: checked (and refused) below
        return _check_tags(given)


@functools.lru_cache(maxsize=4096)
def _normalized(tags: tuple[str, ...]) -> tuple[str, ...]:
    return _check_tags(tags)


def _check_tags(tags: tuple[Any, ...]) -> tuple[str, ...]:
    checked = []
    for tag in tags:
        if not isinstance(tag, str) or not TAG_PATTERN.fullmatch(tag):
            raise ValueError(f"invalid cache tag {tag!r}: use 1-200 letters, digits or _ . : @ -")
        checked.append(tag)
    return tuple(dict.fromkeys(checked))


def _ms(timeout: float) -> int:
    return max(int(timeout * 1000), 1)


_shared_lock = threading.Lock()


def shared(registry: dict[str, T], name: str, make: Callable[[], T]) -> T:
    """One object per Redis and prefix in a process, whichever backend instance asks first."""
    with _shared_lock:
        if name not in registry:
            registry[name] = make()
        return registry[name]


@dataclass
class ReadResult:
    hit: bool
    value: Any
    stamps: tuple[str | bytes, ...]


class TagCacheMixin:
    """get_or_set with single flight and tags, over a backend's primitive operations.

    A backend provides `_read`, `_write_checked`, `_try_lock`, `_unlock`, `_guard`.
    """

    metrics: MetricsBuffer
    single_flight_wait: float
    single_flight_lock_ttl: float
    default_timeout: float | None

    def get_or_set(
        self,
        key: str,
        default: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """The cached value, or `default()` computed once among all concurrent callers and stored.

        `default` may be a value or a callable (called only on a miss). With `tags`,
        the value is stored only if none of them was invalidated while it was computed.
        """
        tag_list = normalize_tags(tags)
        started = time.perf_counter()
        try:
            read = self._read(key, version, tag_list)
        except ConnectionInterrupted as error:
            read = self._failed(error)
        fetch: Callable[[], Any] = default if callable(default) else (lambda: default)
        if read is _FAILED:
            return fetch()
        self.metrics.record_read(
            key, hits=int(read.hit), misses=int(not read.hit), seconds=time.perf_counter() - started, tags=tag_list
        )
        if read.hit:
            return read.value
        deadline = time.monotonic() + self.single_flight_wait
        delay = 0.002
        while True:
            token = self._guard(self._try_lock, key, version)
            if token is _FAILED:
                return fetch()
            if token:
                try:
                    # The previous holder may have stored it between our read and our lock.
                    again = self._guard(self._read, key, version, tag_list)
                    if again is not _FAILED and again.hit:
                        self.metrics.add("stampedes_avoided")
                        return again.value
                    stamps = read.stamps if again is _FAILED else again.stamps
                    return self._fetch_and_store(key, fetch, timeout, version, tag_list, stamps)
                finally:
                    self._guard(self._unlock, key, version, token)
            if time.monotonic() + delay > deadline:
                # Waited long enough for the holder: compute here, bounded and still checked.
                return self._fetch_and_store(key, fetch, timeout, version, tag_list, read.stamps)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            read = self._guard(self._read, key, version, tag_list)
            if read is _FAILED:
                return fetch()
            if read.hit:
                self.metrics.add("stampedes_avoided")
                return read.value

    def _fetch_and_store(
        self,
        key: str,
        fetch: Callable[[], Any],
        timeout: float | None,
        version: int | None,
        tags: tuple[str, ...],
        stamps: tuple[str | bytes, ...],
    ) -> Any:
        value = fetch()
        self.metrics.add("fetches")
        started = time.perf_counter()
        stored = self._guard(self._write_checked, key, value, timeout, version, tags, stamps)
        if stored is True:
            self.metrics.record_write(key, count=1, seconds=time.perf_counter() - started, tags=tags)
        return value

    # The primitives the backend provides (documented here, defined on RedisTaggedCache).
    def _guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    def _failed(self, error: ConnectionInterrupted) -> Any:
        raise error

    def _read(self, key: str, version: int | None, tags: tuple[str, ...]) -> ReadResult:
        raise TypeError(f"{type(self).__name__} must define _read")

    def _write_checked(
        self,
        key: str,
        value: Any,
        timeout: float | None,
        version: int | None,
        tags: tuple[str, ...],
        stamps: tuple[str | bytes, ...],
    ) -> bool:
        raise TypeError(f"{type(self).__name__} must define _write_checked")

    def _try_lock(self, key: str, version: int | None) -> str | None:
        raise TypeError(f"{type(self).__name__} must define _try_lock")

    def _unlock(self, key: str, version: int | None, token: str) -> None:
        raise TypeError(f"{type(self).__name__} must define _unlock")
