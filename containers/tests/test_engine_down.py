"""The second engine stopped for real: pages render, the host shows unreachable, its items fail fast."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.test import Client

from containers.engine import close_clients
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


@pytest.fixture
def silent_tcp_listener() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never sends a byte (not even an
    ssh banner): a wedged sshd, or a firewall that swallows the session."""
    held: list[socket.socket] = []
    stop = threading.Event()
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _ssh_children() -> list[int]:
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if name == "ssh" and int(rest[1]) == me:
            found.append(int(entry.name))
    return found


@pytest.fixture
def short_engine_deadlines(settings: object) -> Iterator[None]:
    """Calls to engines give up after 1 s; ssh itself would wait 5 s for the server's greeting."""
    settings.DOCKER_TIMEOUT = 10  # type: ignore[attr-defined]
    settings.HEALTH_CHECK_TIMEOUT = 1  # type: ignore[attr-defined]
    close_clients()
    yield
    close_clients()


def test_an_ssh_engine_that_never_answers_fails_on_the_read_deadline_and_its_ssh_process_ends(
    local_host: DockerHost,
    make_server: Callable[..., VpnServer],
    silent_tcp_listener: int,
    short_engine_deadlines: None,
) -> None:
    # Before the socket pair, docker-py read ssh's stdout with no deadline: the call lasted as
    # long as ssh did, and ended "unreachable" when ssh gave up, not "did not answer in time".
    silent = DockerHost.objects.create(
        name="silent", base_url=f"ssh://vpn@127.0.0.1:{silent_tcp_listener}", network_mode="none"
    )
    here = make_server(local_host)
    there = make_server(silent)
    results = {r.server_name: r for r in servers_start_batch(servers=VpnServer.objects.all()).results}
    assert results[here.name].outcome == "done"
    assert (results[there.name].outcome, results[there.name].message) == (
        "failed",
        "host silent: engine did not answer in time",
    )
    close_clients()
    assert _ssh_children() == []


def test_with_a_hung_engine_the_servers_page_shows_it_unreachable_and_the_other_host_up(
    owner_client: Client, local_host: DockerHost, silent_engine_socket: str
) -> None:
    DockerHost.objects.create(name="hung", base_url=silent_engine_socket, network_mode="none")
    page = owner_client.get("/containers/").content.decode()
    hung = page[page.index('data-host="hung"') :][:600]
    local = page[page.index(f'data-host="{local_host.name}"') :][:600]
    assert "badge-unreachable" in hung
    assert "did not answer in time" in hung or "no answer within" in hung
    assert "badge-up" in local
