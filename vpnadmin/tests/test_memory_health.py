"""/healthz's memory check: degraded while a critical leak is open on a measured process."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from perf.memory import services as memory_services
from perf.memory.leaks import Finding
from perf.memory.profiler import ProfilerConfig
from perf.models import MemoryProcess

# The checks run in their own threads and connections: they see committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


TOKEN = "memory-health-test-token"


def _healthz() -> Any:
    """/healthz with details (a monitoring token), as the memory check shows only there."""
    with override_settings(HEALTH_TOKEN=TOKEN):
        return Client().get("/healthz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def _finding(severity: str) -> Finding:
    return Finding(severity=severity, title="RSS grows", slope_mb_per_hour=900.0, r2=0.99)


def test_healthz_reports_memory_ok_without_findings() -> None:
    body = _healthz().json()
    assert body["checks"]["memory"]["state"] == "up"
    assert body["checks"]["memory"]["detail"] == "no open leak findings"


def test_a_critical_leak_makes_healthz_degraded_and_says_where_to_look() -> None:
    process = memory_services.memory_process_register(role="worker", config=ProfilerConfig())
    memory_services.memory_finding_sync(process_id=process.pk, finding=_finding("critical"))
    response = _healthz()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert "memory" in body["failing"]
    assert f"pid {process.pid} grows 900 MB/h" in body["checks"]["memory"]["detail"]
    assert "/perf/memory/" in body["checks"]["memory"]["detail"]


def test_a_high_finding_is_reported_but_does_not_degrade_health() -> None:
    process = memory_services.memory_process_register(role="worker", config=ProfilerConfig())
    memory_services.memory_finding_sync(process_id=process.pk, finding=_finding("high"))
    body = _healthz().json()
    assert body["checks"]["memory"]["state"] == "up"
    assert body["checks"]["memory"]["detail"] == "1 open finding(s), none critical"


def test_a_critical_leak_of_a_process_no_longer_measured_does_not_count() -> None:
    process = memory_services.memory_process_register(role="worker", config=ProfilerConfig())
    memory_services.memory_finding_sync(process_id=process.pk, finding=_finding("critical"))
    MemoryProcess.objects.filter(pk=process.pk).update(last_seen_at=timezone.now() - timedelta(hours=1))
    body = _healthz().json()
    assert body["checks"]["memory"]["state"] == "up"


def test_a_worker_that_exits_closes_its_finding() -> None:
    process = memory_services.memory_process_register(role="worker", config=ProfilerConfig())
    memory_services.memory_finding_sync(process_id=process.pk, finding=_finding("critical"))
    memory_services.memory_process_end(process_id=process.pk)
    assert _healthz().json()["checks"]["memory"]["state"] == "up"


def test_a_leak_that_opens_after_a_healthy_answer_shows_at_once_and_closes_at_once() -> None:
    process = memory_services.memory_process_register(role="worker", config=ProfilerConfig())
    assert _healthz().json()["checks"]["memory"]["state"] == "up"  # the verdict is now cached
    memory_services.memory_finding_sync(process_id=process.pk, finding=_finding("critical"))
    assert _healthz().json()["checks"]["memory"]["state"] == "down"
    memory_services.memory_finding_sync(process_id=process.pk, finding=None)
    assert _healthz().json()["checks"]["memory"]["state"] == "up"
