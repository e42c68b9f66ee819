"""Leak detection on real processes: a worker that leaks is found, a flat noisy one is not."""

from __future__ import annotations

import tracemalloc
from collections import deque
from datetime import UTC, datetime, timedelta

import psutil

from perf.memory.leaks import SEVERITIES, detect, fit_trend, severity_for
from perf.memory.profiler import MB, MemoryProfiler, ProfilerConfig, Snapshot, external_snapshot
from perf.memory.workloads import workload

CONFIG = ProfilerConfig()
AT_LEAST_MEDIUM = set(SEVERITIES[SEVERITIES.index("medium") :])


def _watch(pid: int, drive: object, snapshots: int) -> list[tuple[int, str | None]]:
    """Snapshot `pid` after each round of work; the severity detected after each snapshot."""
    proc = psutil.Process(pid)
    series: deque[Snapshot] = deque(maxlen=CONFIG.window)
    verdicts: list[tuple[int, str | None]] = []
    for index in range(1, snapshots + 1):
        drive()  # type: ignore[operator]
        series.append(external_snapshot(proc))
        finding = detect(series, CONFIG, sticky=bool(verdicts and verdicts[-1][1]))
        verdicts.append((index, finding.severity if finding else None))
    return verdicts


def test_a_worker_leaking_per_request_gets_a_medium_or_worse_finding_within_ten_snapshots() -> None:
    with workload("leak", "--leak-kb", "100", "--noise-mb", "4") as leaky:
        leaky.requests(40)  # past the start-up growth, as a worker that has served a while
        verdicts = _watch(leaky.pid, lambda: leaky.requests(20), 10)
    assert any(severity in AT_LEAST_MEDIUM for _, severity in verdicts), verdicts


def test_a_flat_but_noisy_worker_gets_no_finding() -> None:
    with workload("flat", "--noise-mb", "4") as flat:
        flat.requests(40)
        verdicts = _watch(flat.pid, lambda: flat.requests(20), 60)
    assert [v for v in verdicts if v[1]] == []


def test_the_finding_explains_itself_with_evidence_and_recommendations() -> None:
    with workload("leak", "--leak-kb", "200") as leaky:
        leaky.requests(40)
        proc = psutil.Process(leaky.pid)
        series = []
        for _ in range(12):
            leaky.requests(20)
            series.append(external_snapshot(proc))
    finding = detect(series, CONFIG)
    assert finding is not None
    trend = finding.evidence["rss_trend"]
    assert trend["slope_mb_per_hour"] >= CONFIG.leak_threshold_mb
    assert trend["r2"] >= CONFIG.min_r2
    assert trend["last_mb"] > trend["first_mb"]
    advice = " ".join(finding.recommendations)
    assert "max_requests" in advice
    assert "tracemalloc window" in advice  # no allocation sites yet: it says how to get them
    assert "lru_cache" in advice


def _series(values_mb: list[float], *, step_s: float = 30.0, heap_mb: list[float] | None = None) -> list[Snapshot]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        Snapshot(
            taken_at=start + timedelta(seconds=i * step_s),
            pid=1,
            rss=int(v * MB),
            heap_current=int(heap_mb[i] * MB) if heap_mb else None,
        )
        for i, v in enumerate(values_mb)
    ]


def test_the_trend_is_a_least_squares_slope_in_mb_per_hour_with_its_r2() -> None:
    trend = fit_trend([0, 1800, 3600], [100.0, 110.0, 120.0])
    assert trend is not None
    assert round(trend.slope_mb_per_hour, 6) == 20.0
    assert round(trend.r2, 6) == 1.0
    assert fit_trend([0, 0, 0], [1.0, 2.0, 3.0]) is None
    assert fit_trend([0, 1], [1.0, 2.0]) is None


def test_severity_rises_with_how_far_the_slope_is_over_the_threshold() -> None:
    assert severity_for(10, 20) is None
    assert severity_for(25, 20) == "low"
    assert severity_for(60, 20) == "medium"
    assert severity_for(150, 20) == "high"
    assert severity_for(500, 20) == "critical"


def test_a_worker_that_warms_up_and_levels_off_is_not_a_leak() -> None:
    warming = [100, 130, 150, 160, 166, 169, 170, 170.5, 170.2, 170.6, 170.4, 170.7, 170.5, 170.6]
    assert detect(_series(warming), CONFIG) is None


def test_rss_growing_while_the_python_heap_stays_flat_points_at_native_memory() -> None:
    rss = [100.0 + 2 * i for i in range(12)]
    heap = [30.0 + (0.01 if i % 2 else 0) for i in range(12)]
    finding = detect(_series(rss, heap_mb=heap), CONFIG)
    assert finding is not None
    assert any("native memory" in advice for advice in finding.recommendations)


def test_a_leak_inside_this_process_names_its_allocation_site() -> None:
    profiler = MemoryProfiler(ProfilerConfig(top_sites=5))
    kept: list[bytearray] = []
    block = 4096
    profiler.tracemalloc_start()
    try:
        for _ in range(10):
            kept.extend(bytearray(block) for _ in range(512))  # 2 MB a snapshot, from this line
            snap = profiler.snapshot(with_types=False)
    finally:
        profiler.tracemalloc_stop()
    assert not tracemalloc.is_tracing()
    assert snap.heap_current is not None and snap.heap_current > 10 * MB
    growth = snap.site_growth or []
    assert growth and growth[0]["site"].endswith("test_memory_leaks.py:" + str(_line_of("kept.extend")))
    assert growth[0]["size_diff"] > 10 * MB
    del kept


def _line_of(text: str) -> int:
    with open(__file__) as source:
        for number, line in enumerate(source, start=1):
            if text in line and "_line_of" not in line:
                return number
    raise AssertionError(text)
