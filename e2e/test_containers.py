"""A real Chromium selects VPN servers on two engines, restarts them and reads each result."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from conftest import RUN_ID, TEST_IMAGE, TEST_LABEL, docker_client_for
from containers.models import DockerHost, VpnServer

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SECOND_SOCKET = "unix:///var/run/vpnadmin-docker2.sock"
RUNS = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"


@pytest.fixture
def servers_on_two_hosts() -> Iterator[list[VpnServer]]:
    local = DockerHost.objects.create(name="local", base_url=settings.DOCKER_HOST, network_mode="none")
    second = DockerHost.objects.create(name="second", base_url=SECOND_SOCKET, network_mode="none")
    servers = [
        VpnServer.objects.create(
            host=host, name=f"e2e-{RUN_ID}-{n}", protocol="vless", image=TEST_IMAGE, port=30000 + n, command=command
        )
        for n, (host, command) in enumerate([(local, RUNS), (second, RUNS), (local, "no-such-binary")])
    ]
    yield servers
    # The app under gunicorn labels what it creates with this run's id (DOCKER_EXTRA_LABELS).
    for base_url in (settings.DOCKER_HOST, SECOND_SOCKET):
        client = docker_client_for(base_url)
        for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
            container.remove(force=True)
        client.close()


def test_an_operator_selects_servers_restarts_them_and_sees_each_result(
    logged_in_page: Any, servers_on_two_hosts: list[VpnServer]
) -> None:
    page = logged_in_page
    page.goto("/containers/")
    for server in servers_on_two_hosts:
        page.check(f"[data-server='{server.name}'] input[type=checkbox]")
    page.click("button[name=action][value=restart]")
    page.wait_for_selector("#batch-results")
    good, remote, broken = servers_on_two_hosts
    assert page.locator(f"[data-result='{good.name}'] .badge").inner_text() == "done"
    assert page.locator(f"[data-result='{remote.name}'] .badge").inner_text() == "done"
    assert page.locator(f"[data-result='{broken.name}'] .badge").inner_text() == "failed"
    assert "no-such-binary" in page.locator(f"[data-result='{broken.name}']").inner_text()
    # The list swapped in with the results shows the new states.
    assert page.locator(f"[data-server='{good.name}'] [data-observed] .badge").inner_text() == "running"
    assert page.locator(f"[data-server='{remote.name}'] [data-observed] .badge").inner_text() == "running"


def test_a_large_batch_shows_a_live_progress_bar_then_every_result(logged_in_page: Any, queue_worker: Any) -> None:
    # More than CONTAINERS_BACKGROUND_THRESHOLD servers: a queue job, run by the worker.
    local = DockerHost.objects.create(name="local", base_url=settings.DOCKER_HOST, network_mode="none")
    servers = [
        VpnServer.objects.create(
            host=local,
            name=f"e2e-{RUN_ID}-job-{n}",
            protocol="shadowsocks",
            image=TEST_IMAGE,
            port=31000 + n,
            command=RUNS,
        )
        for n in range(7)
    ]
    page = logged_in_page
    try:
        page.goto("/containers/")
        page.check("[data-host='local'] thead input[type=checkbox]")  # select every server on the host
        page.click("button[name=action][value=create]")
        page.wait_for_selector("#batch-results progress")
        page.wait_for_selector("[data-job-status='finished']", timeout=60_000)
        for server in servers:
            assert page.locator(f"[data-result='{server.name}'] .badge").inner_text() == "done"
        assert "7 done" in page.locator("[data-job-status='finished']").inner_text()
    finally:
        client = docker_client_for(settings.DOCKER_HOST)
        for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
            container.remove(force=True)
        client.close()
