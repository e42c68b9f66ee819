"""The tagged cache: django-redis plus tags, single-flight cache-aside and shared metrics.

`RedisTaggedCache` is django-redis's `RedisCache` with tags on top: a project swaps
`BACKEND` and keeps everything else (CLIENT_CLASS, SERIALIZER, COMPRESSOR, connection
options, DJANGO_REDIS_* settings). Every call without tags is django-redis's own; the
client it configures gets tag-aware connections (perf.cache.client). On top of it:

- `set(key, value, timeout, tags=[...])`, `set_many(data, timeout, tags=[...])`,
  `add(..., tags=[...])`, `get_or_set(key, fetch, timeout, tags=[...])`;
- `invalidate_tags(tags)`: one write per tag, whatever the number of keys that carry it.
  Every tag has a version stamp (a random token, Symfony TagAwareAdapter style); a tagged
  value is stored with the stamps of its tags and is a hit only while they all still
  match. A lost or evicted stamp can only turn a hit into a miss, never the other way.
- a read of an untagged value is django-redis's own GET; a tagged read is one MGET of the
  value and its stamps when the caller names the tags, else a GET and one MGET of the
  stamps the value names.
- `get_or_set` captures the stamps *before* it computes and stores the result only if
  they are unchanged (check-and-set in the same script), so a value computed while one
  of its tags was invalidated is never stored. Only one caller computes a missing key
  (a short SET NX PX lock); the others poll for the value, never longer than
  SINGLE_FLIGHT_WAIT, and compute themselves if it has not arrived by then.
- `invalidate_pattern(glob) -> int`: SCAN in batches of DJANGO_REDIS_SCAN_ITERSIZE with
  UNLINK per batch; memory stays bounded by one batch.
- `clear()` deletes only the keys under this cache's KEY_PREFIX (django-redis FLUSHDBs
  the whole database, which other applications and test runs may share).
- `incr`/`decr`/`incr_version` refuse a tagged value with `TaggedValueError` (django-redis
  would rewrite it without its tags).

With the HerdClient, tagged values are protected by single flight rather than herd
packing. With the ShardClient, each tag's stamp is kept on every shard (invalidation
writes one per shard), so a value is always checked against stamps on its own server.

Options beyond django-redis's (CACHES[...]["OPTIONS"]), each off unless set:
`RETRY_INTERVAL` (after a connection failure, skip Redis this many seconds: a hanging
Redis then costs one socket timeout per interval), `FAILURE_LOG_INTERVAL` (log ignored
errors once per interval with a count, instead of django-redis's traceback per call),
`METRICS` (count hits, misses, sets, latency per key family and per tag in shared
counters under `_cache:m:`, for the cache page and /metrics), `SINGLE_FLIGHT_WAIT` (3 s),
`SINGLE_FLIGHT_LOCK_TTL` (10 s).

Keys under `_cache:` are this module's own (stamps, locks, metrics).
"""

from __future__ import annotations

import atexit
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.exceptions import ImproperlyConfigured
from django_redis.cache import CONNECTION_INTERRUPTED, RedisCache, omit_exception
from django_redis.client import HerdClient
from django_redis.client.default import glob_escape
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from perf.cache.base import (
    _FAILED,
    _MISSING,
    DEFAULT_SINGLE_FLIGHT_LOCK_TTL,
    DEFAULT_SINGLE_FLIGHT_WAIT,
    INTERNAL,
    STAMP_TTL_SECONDS,
    ReadResult,
    TagCacheMixin,
    _ms,
    normalize_tags,
    shared,
)
from perf.cache.breaker import Breaker, FailureReporter
from perf.cache.client import TagAwareClientMixin, tag_aware_client_class, unwrap
from perf.cache.metrics import DisabledMetrics, MetricsBuffer, RedisMetricsStore
from perf.cache.scripts import MAGIC, Scripts

_REDIS_ERRORS = (TimeoutError, RedisConnectionError, RedisTimeoutError)

_breakers: dict[str, Breaker] = {}
_reporters: dict[str, FailureReporter] = {}
_buffers: dict[str, MetricsBuffer] = {}


@atexit.register
def _flush_metrics_at_exit() -> None:
    """A worker that stops sends what it counted since its last flush."""
    for buffer in list(_buffers.values()):
        buffer.flush()


