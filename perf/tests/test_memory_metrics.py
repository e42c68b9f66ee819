"""/metrics: who may scrape it, and what it holds, in one process and under gunicorn."""

from __future__ import annotations

import re
import urllib.request
from typing import Any

import psutil
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def test_anonymous_scrapers_are_sent_to_log_in_when_no_token_is_set() -> None:
    response = Client().get("/metrics")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_logged_in_user_who_is_not_staff_gets_403(stranger_client: Client) -> None:
    assert stranger_client.get("/metrics").status_code == 403


def test_a_staff_member_reads_prometheus_text_with_requests_checks_and_findings(owner_client: Client) -> None:
    owner_client.get("/login/")
    response = owner_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    assert re.search(r'vpnadmin_http_requests_total\{method="GET",status="302",view="login"\} [1-9]', text)
    assert "vpnadmin_http_request_duration_seconds_bucket" in text
    assert 'vpnadmin_component_up{component="database",kind="database"} 1.0' in text
    assert 'vpnadmin_component_up{component="cache",kind="cache"} 1.0' in text
    assert 'vpnadmin_component_up{component="memory",kind="memory"} 1.0' in text
    assert 'vpnadmin_memory_findings_open{severity="critical"} 0.0' in text
    assert "vpnadmin_cache_hits_total" in text and "vpnadmin_cache_misses_total" in text


@override_settings(METRICS_TOKEN="s3cret-scrape-token")
def test_with_a_token_set_only_the_right_bearer_token_gets_in(owner_client: Client) -> None:
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert Client().get("/metrics", headers={"Authorization": "Basic s3cret-scrape-token"}).status_code == 401
    assert owner_client.get("/metrics").status_code == 401  # a session is no token
    response = Client().get("/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"})
    assert response.status_code == 200
    assert b"vpnadmin_component_up" in response.content
    assert b"s3cret" not in response.content


def test_metrics_refuses_anything_but_get(owner_client: Client) -> None:
    assert owner_client.post("/metrics").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_under_gunicorn_the_workers_figures_add_up_in_one_scrape(live_app: Any, owner: User) -> None:
    client = Client()
    client.force_login(owner)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    for _ in range(12):
        urllib.request.urlopen(f"{live_app.url}/login/", timeout=10).read()  # noqa: S310 - loopback
    request = urllib.request.Request(f"{live_app.url}/metrics", headers={"Cookie": cookie})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
        text = answer.read().decode()
        assert answer.headers["X-Metrics-Mode"] == "multiprocess"
    workers = {child.pid for child in psutil.Process(live_app.process.pid).children()}
    rss_pids = {int(pid) for pid in re.findall(r'vpnadmin_worker_rss_bytes\{pid="(\d+)"\} \d', text)}
    assert rss_pids == workers
    logins = re.search(r'vpnadmin_http_requests_total\{method="GET",status="200",view="login"\} ([\d.]+)', text)
    assert logins is not None and float(logins.group(1)) >= 12
