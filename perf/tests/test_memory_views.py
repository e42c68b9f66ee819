"""/perf/memory/: who may see and act, what the page shows, and the controls' bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from perf.memory import services as memory_services
from perf.memory.leaks import Finding
from perf.memory.profiler import ProfilerConfig
from perf.memory.sampler import Sampler
from perf.models import ProfilerControl
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

PAGE = "/perf/memory/"
WINDOW = "/perf/memory/tracemalloc/"
GC = "/perf/memory/gc/"

# Every page of the Performance section needs this first (vpnadmin/access.py); login is audited.
PERF_SECTION = "vpnadmin.view_performance"


def _client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _sampled(count: int = 3) -> Sampler:
    sampler = Sampler(ProfilerConfig(types_every=1))
    for _ in range(count):
        sampler.sample_once()
    return sampler


def test_anonymous_visitors_are_sent_to_the_login_page() -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert Client().post(WINDOW, {"action": "open"}).status_code == 302


def test_a_user_without_the_view_permission_gets_403(stranger_client: Client) -> None:
    assert stranger_client.get(PAGE).status_code == 403


def test_a_viewer_sees_the_page_but_may_not_act(make_operator: Callable[..., User]) -> None:
    viewer = _client_for(make_operator(PERF_SECTION, "perf.view_memorysnapshot"))
    page = viewer.get(PAGE)
    assert page.status_code == 200
    assert 'id="tracemalloc-open"' not in page.content.decode()
    assert viewer.post(WINDOW, {"action": "open", "minutes": "5"}).status_code == 403
    assert viewer.post(GC).status_code == 403
    assert not ProfilerControl.objects.filter(tracemalloc_until__isnull=False).exists()


def test_the_page_draws_each_process_as_an_svg_chart_with_its_figures(owner_client: Client) -> None:
    sampler = _sampled(3)
    body = owner_client.get(PAGE).content.decode()
    assert f'data-process="{sampler.profiler.process.pid}"' in body
    assert '<svg class="chart"' in body and 'data-series="RSS"' in body and "<polyline" in body
    assert "Most common types" in body and "<code>dict</code>" in body
    assert 'data-findings="none"' in body
    assert "<script" not in body.split("<main>")[1]  # no chart library: the SVG is server-made


def test_an_open_finding_shows_with_its_severity_evidence_and_recommendations(owner_client: Client) -> None:
    sampler = _sampled(2)
    finding = Finding(
        severity="high",
        title="RSS grows 120.0 MB/h (R² 0.97, +30.0 MB over 15 snapshots)",
        slope_mb_per_hour=120.0,
        r2=0.97,
        evidence={
            "rss_trend": {"slope_mb_per_hour": 120.0, "r2": 0.97, "snapshots": 15, "first_mb": 80, "last_mb": 110},
            "allocation_sites": [{"site": "app/cache.py:42", "size": 1, "size_diff": 31457280, "count_diff": 900}],
            "growing_types": [{"type": "dict", "before": 1000, "after": 9000, "diff": 8000}],
        },
        recommendations=["Look at app/cache.py:42: it holds 30.00 MB more", "Lower GUNICORN_MAX_REQUESTS"],
    )
    assert sampler.process_id is not None
    memory_services.memory_finding_sync(process_id=sampler.process_id, finding=finding)
    body = owner_client.get(PAGE).content.decode()
    assert 'data-finding="high"' in body
    assert "RSS grows 120.0 MB/h" in body
    assert "app/cache.py:42" in body and "30.0 MB" in body
    assert "Lower GUNICORN_MAX_REQUESTS" in body


def test_an_htmx_refresh_gets_only_the_panel(owner_client: Client) -> None:
    _sampled(1)
    response = owner_client.get(PAGE, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in body and 'id="memory-findings"' in body
    assert "HX-Request" in response["Vary"]


def test_an_operator_opens_and_closes_the_tracemalloc_window(make_operator: Callable[..., User]) -> None:
    operator = make_operator(PERF_SECTION, "perf.view_memorysnapshot", "perf.control_profiler")
    client = _client_for(operator)
    response = client.post(WINDOW, {"action": "open", "minutes": "10", "frames": "3"}, follow=True)
    assert "tracemalloc window open for 10 min (3 frames)" in response.content.decode()
    control = ProfilerControl.objects.get(pk=1)
    assert control.tracemalloc_open and control.frames == 3 and control.opened_by == "operator"
    assert 9 < control.minutes_left <= 10
    assert 'data-tracemalloc="open"' in response.content.decode()
    client.post(WINDOW, {"action": "close"})
    assert not ProfilerControl.objects.get(pk=1).tracemalloc_open
    entries = AuditEntry.objects.exclude(action="auth_login").order_by("created_at")
    actions = list(entries.values_list("action", flat=True))
    assert actions == ["memory_tracemalloc_open", "memory_tracemalloc_close"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "open", "minutes": "0"}, "minutes"),
        ({"action": "open", "minutes": "100000"}, "minutes"),
        ({"action": "open", "minutes": "ten"}, "minutes"),
        ({"action": "open", "frames": "99"}, "frames"),
        ({"action": "explode"}, "action"),
    ],
)
def test_bad_window_input_is_refused_with_a_message_and_nothing_changes(
    owner_client: Client, data: dict[str, str], message: str
) -> None:
    response = owner_client.post(WINDOW, data, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ProfilerControl.objects.exists()
    assert not AuditEntry.objects.exclude(action="auth_login").exists()
    partial = owner_client.post(WINDOW, data, headers={"HX-Request": "true"})
    assert partial.status_code == 400 and message in partial.content.decode()


def test_the_gc_action_collects_and_says_what_it_freed(owner_client: Client) -> None:
    for _ in range(300):
        cycle: list[Any] = []
        cycle.append(cycle)
    del cycle
    response = owner_client.post(GC, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200
    assert "gc.collect() found" in body and "unreachable objects" in body
    assert ProfilerControl.objects.get(pk=1).gc_requested_at is not None
    assert AuditEntry.objects.exclude(action="auth_login").get().action == "memory_gc_collect"


def test_the_controls_need_a_csrf_token(csrf_client: Client) -> None:
    assert csrf_client.post(WINDOW, {"action": "open", "minutes": "5"}).status_code == 403
    assert csrf_client.post(GC).status_code == 403
    assert not ProfilerControl.objects.exists()


def test_the_page_refuses_post_and_the_controls_refuse_get(owner_client: Client) -> None:
    assert owner_client.post(PAGE).status_code == 405
    assert owner_client.get(WINDOW).status_code == 405
    assert owner_client.get(GC).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_under_gunicorn_the_page_shows_every_worker_sampling_itself(live_app: Any, owner: User) -> None:
    import re
    import time
    import urllib.request

    import psutil
    from django.conf import settings

    client = Client()
    client.force_login(owner)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    workers = {child.pid for child in psutil.Process(live_app.process.pid).children()}
    shown: set[int] = set()
    # Each worker registers at the end of its first request, and again at the first poll
    # (5 s) after its row is gone (earlier tests empty the database): wait for that, not
    # for a figure. The page requests themselves are what drive the workers' sampling.
    deadline = time.monotonic() + 30
    while shown != workers and time.monotonic() < deadline:
        request = urllib.request.Request(f"{live_app.url}{PAGE}", headers={"Cookie": cookie})  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            body = answer.read().decode()
        shown = {int(pid) for pid in re.findall(r'data-process="(\d+)" data-alive="yes"', body)}
        time.sleep(0.5)
    assert shown == workers
    assert "gunicorn worker" in body and '<svg class="chart"' in body and "MB" in body


def test_the_admin_lists_processes_and_findings_read_only(owner_client: Client) -> None:
    sampler = _sampled(1)
    assert sampler.process_id is not None
    memory_services.memory_finding_sync(
        process_id=sampler.process_id, finding=Finding(severity="low", title="RSS grows", slope_mb_per_hour=25, r2=0.9)
    )
    assert owner_client.get("/admin/perf/memoryprocess/").status_code == 200
    page = owner_client.get("/admin/perf/memoryfinding/")
    assert page.status_code == 200 and "RSS grows" in page.content.decode()
    assert owner_client.get("/admin/perf/memoryfinding/add/").status_code == 403


def test_a_full_store_is_said_on_the_page(owner_client: Client) -> None:
    from django.test import override_settings

    _sampled(1)
    with override_settings(PROFILER={"max_processes": 1}):
        body = owner_client.get(PAGE).content.decode()
    assert 'data-store="full"' in body and "MEMORY_MAX_PROCESSES" in body
    assert 'data-store="full"' not in owner_client.get(PAGE).content.decode()