class TaggedValueError(ValueError):
    """An operation that would drop a value's tags (incr, decr, incr_version) was refused."""


def _optional_float(options: Mapping[str, Any], name: str) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"CACHES OPTIONS {name} must be a number of seconds, got {value!r}") from None
    if number <= 0:
        raise ImproperlyConfigured(f"CACHES OPTIONS {name} must be positive, got {value!r}")
    return number


class RedisTaggedCache(TagCacheMixin, RedisCache):
    """django-redis's RedisCache with tags, single flight, a prefix-only clear and shared metrics."""

    # Set by RedisCache.__init__; declared for the type checker, which cannot follow them there.
    _client_cls: type[Any]
    _log_ignored_exceptions: bool
    logger: Any

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        # OPTIONS is read in place, never copied: django-redis's client reads it later too
        # (CLOSE_CONNECTION), and settings changed at run time must reach both.
        super().__init__(server, params)
        configured: type[Any] = self._client_cls
        self._client_cls = tag_aware_client_class(configured)
        options: Mapping[str, Any] = params.get("OPTIONS", {})
        self.single_flight_wait = float(options.get("SINGLE_FLIGHT_WAIT", DEFAULT_SINGLE_FLIGHT_WAIT))
        self.single_flight_lock_ttl = float(options.get("SINGLE_FLIGHT_LOCK_TTL", DEFAULT_SINGLE_FLIGHT_LOCK_TTL))
        identity = f"{server}|{self.key_prefix}"
        retry_interval = _optional_float(options, "RETRY_INTERVAL")
        log_interval = _optional_float(options, "FAILURE_LOG_INTERVAL")
        self.breaker: Breaker | None = None
        if retry_interval is not None:
            self.breaker = shared(_breakers, identity, lambda: Breaker(retry_interval))
        if retry_interval is not None or log_interval is not None:
            # django-redis reports every ignored error to self.logger.exception when
            # _log_ignored_exceptions is on: the reporter takes those calls (and passes them
            # to django-redis's logger unless an interval was asked for).
            passthrough: logging.Logger | None = self.logger if self._log_ignored_exceptions else None
            breaker = self.breaker
            self.logger = shared(_reporters, identity, lambda: FailureReporter(breaker, log_interval, passthrough))
            self._log_ignored_exceptions = True
        self._stamp_key_cache: dict[tuple[str, ...], tuple[list[str], tuple[bytes, ...], tuple[bytes, ...]]] = {}
        # Shared counters are keys under the prefix: only when asked for, so a project that
        # swaps BACKEND finds no keys it did not write.
        self.metrics: MetricsBuffer = DisabledMetrics()
        if options.get("METRICS"):
            self.metrics = shared(
                _buffers,
                identity,
                lambda: MetricsBuffer(RedisMetricsStore(self._metrics_client, self.internal_key("m"))),
            )

    # -- the client and its connections --
    @property
    def tag_client(self) -> TagAwareClientMixin:
        """The configured client (with tags mixed in), typed for the tag paths."""
        client: TagAwareClientMixin = self.client
        return client

    def breaker_check(self) -> None:
        """Raise ConnectionInterrupted instead of asking Redis while the breaker is open."""
        if self.breaker is not None:
            self.breaker.check()

    def _connection(self, nkey: Any, client: Any = None) -> Any:
        """The redis-py client holding this (made) key: the caller's, else its server's."""
        if client is not None:
            return unwrap(client)
        self.breaker_check()
        return self.tag_client.connection_for(nkey)

    def _every_connection(self) -> list[Any]:
        self.breaker_check()
        return self.tag_client.every_connection()

    def raw_client(self, key: str | None = None) -> Any:
        """A redis-py client of this cache (the server holding `key`), bypassing the breaker."""
        return self.tag_client.connection_for(self.internal_key("m") if key is None else self.make_key(key))

    # -- keys --
    def internal_key(self, name: str) -> str:
        return str(self.make_key(INTERNAL + name, version=self.version))

    def stamp_key(self, tag: str) -> str:
        return self.internal_key(f"tag:{tag}")

    def _lock_key(self, key: str, version: int | None) -> str:
        return self.internal_key(f"lock:{self.make_key(key, version=version)}")

    def _metrics_client(self) -> Any:
        return self._connection(self.internal_key("m"))

    # -- failures --
    def _guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConnectionInterrupted as error:
            return self._failed(error)

    def _failed(self, error: ConnectionInterrupted) -> Any:
        """Redis did not answer: what django-redis's omit_exception does, for the tag paths."""
        if not self._ignore_exceptions:
            raise error.__cause__ from None
        if self._log_ignored_exceptions and self.logger is not None:
            self.logger.exception("Exception ignored")
        return _FAILED

    def _run(self, name: str, keys: list[str], args: list[Any], connection: Any) -> Any:
        script = getattr(Scripts.ensure(connection), name)
        try:
            return script(keys=keys, args=args, client=connection)
        except _REDIS_ERRORS as error:
            raise ConnectionInterrupted(connection=connection) from error

    def _decode_plain(self, raw: bytes) -> tuple[bool, Any]:
        """(hit, value) of a value stored without tags, as the configured client reads it."""
        value = self.client.decode(raw)
        if isinstance(self.client, HerdClient):
            value, refresh = self.client._unpack(value)  # the herd client's own read rule
            if refresh:
                return False, None
        return True, value

    # -- primitives for the single-flight mixin --
    def _read(self, key: str, version: int | None, tags: tuple[str, ...], client: Any = None) -> ReadResult:
        """One round trip. With the tags known (get_or_set, get(tags=...)): one MGET of the
        value and its stamps, checked here. Without them, or when a stamp is missing or the
        value carries a tag the caller did not name: the Lua script, which reads the tags
        from the value itself (and creates missing stamps, for capture).
        """
        nkey = self.make_key(key, version=version)
        connection = self._connection(nkey, client)
        if not tags:
            return self._read_by_script(nkey, (), connection)
        texts, encoded, frame = self._stamp_keys(tags)
        try:
            reply = connection.execute_command("MGET", nkey, *texts)
        except _REDIS_ERRORS as error:
            raise ConnectionInterrupted(connection=connection) from error
        raw = reply[0]
        stamps = tuple(reply[1:])
        if None in stamps:
            return self._read_by_script(nkey, tags, connection)
        if raw is None:
            return ReadResult(False, None, stamps)
        if not raw.startswith(MAGIC):
            hit, value = self._decode_plain(raw)
            return ReadResult(hit, value, stamps)
        # The usual case: the value carries exactly these tags, in this order.
        header = b"".join([part for pair in zip(frame, stamps, strict=False) for part in pair]) + frame[-1]
        if raw.startswith(header):
            return ReadResult(True, self.client.decode(raw[len(header) :]), stamps)
        stop = raw.find(b"\n\n", len(MAGIC))
        if stop < 0:
            return ReadResult(False, None, stamps)
        lines = raw[len(MAGIC) : stop].split(b"\n")
        current = dict(zip(encoded, stamps, strict=True))
        for stored_key, stored_stamp in zip(lines[0::2], lines[1::2], strict=True):
            now = current.get(stored_key)
            if now is None:
                return self._read_by_script(nkey, tags, connection)  # a tag the caller did not name
            if now != stored_stamp:
                return ReadResult(False, None, stamps)
        return ReadResult(True, self.client.decode(raw[stop + 2 :]), stamps)

    def _read_by_script(self, nkey: str, tags: tuple[str, ...], connection: Any) -> ReadResult:
        reply = self._run(
            "read",
            [nkey, *(self.stamp_key(tag) for tag in tags)],
            [1, secrets.token_hex(8) if tags else "", STAMP_TTL_SECONDS * 1000],
            connection,
        )
        stamps = tuple(reply[2:])
        if reply[0] == 1:
            return ReadResult(True, self.client.decode(reply[1]), stamps)
        if reply[0] == 3:
            hit, value = self._decode_plain(reply[1])
            return ReadResult(hit, value, stamps)
        return ReadResult(False, None, stamps)

    def _stamp_keys(self, tags: tuple[str, ...]) -> tuple[list[str], tuple[bytes, ...], tuple[bytes, ...]]:
        """The stamp keys of these tags (text, bytes) and the envelope header around their
        stamps, remembered: the hot read needs them on every call."""
        cached = self._stamp_key_cache.get(tags)
        if cached is None:
            if len(self._stamp_key_cache) > 10_000:
                self._stamp_key_cache.clear()
            texts = [self.stamp_key(tag) for tag in tags]
            encoded = tuple(text.encode() for text in texts)
            # MAGIC key1 \n <stamp1> \n key2 \n <stamp2> \n ... \n: the parts between the stamps.
            frame = (MAGIC + encoded[0] + b"\n", *(b"\n" + key + b"\n" for key in encoded[1:]), b"\n\n")
            cached = self._stamp_key_cache[tags] = (texts, encoded, frame)
        return cached

    def _write_checked(
        self,
        key: str,
        value: Any,
        timeout: float | None,
        version: int | None,
        tags: tuple[str, ...],
        stamps: tuple[str | bytes, ...],
    ) -> bool:
        return self._write({key: value}, timeout, version, tags, mode="cas", expected=stamps) == 1

    def _write(
        self,
        data: Mapping[str, Any],
        timeout: float | None,
        version: int | None,
        tags: tuple[str, ...],
        *,
        mode: str,
        expected: tuple[str | bytes, ...] = (),
        client: Any = None,
    ) -> int:
        """Store `data` with the current stamps of `tags`, one script call per server."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is not None and timeout <= 0:
            # Django's meaning of a timeout <= 0: do not keep the value.
            if mode != "add":
                self.client.delete_many(list(data), version=version)
            return 0
        per_connection: dict[Any, list[tuple[str, Any]]] = defaultdict(list)
        for key, value in data.items():
            nkey = self.make_key(key, version=version)
            per_connection[self._connection(nkey, client)].append((nkey, value))
        stored = 0
        for connection, items in per_connection.items():
            reply = self._run(
                "write",
                [*(nkey for nkey, _ in items), *(self.stamp_key(tag) for tag in tags)],
                [
                    len(items),
                    0 if timeout is None else _ms(timeout),
                    secrets.token_hex(8),
                    STAMP_TTL_SECONDS * 1000,
                    mode,
                    *(self.client.encode(value) for _, value in items),
                    *expected,
                ],
                connection,
            )
            stored += int(reply) if int(reply) > 0 else 0
        return stored

    def _try_lock(self, key: str, version: int | None) -> str | None:
        token = secrets.token_hex(8)
        connection = self._connection(self.make_key(key, version=version))
        try:
            acquired = connection.set(self._lock_key(key, version), token, nx=True, px=_ms(self.single_flight_lock_ttl))
        except _REDIS_ERRORS as error:
            raise ConnectionInterrupted(connection=connection) from error
        return token if acquired else None

    def _unlock(self, key: str, version: int | None, token: str) -> None:
        connection = self._connection(self.make_key(key, version=version))
        self._run("unlock", [self._lock_key(key, version)], [token], connection)

    # -- the Django cache API: django-redis's own without tags, tag-aware with them --
    def get(
        self,
        key: str,
        default: Any = None,
        version: int | None = None,
        client: Any = None,
        tags: Iterable[str] | None = None,
    ) -> Any:
        """The fresh value or `default`. Naming the value's `tags` lets the read be one MGET."""
        started = time.perf_counter()
        if tags:
            tag_list = normalize_tags(tags)
            read = self._guard(self._read, key, version, tag_list, client)
            if read is _FAILED:
                return default
            hit, value = read.hit, read.value
        else:
            tag_list = ()
            value = self._get(key, _MISSING, version, client)
            if value is CONNECTION_INTERRUPTED:
                return default
            hit = value is not _MISSING
        self.metrics.record_read(
            key, hits=int(hit), misses=int(not hit), seconds=time.perf_counter() - started, tags=tag_list
        )
        return value if hit else default

    def set(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
        nx: bool = False,
        xx: bool = False,
        tags: Iterable[str] | None = None,
    ) -> bool:
        tag_list = normalize_tags(tags)
        started = time.perf_counter()
        if not tag_list:
            result = super().set(key, value, timeout, version=version, client=client, nx=nx, xx=xx)
        else:
            if xx:
                raise ValueError("set(..., xx=True) cannot carry tags")
            mode = "add" if nx else "now"
            written = self._guard(self._write, {key: value}, timeout, version, tag_list, mode=mode, client=client)
            result = written is not _FAILED and written == 1
        if result:
            self.metrics.record_write(key, count=1, seconds=time.perf_counter() - started, tags=tag_list)
        return bool(result)

    def add(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store only when there is no fresh value (an invalidated tagged value counts as none)."""
        tag_list = normalize_tags(tags)
        started = time.perf_counter()
        if not tag_list:
            added = bool(super().add(key, value, timeout, version=version, client=client))
        else:
            if timeout is not DEFAULT_TIMEOUT and timeout is not None and timeout <= 0:
                return not self.has_key(key, version=version, client=client)
            result = self._guard(self._write, {key: value}, timeout, version, tag_list, mode="add", client=client)
            added = result is not _FAILED and result == 1
        if added:
            self.metrics.record_write(key, count=1, seconds=time.perf_counter() - started, tags=tag_list)
        return added

    def get_many(
        self, keys: Iterable[str], version: int | None = None, client: Any = None, tags: Iterable[str] | None = None
    ) -> dict[str, Any]:
        """The fresh values among `keys`. `tags` is accepted for symmetry: each value carries its own."""
        normalize_tags(tags)
        keys = list(keys)
        started = time.perf_counter()
        found: dict[str, Any] = super().get_many(keys, version=version, client=client)
        if keys:
            self.metrics.record_read(
                keys[0], hits=len(found), misses=len(keys) - len(found), seconds=time.perf_counter() - started
            )
        return found

    def set_many(
        self,
        data: Mapping[str, Any],
        timeout: float | None = DEFAULT_TIMEOUT,
        version: int | None = None,
        client: Any = None,
        tags: Iterable[str] | None = None,
    ) -> list[str]:
        """Store every pair; returns the keys that could not be stored (Django's contract).
        With tags: one round trip per 500 keys per server."""
        tag_list = normalize_tags(tags)
        started = time.perf_counter()
        if not tag_list:
            # django-redis's own write; Django's contract for the answer (the keys not stored).
            failed = self._guard(self.client.set_many, data, timeout, version=version, client=client)
            if failed is _FAILED:
                return list(data)
            if data:
                self.metrics.record_write(next(iter(data)), count=len(data), seconds=time.perf_counter() - started)
            return []
        items = list(data.items())
        for start in range(0, len(items), 500):
            chunk = dict(items[start : start + 500])
            began = time.perf_counter()
            written = self._guard(self._write, chunk, timeout, version, tag_list, mode="now", client=client)
            if written is _FAILED:
                return [key for key, _ in items[start:]]
            if chunk:
                self.metrics.record_write(
                    next(iter(chunk)), count=len(chunk), seconds=time.perf_counter() - began, tags=tag_list
                )
        return []

    # -- operations that would drop tags --
    def _refuse_tagged(self, operation: str, key: str, version: int | None, client: Any) -> None:
        nkey = self.make_key(key, version=version)
        connection = self._connection(nkey, client)
        try:
            head = connection.getrange(nkey, 0, len(MAGIC) - 1)
        except ResponseError:
            return  # not a string: django-redis answers for it
        except _REDIS_ERRORS as error:
            raise ConnectionInterrupted(connection=connection) from error
        if head == MAGIC:
            raise TaggedValueError(
                f"{operation} on {key!r} refused: it carries tags, and {operation} would store it without "
                "them. Read it, change it and set it again with its tags."
            )

    @omit_exception
    def incr(self, key: str, delta: int = 1, version: int | None = None, client: Any = None, **kwargs: Any) -> Any:
        self._refuse_tagged("incr", key, version, client)
        return self.client.incr(key, delta=delta, version=version, client=client, **kwargs)

    @omit_exception
    def decr(self, key: str, delta: int = 1, version: int | None = None, client: Any = None, **kwargs: Any) -> Any:
        self._refuse_tagged("decr", key, version, client)
        return self.client.decr(key, delta=delta, version=version, client=client, **kwargs)

    @omit_exception
    def incr_version(self, key: str, delta: int = 1, version: int | None = None, client: Any = None) -> Any:
        self._refuse_tagged("incr_version", key, version, client)
        return self.client.incr_version(key, delta=delta, version=version, client=client)

    # -- tags and patterns --
    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Give each tag a new stamp: every value carrying it becomes a miss. One round trip
        (per shard, with the ShardClient)."""
        tag_list = normalize_tags(tags)
        if not tag_list:
            return 0
        result = self._guard(self._invalidate, tag_list)
        if result is _FAILED:
            return 0
        self.metrics.add("invalidations", len(tag_list), tags=tag_list)
        return len(tag_list)

    def _invalidate(self, tags: tuple[str, ...]) -> None:
        token = secrets.token_hex(8)
        for connection in self._every_connection():
            try:
                pipe = connection.pipeline(transaction=False)
                for tag in tags:
                    pipe.set(self.stamp_key(tag), token, px=STAMP_TTL_SECONDS * 1000)
                pipe.execute()
            except _REDIS_ERRORS as error:
                raise ConnectionInterrupted(connection=connection) from error

    def _scan_batches(self, match: str) -> Iterator[tuple[Any, list[bytes]]]:
        for connection in self._every_connection():
            cursor = 0
            try:
                while True:
                    cursor, keys = connection.scan(cursor=cursor, match=match, count=self._default_scan_itersize)
                    if keys:
                        yield connection, keys
                    if cursor == 0:
                        break
            except _REDIS_ERRORS as error:
                raise ConnectionInterrupted(connection=connection) from error

    def _is_internal(self, raw_key: bytes) -> bool:
        return self.client.reverse_key(_text(raw_key)).startswith(INTERNAL)

    def _pattern_keys(self, glob: str, version: int | None) -> Iterator[tuple[Any, list[bytes]]]:
        if not isinstance(glob, str) or not glob or "\n" in glob:
            raise ValueError("a pattern is a non-empty glob such as users:list:*")
        match = self.client.make_pattern(glob, version=version)
        own = glob.startswith(INTERNAL)
        for connection, batch in self._scan_batches(match):
            yield connection, (batch if own else [key for key in batch if not self._is_internal(key)])

    def count_pattern(self, glob: str, version: int | None = None) -> int:
        """How many keys `invalidate_pattern(glob)` would delete now (a SCAN, bounded memory).

        Unlike the cache calls, it raises when Redis does not answer: "0 keys match" would
        be a wrong answer to show before a deletion.
        """
        try:
            return sum(len(batch) for _, batch in self._pattern_keys(glob, version))
        except ConnectionInterrupted as error:
            raise error.__cause__ from None

    def invalidate_pattern(self, glob: str, version: int | None = None) -> int:
        """Delete the keys matching `glob` (this cache's prefix and version added), batch by batch."""

        def run() -> int:
            deleted = 0
            for connection, batch in self._pattern_keys(glob, version):
                if batch:
                    try:
                        deleted += int(connection.unlink(*batch))
                    except _REDIS_ERRORS as error:
                        raise ConnectionInterrupted(connection=connection) from error
            return deleted

        result = self._guard(run)
        deleted = 0 if result is _FAILED else int(result)
        if deleted:
            self.metrics.add("pattern_deleted", deleted)
        return deleted

    def clear(self) -> None:
        """Delete this cache's keys only (its KEY_PREFIX); other keys in the database stay."""

        def run() -> None:
            prefix = glob_escape(self.key_prefix)
            for connection, batch in self._scan_batches(f"{prefix}:*" if prefix else "*"):
                try:
                    connection.unlink(*batch)
                except _REDIS_ERRORS as error:
                    raise ConnectionInterrupted(connection=connection) from error

        self._guard(run)

    def redis_info(self) -> dict[str, Any]:
        """Redis's own figures (the server holding the metrics), asked directly, bypassing
        the breaker; raises when unreachable."""
        pipe = self.raw_client().pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("stats")
        pipe.info("server")
        pipe.dbsize()
        # INFO, not CONFIG GET: managed Redis services often disable CONFIG.
        memory, stats, server, dbsize = pipe.execute()
        if self.breaker is not None:
            self.breaker.reset()
        return {
            "version": server.get("redis_version", ""),
            "used_memory": int(memory.get("used_memory", 0)),
            "maxmemory": int(memory.get("maxmemory", 0) or 0),
            "policy": str(memory.get("maxmemory_policy", "")),
            "evicted_keys": int(stats.get("evicted_keys", 0)),
            "expired_keys": int(stats.get("expired_keys", 0)),
            "keys": int(dbsize),
        }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
