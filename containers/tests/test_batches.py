"""Batch actions against the two real engines: partial failure, repeat safety, two hosts."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest

from conftest import DockerSandbox, docker_client_for
from containers.models import DockerHost, VpnServer
from containers.services import (
    BatchOutcome,
    servers_create_batch,
    servers_remove_batch,
    servers_restart_batch,
    servers_start_batch,
    servers_stop_batch,
)
from vpnadmin.models import AuditEntry

from .conftest import SECOND_SOCKET

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def _by_name(outcome: BatchOutcome) -> dict[str, tuple[str, str]]:
    return {r.server_name: (r.outcome, r.message) for r in outcome.results}


def test_starting_servers_on_two_hosts_runs_each_container_on_its_own_engine(
    local_host: DockerHost, second_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    a = make_server(local_host)
    b = make_server(second_host)
    outcome = servers_start_batch(servers=VpnServer.objects.all())
    assert _by_name(outcome) == {a.name: ("done", "created and started"), b.name: ("done", "created and started")}
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.observed_state, b.observed_state) == ("running", "running")
    remote = docker_client_for(SECOND_SOCKET).containers.get(b.container_id)
    assert remote.labels["vpnadmin.managed"] == "true"
    assert remote.labels["vpnadmin.server"] == str(b.pk)
    with pytest.raises(docker.errors.NotFound):
        docker_client_for(SECOND_SOCKET).containers.get(a.container_id)


def test_a_container_whose_command_fails_at_start_fails_alone_with_dockers_message(
    local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    good = [make_server(local_host) for _ in range(3)]
    bad = make_server(local_host, command="no-such-binary --serve")
    outcome = servers_start_batch(servers=VpnServer.objects.all())
    results = _by_name(outcome)
    assert results[bad.name][0] == "failed"
    assert "no-such-binary" in results[bad.name][1]
    assert all(results[s.name] == ("done", "created and started") for s in good)
    bad.refresh_from_db()
    assert bad.last_error and bad.container_id  # the container exists; its start failed
    assert AuditEntry.objects.filter(action="servers_start").count() == 1
    entry = AuditEntry.objects.get(action="servers_start")
    assert entry.detail == {"done": 3, "unchanged": 0, "failed": 1}


def test_every_action_is_safe_to_repeat(local_host: DockerHost, make_server: Callable[..., VpnServer]) -> None:
    servers = VpnServer.objects.filter(pk__in=[make_server(local_host).pk for _ in range(2)])
    assert {r.outcome for r in servers_create_batch(servers=servers).results} == {"done"}
    assert {r.outcome for r in servers_create_batch(servers=servers).results} == {"unchanged"}
    assert {r.outcome for r in servers_start_batch(servers=servers).results} == {"done"}
    assert {r.outcome for r in servers_start_batch(servers=servers).results} == {"unchanged"}
    assert {r.outcome for r in servers_restart_batch(servers=servers).results} == {"done"}
    assert {r.outcome for r in servers_stop_batch(servers=servers).results} == {"done"}
    assert {r.outcome for r in servers_stop_batch(servers=servers).results} == {"unchanged"}
    assert {r.outcome for r in servers_remove_batch(servers=servers).results} == {"done"}
    assert {r.outcome for r in servers_remove_batch(servers=servers).results} == {"unchanged"}
    assert set(servers.values_list("observed_state", "container_id")) == {("missing", "")}


def test_an_unknown_image_fails_its_item_with_a_clear_message(
    local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    good = make_server(local_host)
    bad = make_server(local_host, image="vpnadmin-test/does-not-exist:1")
    results = _by_name(servers_create_batch(servers=VpnServer.objects.all()))
    assert results[good.name] == ("done", "created")
    assert results[bad.name] == ("failed", f"image vpnadmin-test/does-not-exist:1 is not on host {local_host.name}")


def test_a_container_named_like_the_server_but_not_its_own_is_not_touched(
    local_host: DockerHost, make_server: Callable[..., VpnServer], docker_sandbox: DockerSandbox
) -> None:
    server = make_server(local_host)
    docker_sandbox.run(server.name)
    outcome, message = _by_name(servers_stop_batch(servers=[server]))[server.name]
    assert outcome == "failed"
    assert "is not this server's" in message
