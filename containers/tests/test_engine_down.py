"""The second engine stopped for real: pages render, the host shows unreachable, its items fail fast."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client

from containers.models import DockerHost, VpnServer
from containers.services import servers_start_batch, servers_sync

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def test_with_the_second_engine_down_pages_render_and_its_items_fail_while_the_first_hosts_succeed(
    owner_client: Client,
    local_host: DockerHost,
    second_host: DockerHost,
    make_server: Callable[..., VpnServer],
    stopped_second_engine: None,
) -> None:
    here = [make_server(local_host) for _ in range(2)]
    there = [make_server(second_host) for _ in range(3)]

    for url in ["/containers/", "/containers/hosts/", "/containers/stats/"]:
        response = owner_client.get(url)
        assert response.status_code == 200, url
        assert "unreachable" in response.content.decode() or url == "/containers/stats/"

    outcome = servers_start_batch(servers=VpnServer.objects.all())
    results = {r.server_name: r for r in outcome.results}
    assert all(results[s.name].outcome == "done" for s in here)
    for server in there:
        assert results[server.name].outcome == "failed"
        assert results[server.name].message.startswith("host second: engine unreachable")
    second_host.refresh_from_db()
    assert second_host.reachable is False

    reports = {r.host: r for r in servers_sync()}
    assert reports["second"].reachable is False
    assert reports["local"].reachable is True
    assert set(VpnServer.objects.filter(host=second_host).values_list("observed_state", flat=True)) == {"unknown"}


def test_the_host_check_button_reports_an_engine_that_is_down(
    owner_client: Client, second_host: DockerHost, stopped_second_engine: None
) -> None:
    response = owner_client.post(f"/containers/hosts/{second_host.pk}/check/", follow=True)
    assert "second: unreachable (engine unreachable" in response.content.decode()
    second_host.refresh_from_db()
    assert second_host.reachable is False and second_host.last_error


def test_an_ssh_host_that_does_not_answer_fails_its_items_instead_of_hanging(
    local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    # A documentation address (RFC 5737): nothing answers there.
    remote = DockerHost.objects.create(name="far", base_url="ssh://vpn@192.0.2.10", network_mode="none")
    here = make_server(local_host)
    there = make_server(remote)
    results = {r.server_name: r for r in servers_start_batch(servers=VpnServer.objects.all()).results}
    assert results[here.name].outcome == "done"
    assert results[there.name].outcome == "failed"
    assert results[there.name].message.startswith("host far: engine")


@pytest.fixture
def silent_engine_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung engine."""
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(64)
        yield f"unix://{path}"


def test_a_hung_engine_fails_its_items_with_a_timeout_while_the_other_host_works(
    local_host: DockerHost, make_server: Callable[..., VpnServer], silent_engine_socket: str
) -> None:
    hung = DockerHost.objects.create(name="hung", base_url=silent_engine_socket, network_mode="none")
    here = make_server(local_host)
    there = [make_server(hung) for _ in range(2)]
    results = {r.server_name: r for r in servers_start_batch(servers=VpnServer.objects.all()).results}
    assert results[here.name].outcome == "done"
    for server in there:
        assert (results[server.name].outcome, results[server.name].message) == (
            "failed",
            "host hung: engine did not answer in time",
        )
