"""Prometheus metrics: request counts and latency, per-worker memory, and figures read at
scrape time (cache totals, component checks, open memory findings).

Under gunicorn, PROMETHEUS_MULTIPROC_DIR (set up by vpnadmin/gunicorn.conf.py before the
workers fork) makes every worker write its counters to files the scrape sums; in a
single process (runserver, tests) the default registry is used.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

    from perf.memory.profiler import Snapshot

_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

REQUESTS = Counter(
    "vpnadmin_http_requests", "HTTP requests answered, by method, view and status code", ["method", "view", "status"]
)
LATENCY = Histogram(
    "vpnadmin_http_request_duration_seconds",
    "Time from the first middleware to the response, by method and view",
    ["method", "view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
WORKER_RSS = Gauge(
    "vpnadmin_worker_rss_bytes", "Resident set size of each worker at its last sample", multiprocess_mode="liveall"
)
WORKER_USS = Gauge(
    "vpnadmin_worker_uss_bytes", "Unique set size of each worker at its last sample", multiprocess_mode="liveall"
)
WORKER_OBJECTS = Gauge(
    "vpnadmin_worker_gc_objects",
    "Objects tracked by the garbage collector at the last count",
    multiprocess_mode="liveall",
)
WORKER_GC = Gauge(
    "vpnadmin_worker_gc_collections",
    "Garbage collections run so far, per generation",
    ["generation"],
    multiprocess_mode="liveall",
)


def multiprocess_mode() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def record_worker_memory(snap: Snapshot) -> None:
    WORKER_RSS.set(snap.rss)
    if snap.uss is not None:
        WORKER_USS.set(snap.uss)
    if snap.object_total is not None:
        WORKER_OBJECTS.set(snap.object_total)
    for generation, collections in enumerate(snap.gc_collections):
        WORKER_GC.labels(str(generation)).set(collections)


class RequestMetricsMiddleware:
    """Counts every request and times it; first in MIDDLEWARE so the whole stack is timed."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        method = request.method if request.method in _METHODS else "other"
        match = getattr(request, "resolver_match", None)
        # Views, never raw paths: the label set stays small whatever the URLs carry.
        view = (match.view_name or match.route or "unnamed") if match is not None else "unresolved"
        REQUESTS.labels(method, view, str(response.status_code)).inc()
        LATENCY.labels(method, view).observe(elapsed)
        return response


class ScrapeTimeCollector(Collector):
    """Figures that live elsewhere, read when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from self._cache_totals()
        yield from self._component_checks()
        yield from self._memory_findings()

    def _cache_totals(self) -> Iterator[Metric]:
        try:
            from perf.cache.metrics import read_totals  # the cache's counters, summed across workers
        except ImportError:
            return
        up = GaugeMetricFamily("vpnadmin_cache_metrics_up", "1 when the cache counters could be read")
        try:
            totals = read_totals()
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, value in sorted(totals.items()):
            family = CounterMetricFamily(f"vpnadmin_cache_{name}", f"Cache {name.replace('_', ' ')}, all workers")
            family.add_metric([], float(value))
            yield family

    def _component_checks(self) -> Iterator[Metric]:
        from vpnadmin.health import run_component_checks

        up = GaugeMetricFamily("vpnadmin_component_up", "1 when the part answers", labels=["component", "kind"])
        latency = GaugeMetricFamily(
            "vpnadmin_component_latency_seconds", "Round trip of the last check", labels=["component", "kind"]
        )
        for check in run_component_checks():
            up.add_metric([check.name, check.kind], 1 if check.ok else 0)
            if check.latency_ms is not None:
                latency.add_metric([check.name, check.kind], check.latency_ms / 1000)
        yield up
        yield latency

    def _memory_findings(self) -> Iterator[Metric]:
        from django.db import DatabaseError

        from perf.memory.profiler import ProfilerConfig
        from perf.memory.selectors import open_findings
        from perf.memory.services import stale_before

        family = GaugeMetricFamily(
            "vpnadmin_memory_findings_open", "Open memory leak findings by severity", labels=["severity"]
        )
        rss = GaugeMetricFamily(
            "vpnadmin_memory_finding_slope_mb_per_hour", "Growth of each process with an open finding", labels=["pid"]
        )
        try:
            findings = open_findings(stale_before=stale_before(ProfilerConfig.from_settings()))
        except DatabaseError:
            return
        counts = dict.fromkeys(("low", "medium", "high", "critical"), 0)
        for finding in findings:
            counts[finding.severity] += 1
            rss.add_metric([str(finding.process.pid)], finding.slope_mb_per_hour)
        for severity, count in counts.items():
            family.add_metric([severity], count)
        yield family
        yield rss


class _DefaultRegistry(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render_latest() -> bytes:
    """The exposition text for one scrape."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        MultiProcessCollector(registry)
    else:
        registry.register(_DefaultRegistry())
    registry.register(ScrapeTimeCollector())
    return generate_latest(registry)
