"""/healthz and the dashboard's component states, on the real parts and with parts down."""

from __future__ import annotations

import copy
import socket
import threading
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from vpnadmin import health

pytestmark = pytest.mark.django_db


def _redis_at(port: int) -> dict[str, Any]:
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{port}/0"
    return caches


def test_healthz_tells_an_anonymous_caller_the_status_and_nothing_else(docker_client: Any, queue_worker: Any) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert b"PostgreSQL" not in response.content and b"Redis" not in response.content


def test_healthz_shows_staff_every_part_with_its_version(
    owner_client: Client, docker_client: Any, queue_worker: Any
) -> None:
    body = owner_client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["detail"].startswith("PostgreSQL")
    assert body["checks"]["cache"]["detail"].startswith("Redis")
    assert body["checks"]["docker:local"]["state"] == "up"
    assert body["checks"]["database"]["latency_ms"] is not None  # the round trip is reported


def test_healthz_shows_details_to_a_caller_with_the_health_token() -> None:
    with override_settings(HEALTH_TOKEN="s3cret-token-for-monitoring"):
        with_token = Client().get("/healthz", HTTP_AUTHORIZATION="Bearer s3cret-token-for-monitoring").json()
        wrong_token = Client().get("/healthz", HTTP_AUTHORIZATION="Bearer guess").json()
    assert "checks" in with_token
    assert set(wrong_token) == {"status"}


def test_healthz_hides_details_from_a_logged_in_user_who_is_not_staff(stranger_client: Client) -> None:
    assert set(stranger_client.get("/healthz").json()) == {"status"}


def test_healthz_is_503_and_names_redis_when_it_is_stopped(
    owner_client: Client, closed_port: int, queue_worker: Any
) -> None:
    with override_settings(CACHES=_redis_at(closed_port)):
        anonymous = Client().get("/healthz")
        response = owner_client.get("/healthz")
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "down"}
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["cache"]
    assert body["checks"]["cache"]["state"] == "down"
    assert body["checks"]["database"]["state"] == "up"


def test_healthz_answers_when_redis_hangs(silent_port: int) -> None:
    with override_settings(CACHES=_redis_at(silent_port)):
        response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "down"}


def test_a_stopped_redis_shows_on_the_dashboard_instead_of_a_500(owner_client: Client, closed_port: int) -> None:
    with override_settings(CACHES=_redis_at(closed_port)):
        response = owner_client.get("/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-overall="down"' in body
    assert "ConnectionError" in body or "refused" in body.lower()


def test_an_unreachable_docker_engine_degrades_but_does_not_fail_health(owner_client: Client, tmp_path: Any) -> None:
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/no-such.sock"):
        health_response = owner_client.get("/healthz")
        page = owner_client.get("/")
    assert health_response.status_code == 200
    assert health_response.json()["status"] == "degraded"
    assert health_response.json()["checks"]["docker:local"]["detail"].startswith("engine unreachable")
    assert page.status_code == 200
    assert "engine unreachable" in page.content.decode()


def test_healthz_refuses_anything_but_get() -> None:
    assert Client().post("/healthz").status_code == 405


class _SlowEngine:
    """A unix socket that accepts connections, counts them and answers nothing."""

    def __init__(self, path: str) -> None:
        self.connections = 0
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(path)
        self.server.listen(64)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            self.held.append(conn)

    def close(self) -> None:
        self.server.close()
        for conn in self.held:
            conn.close()


def test_a_flood_of_health_requests_sends_one_ping_at_a_time_to_a_hanging_engine(tmp_path: Any) -> None:
    engine = _SlowEngine(str(tmp_path / "slow.sock"))
    try:
        with override_settings(DOCKER_HOST=f"unix://{tmp_path}/slow.sock", HEALTH_CHECK_TIMEOUT=0.3):
            answers = [Client().get("/healthz") for _ in range(6)]
    finally:
        engine.close()
    assert all(answer.status_code == 200 for answer in answers)  # an engine is optional: degraded
    assert all(answer.json() == {"status": "degraded"} for answer in answers)
    # Six requests while the first ping hangs: they all waited for that one ping.
    assert engine.connections == 1


def test_an_engine_answer_is_kept_for_a_few_seconds(docker_client: Any) -> None:
    calls = []

    def probe() -> str:
        calls.append(1)
        return "fine"

    def counting() -> list[health.Check]:
        check = health.Check("counted", probe, False, "test", ttl=60.0)
        return [check]

    health.register_group("counting", counting)
    try:
        for _ in range(3):
            Client().get("/healthz")
    finally:
        health.unregister("counting")
    assert len(calls) == 1


def test_a_check_that_hangs_is_reported_as_timed_out_within_the_deadline() -> None:
    release = threading.Event()
    health.register("stuck", lambda: str(release.wait(30)), required=False)
    try:
        with override_settings(HEALTH_CHECK_TIMEOUT=0.2):
            checks = {check.name: check for check in health.run_component_checks()}
    finally:
        health.unregister("stuck")
        release.set()
    assert checks["stuck"].detail == "no answer within 0.2 s"
    assert checks["database"].ok


def test_perf_registers_its_check_without_importing_the_vpn_apps() -> None:
    import ast
    from pathlib import Path

    perf = Path(settings.BASE_DIR) / "perf"
    offenders = []
    for path in perf.rglob("*.py"):
        if "tests" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"users", "containers"}]
    assert offenders == []
    assert "memory" in {check.name for check in health.run_component_checks()}


@pytest.mark.django_db(transaction=True)
def test_concurrent_health_requests_share_one_ping_of_a_hanging_engine(tmp_path: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    engine = _SlowEngine(str(tmp_path / "slow.sock"))

    def ask() -> int:
        try:
            return Client().get("/healthz").status_code
        finally:
            connections.close_all()

    try:
        with (
            override_settings(DOCKER_HOST=f"unix://{tmp_path}/slow.sock", HEALTH_CHECK_TIMEOUT=1.0),
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            statuses = list(pool.map(lambda _: ask(), range(8)))
    finally:
        engine.close()
    assert statuses == [200] * 8
    assert engine.connections == 1
