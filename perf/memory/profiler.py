"""The memory profiler's measurement: what one process measures about itself (and what
`profilememory` can measure about another), and the typed PROFILER settings.

Cheap figures are always on: RSS and USS from psutil, the garbage collector's counts
and collections per generation, and (every few samples, since `gc.get_objects()` walks
the whole heap) object counts of the most common types. tracemalloc slows allocation
heavy code about 3x, so it runs only inside a window an operator opens on the memory
page (perf.memory.sampler follows it in every worker).
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import tracemalloc
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

import psutil
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

MB = 1024 * 1024


# --- configuration -------------------------------------------------------------------


@dataclass(frozen=True)
class ProfilerConfig:
    """Every knob of the profiler; read from settings.PROFILER (see README)."""

    # The worker sampler: on by default, RSS/USS/gc at most every `interval_s` seconds,
    # measured at the end of a request (perf.memory.sampler).
    sampler: bool = True
    interval_s: float = 30.0
    # USS reads /proc/<pid>/smaps (~0.3 ms on a Django worker): every Nth sample.
    uss_every: int = 1
    # Counting objects by type walks the heap (~5 ms per 75k objects): every Nth sample.
    types_every: int = 2
    top_types: int = 15
    # tracemalloc: always on (costly, not recommended), otherwise only inside a window.
    tracemalloc: bool = False
    tracemalloc_frames: int = 1
    tracemalloc_window_minutes: int = 15
    top_sites: int = 10
    # Leak detection: growth of at least `leak_threshold_mb` MB per hour is a leak; the
    # trend is fitted over the last `window` snapshots once there are `min_snapshots`.
    leak_threshold_mb: float = 20.0
    window: int = 30
    min_snapshots: int = 8
    min_r2: float = 0.8
    # The fitted growth over the window must stand clear of the noise around the line.
    noise_factor: float = 4.0
    min_growth_mb: float = 1.0
    # A process grows while it starts (imports, caches filling, arenas): snapshots from
    # its first `warmup_s` seconds stay out of the trend.
    warmup_s: float = 120.0
    # The store is bounded: snapshots kept per process, processes kept in all.
    max_snapshots: int = 240
    max_processes: int = 64
    # How often a worker looks at the tracemalloc/GC flags between samples (at the end
    # of a request too, never from a thread of its own).
    control_poll_s: float = 5.0

    def __post_init__(self) -> None:
        positive = {
            "interval_s": self.interval_s,
            "uss_every": self.uss_every,
            "types_every": self.types_every,
            "top_types": self.top_types,
            "tracemalloc_frames": self.tracemalloc_frames,
            "tracemalloc_window_minutes": self.tracemalloc_window_minutes,
            "top_sites": self.top_sites,
            "leak_threshold_mb": self.leak_threshold_mb,
            "window": self.window,
            "max_snapshots": self.max_snapshots,
            "max_processes": self.max_processes,
            "control_poll_s": self.control_poll_s,
        }
        for name, value in positive.items():
            if value <= 0:
                raise ImproperlyConfigured(f"PROFILER[{name!r}] must be positive, got {value!r}")
        if self.warmup_s < 0:
            raise ImproperlyConfigured(f"PROFILER['warmup_s'] must be 0 or more, got {self.warmup_s}")
        if self.min_snapshots < 3:
            raise ImproperlyConfigured(f"PROFILER['min_snapshots'] must be at least 3, got {self.min_snapshots}")
        if self.window < self.min_snapshots:
            raise ImproperlyConfigured(
                f"PROFILER['window'] ({self.window}) must be at least min_snapshots ({self.min_snapshots})"
            )
        if not 0 < self.min_r2 < 1:
            raise ImproperlyConfigured(f"PROFILER['min_r2'] must be between 0 and 1, got {self.min_r2}")
        if self.max_snapshots < self.window:
            raise ImproperlyConfigured(
                f"PROFILER['max_snapshots'] ({self.max_snapshots}) must hold the window ({self.window})"
            )

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ProfilerConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ImproperlyConfigured(f"PROFILER has unknown keys: {', '.join(unknown)}")
        converted: dict[str, Any] = {}
        for name, value in values.items():
            default = getattr(cls, name)
            kind = type(default)
            if kind is bool:
                if not isinstance(value, bool):
                    raise ImproperlyConfigured(f"PROFILER[{name!r}] must be a boolean, got {value!r}")
                converted[name] = value
                continue
            try:
                converted[name] = kind(value)
            except (TypeError, ValueError):
                raise ImproperlyConfigured(f"PROFILER[{name!r}] must be a {kind.__name__}, got {value!r}") from None
        return cls(**converted)

    @classmethod
    def from_settings(cls) -> ProfilerConfig:
        from django.conf import settings

        return cls.from_mapping(dict(getattr(settings, "PROFILER", {})))


# --- snapshots -----------------------------------------------------------------------


@dataclass
class Snapshot:
    """One process's memory at one moment. Sizes in bytes; None when not measured."""

    taken_at: datetime
    pid: int
    rss: int
    uss: int | None = None
    heap_current: int | None = None
    heap_peak: int | None = None
    gc_counts: list[int] = field(default_factory=list)
    gc_collections: list[int] = field(default_factory=list)
    gc_collected: list[int] = field(default_factory=list)
    object_total: int | None = None
    types: dict[str, int] | None = None
    sites: list[dict[str, Any]] | None = None
    site_growth: list[dict[str, Any]] | None = None

    @property
    def rss_mb(self) -> float:
        return self.rss / MB

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        return data


