"""The tagged cache: django-redis plus tags, single-flight cache-aside and shared metrics.

`RedisTaggedCache` is a drop-in for `django_redis.cache.RedisCache`: every Django and
django-redis call keeps working. On top of it:

- `set(key, value, timeout, tags=[...])`, `set_many(data, timeout, tags=[...])`,
  `add(..., tags=[...])`, `get_or_set(key, fetch, timeout, tags=[...])`;
- `invalidate_tags(tags)`: one write per tag, whatever the number of keys that carry it.
  Every tag has a version stamp (a random token, Symfony TagAwareAdapter style); a tagged
  value is stored with the stamps of its tags and is a hit only while they all still
  match. A lost or evicted stamp can only turn a hit into a miss, never the other way.
- a tagged read is one round trip: a Lua script GETs the value and MGETs its stamps.
- `get_or_set` captures the stamps *before* it computes and stores the result only if
  they are unchanged (check-and-set in the same script), so a value computed while one
  of its tags was invalidated is never stored. Only one caller computes a missing key
  (a short SET NX PX lock); the others poll for the value, never longer than
  SINGLE_FLIGHT_WAIT, and compute themselves if it has not arrived by then.
- `invalidate_pattern(glob) -> int`: SCAN in batches of DJANGO_REDIS_SCAN_ITERSIZE with
  UNLINK per batch; memory stays bounded by one batch.
- `clear()` deletes only the keys under this cache's KEY_PREFIX (django-redis FLUSHDBs).
- When Redis fails (IGNORE_EXCEPTIONS), reads are misses and `get_or_set` computes from
  the database; the failure is logged once per FAILURE_LOG_INTERVAL with a count, and
  for RETRY_INTERVAL seconds after a connection failure the cache is not asked at all,
  so a hanging Redis costs a request at most one socket timeout per interval.

Keys under `_cache:` are this module's own (stamps, locks, metrics).
"""

from __future__ import annotations

