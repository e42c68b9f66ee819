"""Reads behind /perf/cache/: the shared metrics and Redis's own figures, as one overview."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from perf.cache.metrics import LATENCY_KINDS, OPS_WINDOW_SECONDS, Snapshot, percentile_us, read_snapshot
from perf.cache.tags import tagged_cache
from vpnadmin.errors import first_line

BUSIEST_TAGS = 10


@dataclass(frozen=True)
class RatioRow:
    name: str
    hits: int
    misses: int
    sets: int = 0
    invalidations: int = 0

    @property
    def reads(self) -> int:
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.reads if self.reads else None

    @property
    def hit_percent(self) -> float | None:
        return None if self.hit_ratio is None else self.hit_ratio * 100

    @property
    def activity(self) -> int:
        return self.reads + self.sets + self.invalidations


@dataclass(frozen=True)
class Latency:
    kind: str
    samples: int
    p50_us: float | None
    p95_us: float | None


@dataclass(frozen=True)
class RedisFigures:
    version: str
    used_memory: int
    maxmemory: int
    policy: str
    evicted_keys: int
    keys: int

    @property
    def memory_fraction(self) -> float | None:
        return self.used_memory / self.maxmemory if self.maxmemory else None

    @property
    def memory_percent(self) -> float | None:
        return None if self.memory_fraction is None else self.memory_fraction * 100

    @property
    def eviction_warning(self) -> str:
        """Why keys may never be evicted under this configuration ('' when they can)."""
        if self.policy == "noeviction":
            if self.maxmemory:
                return "Policy noeviction: when maxmemory is reached Redis refuses writes and nothing is ever evicted."
            return "Policy noeviction and no maxmemory: Redis grows until the machine runs out of memory."
        if not self.maxmemory:
            return "No maxmemory set: Redis never evicts and grows until the machine runs out of memory."
        if self.policy.startswith("volatile-"):
            return (
                f"Policy {self.policy} evicts only keys with a TTL: keys stored with timeout=None can never be evicted."
            )
        return ""


@dataclass
class CacheOverview:
    reachable: bool
    error: str = ""
    totals: dict[str, int] = field(default_factory=dict)
    hit_ratio: float | None = None
    ops_per_second: float | None = None
    latency: list[Latency] = field(default_factory=list)
    prefixes: list[RatioRow] = field(default_factory=list)
    busiest_tags: list[RatioRow] = field(default_factory=list)
    redis: RedisFigures | None = None

    @property
    def hit_percent(self) -> float | None:
        return None if self.hit_ratio is None else self.hit_ratio * 100


def _redis_figures() -> RedisFigures:
    info: dict[str, Any] = tagged_cache().redis_info()
    return RedisFigures(
        version=info["version"],
        used_memory=info["used_memory"],
        maxmemory=info["maxmemory"],
        policy=info["policy"],
        evicted_keys=info["evicted_keys"],
        keys=info["keys"],
    )


def _short_error(error: BaseException) -> str:
    return first_line(error.__cause__ or error)


def cache_overview() -> CacheOverview:
    """Everything the cache page shows. A Redis that does not answer is a state, not an error."""
    overview = CacheOverview(reachable=True)
    try:
        overview.redis = _redis_figures()
    except Exception as error:  # any failure to reach Redis is shown on the page
        overview.reachable = False
        overview.error = _short_error(error)
        return overview
    snapshot = read_snapshot()
    if snapshot is None:
        overview.reachable = False
        overview.error = overview.error or "the metrics store did not answer"
        return overview
    _fill_from_snapshot(overview, snapshot)
    return overview


def _fill_from_snapshot(overview: CacheOverview, snapshot: Snapshot) -> None:
    totals = snapshot.totals
    overview.totals = totals
    reads = totals["hits"] + totals["misses"]
    overview.hit_ratio = totals["hits"] / reads if reads else None
    # The last two complete windows: a rate over ten seconds, steady between polls.
    recent = snapshot.ops_windows[:2]
    overview.ops_per_second = sum(recent) / (OPS_WINDOW_SECONDS * len(recent)) if recent else None
    overview.latency = [
        Latency(
            kind,
            sum(snapshot.latency.get(kind, {}).values()),
            percentile_us(snapshot.latency.get(kind, {}), 0.50),
            percentile_us(snapshot.latency.get(kind, {}), 0.95),
        )
        for kind in LATENCY_KINDS
    ]
    overview.prefixes = sorted(
        (
            RatioRow(name, v.get("hits", 0), v.get("misses", 0), v.get("sets", 0))
            for name, v in snapshot.prefixes.items()
        ),
        key=lambda row: (-row.activity, row.name),
    )
    overview.busiest_tags = sorted(
        (
            RatioRow(name, v.get("hits", 0), v.get("misses", 0), v.get("sets", 0), v.get("invalidations", 0))
            for name, v in snapshot.tags.items()
        ),
        key=lambda row: (-row.activity, row.name),
    )[:BUSIEST_TAGS]
