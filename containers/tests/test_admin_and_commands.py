"""Admin actions and management commands call the same services as the pages."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import docker
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client

from conftest import RUN_ID, TEST_IMAGE, DockerSandbox
from containers.models import DockerHost, VpnServer
from containers.services import servers_start_batch
from containers.stats import read_samples

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def test_the_admin_restart_action_restarts_the_selected_servers_and_reports_a_count(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    servers = [make_server(local_host) for _ in range(2)]
    response = owner_client.post(
        "/admin/containers/vpnserver/",
        {"action": "restart_servers", "_selected_action": [s.pk for s in servers]},
        follow=True,
    )
    assert "Restart: 2 done, 0 unchanged, 0 failed" in response.content.decode()
    assert set(VpnServer.objects.values_list("observed_state", flat=True)) == {"running"}


def test_the_admin_offers_no_stock_delete_that_would_orphan_containers(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    make_server(local_host)
    page = owner_client.get("/admin/containers/vpnserver/").content.decode()
    assert "delete_selected" not in page
    assert "remove_containers" in page


def test_the_admin_remove_action_needs_the_delete_permission(
    make_operator: Callable[..., User], local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    server = make_server(local_host)
    client = Client()
    client.force_login(make_operator("containers.view_vpnserver", "containers.change_vpnserver"))
    page = client.get("/admin/containers/vpnserver/").content.decode()
    assert "restart_servers" in page and "remove_containers" not in page
    client.post("/admin/containers/vpnserver/", {"action": "remove_containers", "_selected_action": [server.pk]})
    server.refresh_from_db()
    assert server.observed_state == "missing"  # nothing was run


def test_syncservers_links_a_container_started_by_hand_with_the_servers_labels(
    local_host: DockerHost, make_server: Callable[..., VpnServer], docker_sandbox: DockerSandbox
) -> None:
    server = make_server(local_host)
    container = docker_sandbox.run(server.name, labels={"vpnadmin.managed": "true", "vpnadmin.server": str(server.pk)})
    out = StringIO()
    call_command("syncservers", stdout=out)
    assert "local: 1 changed, 0 vanished, 1 linked" in out.getvalue()
    server.refresh_from_db()
    assert (server.container_id, server.observed_state) == (container.id, "running")


def test_syncservers_reports_labelled_containers_of_no_known_server(
    local_host: DockerHost, docker_sandbox: DockerSandbox
) -> None:
    docker_sandbox.run(f"stray-{RUN_ID}", labels={"vpnadmin.managed": "true", "vpnadmin.server": "999999"})
    out = StringIO()
    call_command("syncservers", "--host", "local", stdout=out)
    assert "1 labelled containers of no known server" in out.getvalue()


def test_syncservers_refuses_an_unknown_host_name(local_host: DockerHost) -> None:
    with pytest.raises(CommandError, match="No enabled host named nowhere"):
        call_command("syncservers", "--host", "nowhere", stdout=StringIO())


def test_collectstats_takes_one_pass_and_keeps_a_sample_of_every_running_server(
    local_host: DockerHost, second_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    servers = [make_server(local_host), make_server(second_host)]
    stopped = make_server(local_host, image=TEST_IMAGE)
    servers_start_batch(servers=servers)
    out = StringIO()
    call_command("collectstats", stdout=out)
    assert "2 sampled, 0 not running, 0 failed" in out.getvalue()
    samples = read_samples([s.pk for s in [*servers, stopped]])
    assert set(samples) == {s.pk for s in servers}
    sample = samples[servers[0].pk]
    assert sample["memory_limit"] > 0 and sample["pids"] >= 1


def test_the_admin_delete_action_removes_containers_before_their_records(
    owner_client: Client,
    local_host: DockerHost,
    make_server: Callable[..., VpnServer],
    docker_client: docker.DockerClient,
) -> None:
    server = make_server(local_host)
    servers_start_batch(servers=[server])
    server.refresh_from_db()
    response = owner_client.post(
        "/admin/containers/vpnserver/", {"action": "delete_servers", "_selected_action": [server.pk]}, follow=True
    )
    assert "1 servers deleted" in response.content.decode()
    assert not VpnServer.objects.exists()
    ids = [c.id for c in docker_client.containers.list(all=True)]
    assert server.container_id not in ids
