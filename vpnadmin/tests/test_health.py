"""/healthz and the dashboard's component states, on the real parts and with parts down."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

pytestmark = pytest.mark.django_db


def _redis_at(port: int) -> dict[str, Any]:
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    return caches


def test_healthz_answers_anonymously_with_every_part_up(docker_client: Any) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["detail"].startswith("PostgreSQL")
    assert body["checks"]["cache"]["detail"].startswith("Redis")
    assert body["checks"]["docker:local"]["state"] == "up"
    assert body["checks"]["database"]["latency_ms"] is not None  # the round trip is reported


def test_healthz_is_503_and_names_redis_when_it_is_stopped(closed_port: int) -> None:
    with override_settings(CACHES=_redis_at(closed_port)):
        response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["cache"]
    assert body["checks"]["cache"]["state"] == "down"
    assert body["checks"]["database"]["state"] == "up"


def test_healthz_answers_when_redis_hangs(silent_port: int) -> None:
    with override_settings(CACHES=_redis_at(silent_port)):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"]["state"] == "down"


def test_a_stopped_redis_shows_on_the_dashboard_instead_of_a_500(owner_client: Client, closed_port: int) -> None:
    with override_settings(CACHES=_redis_at(closed_port)):
        response = owner_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-overall="down"' in body
    assert "ConnectionError" in body or "refused" in body.lower()


def test_an_unreachable_docker_engine_degrades_but_does_not_fail_health(owner_client: Client, tmp_path: Any) -> None:
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/no-such.sock"):
        health = Client().get("/healthz")
        page = owner_client.get("/")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert health.json()["checks"]["docker:local"]["detail"].startswith("engine unreachable")
    assert page.status_code == 200
    assert "engine unreachable" in page.content.decode()


def test_healthz_refuses_anything_but_get() -> None:
    assert Client().post("/healthz").status_code == 405
