"""Tags composed with whatever django-redis client the settings name.

RedisTaggedCache does not replace django-redis's client: it takes the CLIENT_CLASS the
settings name (DefaultClient, HerdClient, ShardClient, or a subclass of them) and mixes
one thing into it, at the place every client gets its redis-py connection
(`get_client`, `get_client_with_index`, ShardClient's `get_server`): the connection it
hands out is wrapped so that the few commands that read or conditionally write a value
see tags:

- GET and MGET return a tagged value's payload while its tags are fresh and nothing
  (a miss) once one of them was invalidated; other values are returned as they are, for
  the cost django-redis pays (tagged ones add one MGET of their stamps);
- EXISTS does not count a value whose tags were invalidated;
- SET NX treats such a value as absent.

Everything else the client sends (INCRBY, EXPIRE, SCAN, locks, sets, hashes, sorted sets,
pipelines) goes to redis-py untouched, so serializers, compressors, the herd client's
packing, sharding and connection handling stay django-redis's own. EXISTS and SET NX are
one EVALSHA each on the server the client chose. On a ShardClient the tag stamps are kept
on every shard (perf.cache.redis), so a value and the stamps it is checked against always
live on the same server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django_redis.client import DefaultClient, ShardClient

from perf.cache.base import STAMP_TTL_SECONDS
from perf.cache.scripts import MAGIC, Scripts

if TYPE_CHECKING:
    from perf.cache.redis import RedisTaggedCache

# One script call reads or counts at most this many keys: a script blocks Redis while it runs.
SCRIPT_BATCH = 500


class TagAwareRedis:
    """A redis-py client whose value reads and SET NX honour tag stamps; the rest passes through."""

    __slots__ = ("_redis",)

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    def __getattr__(self, name: str) -> Any:
        return getattr(self._redis, name)

    def __eq__(self, other: object) -> bool:
        target = other._redis if isinstance(other, TagAwareRedis) else other
        return bool(self._redis == target)

    def __hash__(self) -> int:
        return hash(self._redis)

    def __repr__(self) -> str:
        return f"TagAwareRedis({self._redis!r})"

    @property
    def redis(self) -> Any:
        """The wrapped redis-py client."""
        return self._redis

    def _read(self, keys: list[Any]) -> list[Any]:
        """GET/MGET as redis-py answers them, with tagged values checked against their stamps.

        A value stored without tags costs what it costs django-redis (one GET or MGET); only
        tagged values among the answers cost a second round trip, one MGET of their stamps.
        A stamp read after the value can only be newer: the check errs towards a miss.
        """
        values: list[Any] = self._redis.mget(keys) if len(keys) > 1 else [self._redis.get(keys[0])]
        envelopes = {
            index: parse_envelope(value)
            for index, value in enumerate(values)
            if isinstance(value, bytes) and value.startswith(MAGIC)
        }
        if not envelopes:
            return values
        stamp_keys = sorted({key for parsed in envelopes.values() if parsed for key, _ in parsed[0]})
        current = dict(zip(stamp_keys, self._redis.mget(stamp_keys), strict=True)) if stamp_keys else {}
        for index, parsed in envelopes.items():
            fresh = parsed is not None and all(current.get(key) == stamp for key, stamp in parsed[0])
            values[index] = parsed[1] if fresh and parsed is not None else None
        return values

    def get(self, name: Any) -> Any:
        return self._read([name])[0]

    def mget(self, keys: Any, *args: Any) -> list[Any]:
        names = [*keys, *args] if isinstance(keys, (list, tuple)) else [keys, *args]
        return self._read(names) if names else []

    def exists(self, *names: Any) -> int:
        scripts = Scripts.ensure(self._redis)
        found = 0
        for start in range(0, len(names), SCRIPT_BATCH):
            found += int(scripts.exists(keys=list(names[start : start + SCRIPT_BATCH]), client=self._redis))
        return found

    def set(self, name: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        plain_nx = (
            kwargs.get("nx")
            and not args
            and not any(kwargs.get(flag) for flag in ("ex", "xx", "keepttl", "get", "exat", "pxat"))
        )
        if not plain_nx:
            return self._redis.set(name, value, *args, **kwargs)
        px = kwargs.get("px")
        stored = Scripts.ensure(self._redis).write(
            keys=[name], args=[1, int(px or 0), "", STAMP_TTL_SECONDS * 1000, "add", value], client=self._redis
        )
        # redis-py answers SET NX with True, or None when the key was kept.
        return True if int(stored) == 1 else None


def parse_envelope(value: bytes) -> tuple[list[tuple[bytes, bytes]], bytes] | None:
    """The (stamp key, stamp) pairs and the payload of a tagged value; None when malformed."""
    stop = value.find(b"\n\n", len(MAGIC))
    if stop < 0:
        return None
    lines = value[len(MAGIC) : stop].split(b"\n")
    if len(lines) % 2:
        return None
    return list(zip(lines[0::2], lines[1::2], strict=True)), value[stop + 2 :]


def unwrap(client: Any) -> Any:
    """The redis-py client behind a TagAwareRedis (or the argument itself)."""
    return client.redis if isinstance(client, TagAwareRedis) else client


class TagAwareClientMixin:
    """Mixed into the configured client class: connections come out tag-aware, and not at
    all while the backend's circuit breaker (an option) is open."""

    _backend: RedisTaggedCache

    def get_client(self, write: bool = True, tried: list[int] | None = None) -> Any:
        self._backend.breaker_check()
        return TagAwareRedis(super().get_client(write=write, tried=tried))  # type: ignore[misc]

    def get_client_with_index(self, write: bool = True, tried: list[int] | None = None) -> tuple[Any, int]:
        self._backend.breaker_check()
        client, index = super().get_client_with_index(write=write, tried=tried)  # type: ignore[misc]
        return TagAwareRedis(client), index

    def get_server(self, key: Any) -> Any:
        self._backend.breaker_check()
        return TagAwareRedis(super().get_server(key))  # type: ignore[misc]

    # What the backend's own tag paths use: redis-py clients without the wrapper.
    def connection_for(self, key: Any) -> Any:
        """The redis-py client that holds `key` (an already made key): its shard, or the primary."""
        if isinstance(self, ShardClient):
            return super().get_server(key)  # type: ignore[misc]
        return super().get_client(write=True)  # type: ignore[misc]

    def every_connection(self) -> list[Any]:
        """One redis-py client per server that holds values: every shard, or the primary."""
        if isinstance(self, ShardClient):
            return list(self._serverdict.values())
        return [super().get_client(write=True)]  # type: ignore[misc]


_made: dict[type[Any], type[Any]] = {}


def tag_aware_client_class(base: type[Any]) -> type[Any]:
    """The configured client class with tags mixed in (a subclass: isinstance checks hold)."""
    if base in _made:
        return _made[base]
    if not (isinstance(base, type) and issubclass(base, DefaultClient)):
        raise ImproperlyConfigured(
            f"perf.cache.RedisTaggedCache composes with django-redis clients (DefaultClient, HerdClient, "
            f"ShardClient or subclasses of them); CLIENT_CLASS {base!r} is not one"
        )
    made = _made[base] = type(f"TagAware{base.__name__}", (TagAwareClientMixin, base), {"__module__": __name__})
    return made