import atexit
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django_redis.cache import RedisCache
from django_redis.client import DefaultClient
from django_redis.client.default import glob_escape
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from perf.cache.base import (
    _FAILED,
    DEFAULT_FAILURE_LOG_INTERVAL,
    DEFAULT_RETRY_INTERVAL,
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
from perf.cache.metrics import MetricsBuffer, RedisMetricsStore
from perf.cache.scripts import MAGIC, Scripts, strip_envelope

_breakers: dict[str, Breaker] = {}
_reporters: dict[str, FailureReporter] = {}
_buffers: dict[str, MetricsBuffer] = {}


@atexit.register
def _flush_metrics_at_exit() -> None:
    """A worker that stops sends what it counted since its last flush."""
    for buffer in list(_buffers.values()):
        buffer.flush()


class TaggedRedisClient(DefaultClient):
    """django-redis's client, made to skip Redis while the breaker is open.

    Raw reads through the plain django-redis paths (incr's fallback, incr_version) see a
    tagged value's payload.
    """

    def get_client(self, write: bool = True, tried: list[int] | None = None) -> Any:
        breaker = getattr(self._backend, "breaker", None)
        if breaker is not None:
            breaker.check()
        return super().get_client(write=write, tried=tried)

    def get_client_with_index(self, write: bool = True, tried: list[int] | None = None) -> Any:
        breaker = getattr(self._backend, "breaker", None)
        if breaker is not None:
            breaker.check()
        return super().get_client_with_index(write=write, tried=tried)

    def raw_client(self) -> Any:
        """The redis-py client, bypassing the breaker (for probes)."""
        return super().get_client(write=True)

    def decode(self, value: bytes | int | str) -> Any:
        if isinstance(value, bytes) and value.startswith(MAGIC):
            value = strip_envelope(value)
        return super().decode(value)


class RedisTaggedCache(TagCacheMixin, RedisCache):  # type: ignore[misc]
    """django-redis's RedisCache with tags, single flight, safe clear and shared metrics."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        options.setdefault("CLIENT_CLASS", "perf.cache.redis.TaggedRedisClient")
        params = {**params, "OPTIONS": options}
        super().__init__(server, params)
        if not issubclass(self._client_cls, TaggedRedisClient):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(
                "perf.cache.RedisTaggedCache needs CLIENT_CLASS perf.cache.redis.TaggedRedisClient"
            )
        self.single_flight_wait = float(options.get("SINGLE_FLIGHT_WAIT", DEFAULT_SINGLE_FLIGHT_WAIT))
        self.single_flight_lock_ttl = float(options.get("SINGLE_FLIGHT_LOCK_TTL", DEFAULT_SINGLE_FLIGHT_LOCK_TTL))
        identity = f"{server}|{self.key_prefix}"
        self.breaker = shared(
            _breakers, identity, lambda: Breaker(float(options.get("RETRY_INTERVAL", DEFAULT_RETRY_INTERVAL)))
        )
        interval = float(options.get("FAILURE_LOG_INTERVAL", DEFAULT_FAILURE_LOG_INTERVAL))
        # django-redis logs every ignored exception through self.logger.exception: route it
        # through a reporter that logs once per interval and trips the breaker.
        self.logger = shared(_reporters, identity, lambda: FailureReporter(self.breaker, interval))  # type: ignore[assignment]
        self._log_ignored_exceptions = True
        self._stamp_key_cache: dict[tuple[str, ...], tuple[list[str], tuple[bytes, ...], tuple[bytes, ...]]] = {}
        self.metrics = shared(
            _buffers,
            identity,
            lambda: MetricsBuffer(RedisMetricsStore(self._metrics_client, self.internal_key("m"))),
        )

    # -- keys --
    def internal_key(self, name: str) -> str:
        return str(self.make_key(INTERNAL + name, version=self.version))

    def stamp_key(self, tag: str) -> str:
        return self.internal_key(f"tag:{tag}")

    def _lock_key(self, key: str, version: int | None) -> str:
        return self.internal_key(f"lock:{self.make_key(key, version=version)}")

    def _metrics_client(self) -> Any:
        return self.client.get_client(write=True)

    def _guard(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConnectionInterrupted as error:
            return self._failed(error)

    def _failed(self, error: ConnectionInterrupted) -> Any:
        """Redis did not answer: re-raise (IGNORE_EXCEPTIONS off) or report it and carry on."""
        if not self._ignore_exceptions:
            raise error.__cause__ from None  # type: ignore[misc]
        self.logger.exception("Exception ignored")  # type: ignore[union-attr]
        return _FAILED

    def _scripts(self, client: Any) -> type[Scripts]:
        return Scripts.ensure(client)

    def _run(self, name: str, keys: list[str], args: list[Any], client: Any = None, write: bool = True) -> Any:
        if client is None:
            client = self.client.get_client(write=write)
        script = getattr(self._scripts(client), name)
        try:
            return script(keys=keys, args=args, client=client)
        except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            raise ConnectionInterrupted(connection=client) from error

    # -- primitives for the mixin --
    def _read(self, key: str, version: int | None, tags: tuple[str, ...], client: Any = None) -> ReadResult:
        """One round trip. With the tags known (get_or_set, get(tags=...)): one MGET of the
        value and its stamps, checked here. Without them, or when a stamp is missing or the
        value carries a tag the caller did not name: the Lua script, which reads the tags
        from the value itself (and creates missing stamps, for capture).
        """
        nkey = self.make_key(key, version=version)
        if not tags:
            return self._read_by_script(nkey, (), client)
        texts, encoded, frame = self._stamp_keys(tags)
        if client is None:
            client = self.client.get_client(write=False)
        try:
            reply = client.execute_command("MGET", nkey, *texts)
        except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            raise ConnectionInterrupted(connection=client) from error
        raw = reply[0]
        stamps = tuple(reply[1:])
        if None in stamps:
            return self._read_by_script(nkey, tags, client)
        if raw is None:
            return ReadResult(False, None, stamps)
        if not raw.startswith(MAGIC):
            return ReadResult(True, self._decode(self.client, raw), stamps)
        # The usual case: the value carries exactly these tags, in this order.
        header = b"".join([part for pair in zip(frame, stamps, strict=False) for part in pair]) + frame[-1]
        if raw.startswith(header):
            return ReadResult(True, self._decode(self.client, raw[len(header) :]), stamps)
        stop = raw.find(b"\n\n", len(MAGIC))
        if stop < 0:
            return ReadResult(False, None, stamps)
        lines = raw[len(MAGIC) : stop].split(b"\n")
        current = dict(zip(encoded, stamps, strict=True))
        for stored_key, stored_stamp in zip(lines[0::2], lines[1::2], strict=True):
            now = current.get(stored_key)
            if now is None:
                return self._read_by_script(nkey, tags, client)  # a tag the caller did not name
            if now != stored_stamp:
                return ReadResult(False, None, stamps)
        return ReadResult(True, self._decode(self.client, raw[stop + 2 :]), stamps)

    # Payloads reaching it are already stripped of their envelope.
    _decode = staticmethod(DefaultClient.decode)

    def _read_by_script(self, nkey: str, tags: tuple[str, ...], client: Any) -> ReadResult:
        reply = self._run(
            "read",
            [nkey, *(self.stamp_key(tag) for tag in tags)],
            [1, secrets.token_hex(8) if tags else "", STAMP_TTL_SECONDS * 1000],
            client,
        )
        hit = reply[0] == 1
        value = self.client.decode(reply[1]) if hit else None
        return ReadResult(hit, value, tuple(reply[2:]))

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
        expected: tuple[str, ...] = (),
        client: Any = None,
    ) -> int:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is not None and timeout <= 0:
            # Django's meaning of a timeout <= 0: do not keep the value.
            if mode != "add":
                self.client.delete_many(list(data), version=version, client=client)
            return 0
        keys = [self.make_key(key, version=version) for key in data]
        reply = self._run(
            "write",
            [*keys, *(self.stamp_key(tag) for tag in tags)],
            [
                len(keys),
                0 if timeout is None else _ms(timeout),
                secrets.token_hex(8),
                STAMP_TTL_SECONDS * 1000,
                mode,
                *(self.client.encode(value) for value in data.values()),
                *expected,
            ],
            client,
        )
        return int(reply)

    def _try_lock(self, key: str, version: int | None) -> str | None:
        token = secrets.token_hex(8)
        client = self.client.get_client(write=True)
        try:
            acquired = client.set(self._lock_key(key, version), token, nx=True, px=_ms(self.single_flight_lock_ttl))
        except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            raise ConnectionInterrupted(connection=client) from error
        return token if acquired else None

    def _unlock(self, key: str, version: int | None, token: str) -> None:
        self._run("unlock", [self._lock_key(key, version)], [token])

    # -- the Django cache API, tag-aware --
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
        tag_list = normalize_tags(tags) if tags else ()
        read = self._guard(self._read, key, version, tag_list, client)
        if read is _FAILED:
            return default
        self.metrics.record_read(
            key, hits=int(read.hit), misses=int(not read.hit), seconds=time.perf_counter() - started, tags=tag_list
        )
        return read.value if read.hit else default

    def has_key(self, key: str, version: int | None = None, client: Any = None) -> bool:
        read = self._guard(self._read, key, version, (), client)
        return read is not _FAILED and read.hit

    def set(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,  # type: ignore[assignment]
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
            result = self._guard(self._write, {key: value}, timeout, version, tag_list, mode=mode, client=client)
            result = result is not _FAILED and result == 1
        if result:
            self.metrics.record_write(key, count=1, seconds=time.perf_counter() - started, tags=tag_list)
        return bool(result)

    def add(
        self,
        key: str,
        value: Any,
        timeout: float | None = DEFAULT_TIMEOUT,  # type: ignore[assignment]
        version: int | None = None,
        client: Any = None,
        tags: Iterable[str] | None = None,
    ) -> bool:
        """Store only when there is no fresh value (an invalidated tagged value counts as none)."""
        tag_list = normalize_tags(tags)
        if timeout is not DEFAULT_TIMEOUT and timeout is not None and timeout <= 0:
            return not self.has_key(key, version=version, client=client)
        started = time.perf_counter()
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
        found: dict[str, Any] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            began = time.perf_counter()
            reply = self._guard(self._read_many, chunk, version, client)
            if reply is _FAILED:
                return found
            hits = 0
            for index, key in enumerate(chunk):
                if reply[2 * index] == 1:
                    found[key] = self.client.decode(reply[2 * index + 1])
                    hits += 1
            if chunk:
                self.metrics.record_read(
                    chunk[0], hits=hits, misses=len(chunk) - hits, seconds=time.perf_counter() - began
                )
        return found

    def _read_many(self, keys: list[str], version: int | None, client: Any) -> Any:
        nkeys = [self.make_key(key, version=version) for key in keys]
        return self._run("read", nkeys, [len(nkeys), "", STAMP_TTL_SECONDS * 1000], client)

    def set_many(
        self,
        data: Mapping[str, Any],
        timeout: float | None = DEFAULT_TIMEOUT,  # type: ignore[assignment]
        version: int | None = None,
        client: Any = None,
        tags: Iterable[str] | None = None,
    ) -> list[str]:
        """Store every pair in one round trip per 500; returns the keys that could not be stored."""
        tag_list = normalize_tags(tags)
        items = list(data.items())
        for start in range(0, len(items), 500):
            chunk = dict(items[start : start + 500])
            began = time.perf_counter()
            result = self._guard(self._write, chunk, timeout, version, tag_list, mode="now", client=client)
            if result is _FAILED:
                return [key for key, _ in items[start:]]
            if chunk:
                self.metrics.record_write(
                    next(iter(chunk)), count=len(chunk), seconds=time.perf_counter() - began, tags=tag_list
                )
        return []

    def invalidate_tags(self, tags: Iterable[str]) -> int:
        """Give each tag a new stamp: every value carrying it becomes a miss. One round trip."""
        tag_list = normalize_tags(tags)
        if not tag_list:
            return 0
        result = self._guard(self._invalidate, tag_list)
        if result is _FAILED:
            return 0
        self.metrics.add("invalidations", len(tag_list), tags=tag_list)
        return len(tag_list)

    def _invalidate(self, tags: tuple[str, ...]) -> None:
        client = self.client.get_client(write=True)
        token = secrets.token_hex(8)
        try:
            pipe = client.pipeline(transaction=False)
            for tag in tags:
                pipe.set(self.stamp_key(tag), token, px=STAMP_TTL_SECONDS * 1000)
            pipe.execute()
        except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            raise ConnectionInterrupted(connection=client) from error

    def _scan_batches(self, match: str) -> Iterator[list[bytes]]:
        client = self.client.get_client(write=True)
        cursor = 0
        try:
            while True:
                cursor, keys = client.scan(cursor=cursor, match=match, count=self._default_scan_itersize)
                if keys:
                    yield keys
                if cursor == 0:
                    return
        except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
            raise ConnectionInterrupted(connection=client) from error

    def _is_internal(self, raw_key: bytes) -> bool:
        return self.client.reverse_key(_text(raw_key)).startswith(INTERNAL)

    def _pattern_keys(self, glob: str, version: int | None) -> Iterator[list[bytes]]:
        if not isinstance(glob, str) or not glob or "\n" in glob:
            raise ValueError("a pattern is a non-empty glob such as users:list:*")
        match = self.client.make_pattern(glob, version=version)
        own = glob.startswith(INTERNAL)
        for batch in self._scan_batches(match):
            yield batch if own else [key for key in batch if not self._is_internal(key)]

    def count_pattern(self, glob: str, version: int | None = None) -> int:
        """How many keys `invalidate_pattern(glob)` would delete now (a SCAN, bounded memory).

        Unlike the cache calls, it raises when Redis does not answer: "0 keys match" would
        be a wrong answer to show before a deletion.
        """
        try:
            return sum(len(batch) for batch in self._pattern_keys(glob, version))
        except ConnectionInterrupted as error:
            raise error.__cause__ from None  # type: ignore[misc]

    def invalidate_pattern(self, glob: str, version: int | None = None) -> int:
        """Delete the keys matching `glob` (this cache's prefix and version added), batch by batch."""

        def run() -> int:
            client = self.client.get_client(write=True)
            deleted = 0
            for batch in self._pattern_keys(glob, version):
                if batch:
                    try:
                        deleted += int(client.unlink(*batch))
                    except (TimeoutError, RedisConnectionError, RedisTimeoutError) as error:
                        raise ConnectionInterrupted(connection=client) from error
            return deleted

        result = self._guard(run)
        deleted = 0 if result is _FAILED else int(result)
        if deleted:
            self.metrics.add("pattern_deleted", deleted)
        return deleted

    def clear(self) -> None:
        """Delete this cache's keys only (its KEY_PREFIX); other keys in the database stay."""

        def run() -> None:
            client = self.client.get_client(write=True)
            prefix = glob_escape(self.key_prefix)
            for batch in self._scan_batches(f"{prefix}:*" if prefix else "*"):
                client.unlink(*batch)

        self._guard(run)

    def redis_info(self) -> dict[str, Any]:
        """Redis's own figures, asked directly (bypassing the breaker); raises when unreachable."""
        client = self.client.raw_client()
        pipe = client.pipeline(transaction=False)
        pipe.info("memory")
        pipe.info("stats")
        pipe.info("server")
        pipe.dbsize()
        # INFO, not CONFIG GET: managed Redis services often disable CONFIG.
        memory, stats, server, dbsize = pipe.execute()
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
