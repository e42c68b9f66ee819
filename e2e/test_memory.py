"""A real Chromium reads the memory page served by gunicorn: the chart, the findings, the window."""

from __future__ import annotations

from typing import Any

import pytest

from perf.memory import services as memory_services
from perf.memory.leaks import Finding
from perf.memory.profiler import ProfilerConfig
from perf.memory.sampler import Sampler

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_an_operator_sees_the_memory_chart_and_the_findings_panel(logged_in_page: Any) -> None:
    sampler = Sampler(ProfilerConfig(types_every=1))
    for _ in range(3):
        sampler.sample_once()
    assert sampler.process_id is not None
    memory_services.memory_finding_sync(
        process_id=sampler.process_id,
        finding=Finding(
            severity="medium",
            title="RSS grows 55.0 MB/h (R² 0.95, +12.0 MB over 14 snapshots)",
            slope_mb_per_hour=55.0,
            r2=0.95,
            evidence={"rss_trend": {"slope_mb_per_hour": 55.0, "r2": 0.95}},
            recommendations=["Open a tracemalloc window on /perf/memory/"],
        ),
    )
    page = logged_in_page
    page.goto("/perf/memory/")
    chart = page.locator(f"[data-process='{sampler.profiler.process.pid}'] svg.chart")
    chart.wait_for()
    assert chart.locator("polyline[data-series='RSS']").count() == 1
    finding = page.locator("#memory-findings [data-finding='medium']")
    assert "RSS grows 55.0 MB/h" in finding.inner_text()
    finding.locator("summary").click()
    assert "Open a tracemalloc window" in finding.locator(".recommendations").inner_text()

    page.click("#tracemalloc-open")
    page.wait_for_selector("[data-tracemalloc='open']")
    assert "tracemalloc window open for" in page.locator("#memory-panel").inner_text()
    page.click("#tracemalloc-close")
    page.wait_for_selector("[data-tracemalloc='closed']")
