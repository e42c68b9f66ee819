"""Leak detection that explains itself.

A finding needs all three of: a least-squares slope of RSS over the recent window of at
least the configured threshold (MB per hour), a fit good enough to call it a trend
(R² at or above `min_r2`), and a fitted growth that stands clear of the noise around
the line (`noise_factor` times the residual spread, and at least `min_growth_mb`).
A steady leak passes all three within a few snapshots; a flat but noisy worker fails
the fit and the noise test, however steep a short random run looks in MB per hour. A
finding opens only when two consecutive evaluations find it, so a single lucky run of
noise never raises an alarm; once open it stays open on a looser fit.

The evidence says what was measured; the recommendations say where to look next.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from perf.memory.profiler import MB, ProfilerConfig, Snapshot

SEVERITIES = ("low", "medium", "high", "critical")
# Severity from how many times over the threshold the slope is.
_SEVERITY_STEPS = ((20.0, "critical"), (5.0, "high"), (2.0, "medium"), (1.0, "low"))


@dataclass(frozen=True)
class Trend:
    n: int
    span_s: float
    slope_mb_per_hour: float
    r2: float
    growth_mb: float
    residual_mb: float
    first_mb: float
    last_mb: float


@dataclass
class Finding:
    severity: str
    title: str
    slope_mb_per_hour: float
    r2: float
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendations: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def fit_trend(times_s: Sequence[float], values_mb: Sequence[float]) -> Trend | None:
    """Least-squares line through (seconds, MB); None with fewer than 3 points or no time span."""
    n = len(values_mb)
    if n < 3 or n != len(times_s):
        return None
    mean_t = sum(times_s) / n
    mean_y = sum(values_mb) / n
    sxx = sum((t - mean_t) ** 2 for t in times_s)
    if sxx <= 0:
        return None
    sxy = sum((t - mean_t) * (y - mean_y) for t, y in zip(times_s, values_mb, strict=True))
    syy = sum((y - mean_y) ** 2 for y in values_mb)
    slope = sxy / sxx  # MB per second
    intercept = mean_y - slope * mean_t
    residuals = [y - (intercept + slope * t) for t, y in zip(times_s, values_mb, strict=True)]
    ss_res = sum(r * r for r in residuals)
    r2 = 1.0 - ss_res / syy if syy > 0 else 0.0
    span = times_s[-1] - times_s[0]
    return Trend(
        n=n,
        span_s=round(span, 3),
        slope_mb_per_hour=slope * 3600,
        r2=max(r2, 0.0),
        growth_mb=slope * span,
        residual_mb=math.sqrt(ss_res / (n - 2)) if n > 2 else 0.0,
        first_mb=values_mb[0],
        last_mb=values_mb[-1],
    )


def severity_for(slope_mb_per_hour: float, threshold_mb: float) -> str | None:
    ratio = slope_mb_per_hour / threshold_mb
    for step, name in _SEVERITY_STEPS:
        if ratio >= step:
            return name
    return None


def _trend_of(series: Sequence[Snapshot], value: str) -> Trend | None:
    points = [(s.taken_at.timestamp(), getattr(s, value)) for s in series if getattr(s, value) is not None]
    if len(points) < 3:
        return None
    t0 = points[0][0]
    return fit_trend([t - t0 for t, _ in points], [v / MB if value != "object_total" else v for _, v in points])


def is_leaking(trend: Trend, config: ProfilerConfig, late: Trend | None = None, *, sticky: bool = False) -> bool:
    """A clean, steep trend that clears the noise and (given `late`) still climbs in the recent half.

    `sticky`: a finding is already open; it stays open on a somewhat looser fit, so one
    noisy snapshot does not close and reopen it.
    """
    min_r2 = config.min_r2 - 0.2 if sticky else config.min_r2
    noise_factor = config.noise_factor / 2 if sticky else config.noise_factor
    return (
        trend.n >= config.min_snapshots
        and trend.slope_mb_per_hour >= config.leak_threshold_mb
        and trend.r2 >= min_r2
        and trend.growth_mb >= max(config.min_growth_mb, noise_factor * trend.residual_mb)
        # A worker warming up climbs and then levels off (arenas, caches filling to their
        # bound); a leak keeps climbing: the recent half must keep a third of the slope.
        and (late is None or late.slope_mb_per_hour >= trend.slope_mb_per_hour / 3)
    )


def growing_types(series: Sequence[Snapshot], limit: int = 5) -> list[dict[str, Any]]:
    """Types whose object count grew between the first and the last counted snapshot."""
    counted = [s for s in series if s.types]
    if len(counted) < 2:
        return []
    first, last = counted[0].types or {}, counted[-1].types or {}
    grown: list[dict[str, Any]] = []
    for name, count in last.items():
        before = first.get(name, 0)
        if count > before and count - before >= max(100, before // 10):
            grown.append({"type": name, "before": before, "after": count, "diff": count - before})
    grown.sort(key=lambda g: g["diff"], reverse=True)
    return grown[:limit]


def _leaking_before_the_last(snapshots: list[Snapshot], config: ProfilerConfig) -> bool:
    previous = snapshots[:-1][-config.window :]
    if len(previous) < config.min_snapshots:
        return False
    rss = _trend_of(previous, "rss")
    late = _trend_of(previous[len(previous) // 2 :], "rss")
    return rss is not None and is_leaking(rss, config, late)


def detect(series: Sequence[Snapshot], config: ProfilerConfig, *, sticky: bool = False) -> Finding | None:
    """The finding for one process's recent snapshots, or None when it is not leaking.

    `sticky`: the process has an open finding (see `is_leaking`).
    """
    snapshots = list(series)
    window = snapshots[-config.window :]
    if len(window) < config.min_snapshots:
        return None
    rss = _trend_of(window, "rss")
    late = _trend_of(window[len(window) // 2 :], "rss")
    if rss is None or not is_leaking(rss, config, late, sticky=sticky):
        return None
    if not sticky and not _leaking_before_the_last(snapshots, config):
        # A finding opens only when two consecutive evaluations agree: one lucky run of
        # noise can pass every test once, a leak passes them again one snapshot later.
        return None
    severity = severity_for(rss.slope_mb_per_hour, config.leak_threshold_mb)
    if severity is None:
        return None
    heap = _trend_of(window, "heap_current")
    objects = _trend_of(window, "object_total")
    types = growing_types(window)
    sites = next((s.site_growth for s in reversed(window) if s.site_growth), None) or []
    evidence: dict[str, Any] = {
        "rss_trend": {
            "snapshots": rss.n,
            "span_s": rss.span_s,
            "slope_mb_per_hour": round(rss.slope_mb_per_hour, 2),
            "r2": round(rss.r2, 4),
            "growth_mb": round(rss.growth_mb, 2),
            "noise_mb": round(rss.residual_mb, 3),
            "first_mb": round(rss.first_mb, 1),
            "last_mb": round(rss.last_mb, 1),
            "threshold_mb_per_hour": config.leak_threshold_mb,
        },
        "growing_types": types,
        "allocation_sites": sites[:5],
    }
    if heap is not None:
        evidence["heap_trend"] = {
            "slope_mb_per_hour": round(heap.slope_mb_per_hour, 2),
            "r2": round(heap.r2, 4),
            "growth_mb": round(heap.growth_mb, 2),
        }
    if objects is not None:
        evidence["object_trend"] = {"per_hour": round(objects.slope_mb_per_hour), "r2": round(objects.r2, 4)}
    available_mb = psutil.virtual_memory().available / MB
    hours_left = available_mb / rss.slope_mb_per_hour if rss.slope_mb_per_hour > 0 else None
    evidence["available_mb"] = round(available_mb)
    if hours_left is not None:
        evidence["hours_to_exhaust_available"] = round(hours_left, 2)
    title = (
        f"RSS grows {rss.slope_mb_per_hour:,.1f} MB/h (R² {rss.r2:.2f}, +{rss.growth_mb:,.1f} MB over "
        f"{rss.n} snapshots)"
    )
    return Finding(
        severity=severity,
        title=title,
        slope_mb_per_hour=round(rss.slope_mb_per_hour, 3),
        r2=round(rss.r2, 4),
        evidence=evidence,
        recommendations=recommendations(rss, heap, objects, types, sites, config),
    )


def recommendations(
    rss: Trend,
    heap: Trend | None,
    objects: Trend | None,
    types: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    config: ProfilerConfig,
) -> list[str]:
    advice: list[str] = []
    for site in sites[:3]:
        advice.append(
            f"Look at {site['site']}: it holds {site['size_diff'] / MB:,.2f} MB more "
            f"({site['count_diff']:+,} blocks) than when the tracemalloc window opened."
        )
    if not sites:
        advice.append(
            f"Open a tracemalloc window on /perf/memory/ (it closes itself after "
            f"{config.tracemalloc_window_minutes} min) to see which lines allocate the memory that stays."
        )
    for grown in types[:3]:
        advice.append(
            f"Objects of type {grown['type']} grew from {grown['before']:,} to {grown['after']:,}: look for "
            "module-level lists, dicts or caches that keep them."
        )
    advice.append(
        "Bound every in-process cache: functools.lru_cache(maxsize=...) rather than cache(), dictionaries "
        "keyed per request or per user need an eviction; prefer the shared Redis cache with a timeout."
    )
    heap_flat = heap is not None and heap.growth_mb < 0.25 * rss.growth_mb
    objects_flat = heap is None and objects is not None and objects.slope_mb_per_hour <= 0
    if heap_flat or objects_flat:
        measured = "the traced Python heap" if heap_flat else "the number of Python objects"
        advice.append(
            f"RSS grows while {measured} does not: the growth is native memory (C extensions, database "
            "driver buffers, malloc fragmentation). Try MALLOC_ARENA_MAX=2 in the environment and check "
            "native libraries for known leaks."
        )
    max_requests = os.environ.get("GUNICORN_MAX_REQUESTS", "5000").strip() or "0"
    jitter = os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "500")
    now = "off now" if max_requests == "0" else f"{max_requests} with jitter {jitter} now"
    advice.append(
        "Until the cause is fixed, let gunicorn recycle workers: set GUNICORN_MAX_REQUESTS and "
        f"GUNICORN_MAX_REQUESTS_JITTER ({now}); lower max_requests so a worker restarts before it grows "
        "too far, and keep the jitter near 10% so the workers do not restart together."
    )
    return advice