def process_identity(pid: int | None = None) -> tuple[str, int, datetime, str]:
    """(host, pid, start time, short command line): a pid alone is reused by the kernel."""
    proc = psutil.Process(pid)
    with proc.oneshot():
        started = datetime.fromtimestamp(proc.create_time(), tz=UTC)
        # The name only: a command line can carry passwords or tokens.
        label = proc.name()[:200]
    return socket.gethostname()[:255], proc.pid, started, label


def count_types(top: int) -> tuple[int, dict[str, int]]:
    """Objects tracked by the collector, and the `top` most common types by count."""
    objects = gc.get_objects()
    counts = Counter(map(type, objects))
    total = len(objects)
    del objects
    return total, {_type_name(kind): n for kind, n in counts.most_common(top)}


def _type_name(kind: type) -> str:
    module = getattr(kind, "__module__", "builtins")
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _site(stat: Any) -> str:
    frame = stat.traceback[0]
    return f"{frame.filename}:{frame.lineno}"


def external_snapshot(proc: psutil.Process, *, with_uss: bool = True) -> Snapshot:
    """What one process can measure about another: RSS and USS (raises psutil errors)."""
    with proc.oneshot():
        if with_uss:
            info = proc.memory_full_info()
            rss, uss = int(info.rss), int(info.uss)
        else:
            rss, uss = int(proc.memory_info().rss), None
    return Snapshot(taken_at=datetime.now(tz=UTC), pid=proc.pid, rss=rss, uss=uss)


class MemoryProfiler:
    """Snapshots of the current process, a bounded series of them, and its leak findings."""

    def __init__(self, config: ProfilerConfig | None = None) -> None:
        self.config = config or ProfilerConfig()
        self.process = psutil.Process()
        self.started_at = self.process.create_time()
        self.series: deque[Snapshot] = deque(maxlen=self.config.window)
        self._count = 0
        self._baseline: tracemalloc.Snapshot | None = None
        self._started_tracemalloc = False
        if self.config.tracemalloc:
            self.tracemalloc_start()

    # tracemalloc --------------------------------------------------------------------

    @property
    def tracing(self) -> bool:
        return tracemalloc.is_tracing()

    @property
    def owns_tracing(self) -> bool:
        """tracemalloc runs because this profiler started it (not PYTHONTRACEMALLOC, not the app)."""
        return self._started_tracemalloc and tracemalloc.is_tracing()

    def tracemalloc_start(self, frames: int | None = None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames or self.config.tracemalloc_frames)
            self._started_tracemalloc = True
            # tracemalloc's own bookkeeping raises RSS: a new baseline, not a leak.
            self.series.clear()
        self._baseline = self._trace_snapshot()

    def tracemalloc_stop(self) -> None:
        self._baseline = None
        if self._started_tracemalloc and tracemalloc.is_tracing():
            tracemalloc.stop()
            self.series.clear()
        self._started_tracemalloc = False

    @staticmethod
    def _trace_snapshot() -> tracemalloc.Snapshot:
        # The profiler's own allocations are not the operator's leak.
        return tracemalloc.take_snapshot().filter_traces(
            (
                tracemalloc.Filter(False, tracemalloc.__file__),
                tracemalloc.Filter(False, __file__),
                tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
            )
        )

    # snapshots ----------------------------------------------------------------------

    def snapshot(self, *, with_types: bool | None = None) -> Snapshot:
        """Measure this process now and append the result to the series."""
        config = self.config
        index = self._count
        self._count += 1
        with self.process.oneshot():
            if index % config.uss_every == 0:
                info = self.process.memory_full_info()
                rss, uss = int(info.rss), int(info.uss)
            else:
                rss, uss = int(self.process.memory_info().rss), None
        stats = gc.get_stats()
        snap = Snapshot(
            taken_at=datetime.now(tz=UTC),
            pid=os.getpid(),
            rss=rss,
            uss=uss,
            gc_counts=list(gc.get_count()),
            gc_collections=[int(s["collections"]) for s in stats],
            gc_collected=[int(s["collected"]) for s in stats],
        )
        if with_types if with_types is not None else index % config.types_every == 0:
            snap.object_total, snap.types = count_types(config.top_types)
        if tracemalloc.is_tracing():
            snap.heap_current, snap.heap_peak = tracemalloc.get_traced_memory()
            current = self._trace_snapshot()
            snap.sites = [
                {"site": _site(stat), "size": stat.size, "count": stat.count}
                for stat in current.statistics("lineno")[: config.top_sites]
            ]
            if self._baseline is not None:
                growth = [d for d in current.compare_to(self._baseline, "lineno") if d.size_diff > 0]
                snap.site_growth = [
                    {"site": _site(d), "size": d.size, "size_diff": d.size_diff, "count_diff": d.count_diff}
                    for d in growth[: config.top_sites]
                ]
            else:
                self._baseline = current
        if time.time() - self.started_at >= config.warmup_s:
            self.series.append(snap)
        return snap

    def collect_garbage(self) -> dict[str, Any]:
        """Run a full collection and report what it freed."""
        before_rss = int(self.process.memory_info().rss)
        before_objects = len(gc.get_objects())
        started = time.perf_counter()
        unreachable = gc.collect()
        elapsed_ms = (time.perf_counter() - started) * 1000
        after_objects = len(gc.get_objects())
        after_rss = int(self.process.memory_info().rss)
        return {
            "pid": os.getpid(),
            "at": datetime.now(tz=UTC).isoformat(),
            "unreachable": unreachable,
            "objects_before": before_objects,
            "objects_after": after_objects,
            "objects_freed": max(before_objects - after_objects, 0),
            "rss_before": before_rss,
            "rss_after": after_rss,
            "rss_freed": before_rss - after_rss,
            "ms": round(elapsed_ms, 2),
        }
