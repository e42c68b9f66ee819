"""The containers pages through the real client: servers, batches, hosts, jobs, the stats panel."""

from __future__ import annotations

from collections.abc import Callable

import docker
import pytest
from django.contrib.auth.models import User
from django.test import Client

from conftest import TEST_IMAGE
from containers.collector import collect_stats_once
from containers.models import BatchJob, DockerHost, VpnServer
from containers.services import servers_start_batch

pytestmark = [pytest.mark.django_db, pytest.mark.docker]


def test_the_servers_page_groups_servers_by_host_with_state_badges(
    owner_client: Client, local_host: DockerHost, second_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    a = make_server(local_host)
    b = make_server(second_host)
    response = owner_client.get("/containers/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-host="{local_host.name}"' in page and f'data-host="{second_host.name}"' in page
    assert a.name in page and b.name in page
    assert page.count("badge-up") >= 2  # both engines answer


def test_with_no_host_the_servers_page_offers_the_local_engine_and_adds_it_only_on_a_post(
    owner_client: Client,
) -> None:
    page = owner_client.get("/containers/").content.decode()
    assert 'data-empty="hosts"' in page and "Add the local engine" in page
    assert not DockerHost.objects.exists()  # a GET writes nothing
    response = owner_client.post("/containers/hosts/add-local/", follow=True)
    assert "Host local added" in response.content.decode()
    assert list(DockerHost.objects.values_list("name", flat=True)) == ["local"]
    assert owner_client.post("/containers/hosts/add-local/").status_code == 302
    assert DockerHost.objects.count() == 1


def test_adding_the_local_engine_needs_the_add_host_permission(make_operator: Callable[..., User]) -> None:
    client = Client()
    client.force_login(make_operator("containers.view_vpnserver", "containers.view_dockerhost"))
    assert client.post("/containers/hosts/add-local/").status_code == 403
    assert not DockerHost.objects.exists()


def test_a_batch_posted_from_the_page_shows_one_result_per_server(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    good = make_server(local_host)
    bad = make_server(local_host, command="no-such-binary")
    response = owner_client.post(
        "/containers/batch/", {"action": "start", "server": [good.pk, bad.pk]}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "<html" not in page  # the htmx partial only
    assert f'data-result="{good.name}"' in page and f'data-result="{bad.name}"' in page
    assert "1 done, 0 unchanged, 1 failed" in page
    assert "no-such-binary" in page


def test_a_batch_without_servers_or_with_an_unknown_action_is_refused_with_a_message(
    owner_client: Client, local_host: DockerHost
) -> None:
    response = owner_client.post("/containers/batch/", {"action": "start"})
    assert response.status_code == 400
    assert "Select servers." in response.content.decode()
    response = owner_client.post("/containers/batch/", {"action": "explode", "server": ["1"]})
    assert response.status_code == 400
    assert "explode is not one of the available choices" in response.content.decode()


def test_a_batch_needs_the_permission_of_its_action(
    make_operator: Callable[..., User], local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    server = make_server(local_host)
    client = Client()
    client.force_login(make_operator("containers.view_vpnserver", "containers.change_vpnserver"))
    assert client.post("/containers/batch/", {"action": "remove", "server": [server.pk]}).status_code == 403
    assert client.post("/containers/batch/", {"action": "stop", "server": [server.pk]}).status_code == 200


def test_a_stranger_gets_403_on_every_containers_page(stranger_client: Client, local_host: DockerHost) -> None:
    for url in ["/containers/", "/containers/hosts/", "/containers/new/", "/containers/stats/", "/containers/jobs/1/"]:
        assert stranger_client.get(url).status_code == 403, url
    for url in ["/containers/batch/", "/containers/sync/", f"/containers/hosts/{local_host.pk}/check/"]:
        assert stranger_client.post(url).status_code == 403, url


def test_anonymous_visitors_are_sent_to_the_login_page() -> None:
    response = Client().get("/containers/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_batch_form_refuses_a_post_without_the_csrf_token(csrf_client: Client, local_host: DockerHost) -> None:
    assert csrf_client.post("/containers/batch/", {"action": "stop"}).status_code == 403


def test_the_stats_panel_reads_samples_from_the_cache_in_one_request(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    servers = [make_server(local_host) for _ in range(3)]
    servers_start_batch(servers=VpnServer.objects.all())
    assert collect_stats_once().sampled == 3
    second = collect_stats_once()  # CPU % from consecutive samples (the first pass's, in the cache)
    assert second.sampled == 3
    response = owner_client.get("/containers/stats/", headers={"HX-Request": "true"})
    page = response.content.decode()
    assert response.status_code == 200
    assert "3 of 3 running servers sampled" in page
    assert all(f'data-stats-server="{s.name}"' in page for s in servers)
    assert 'hx-trigger="poll, refresh-now" data-poll="5"' in page  # static/js/app.js polls while visible


def test_adding_a_server_through_the_form_creates_its_container(owner_client: Client, local_host: DockerHost) -> None:
    response = owner_client.post(
        "/containers/new/",
        {
            "host": local_host.pk,
            "name": "vpn-form-made",
            "protocol": "wireguard",
            "image": TEST_IMAGE,
            "port": 51820,
            "command": "sleep 60",
            "environment_text": "WG_MTU=1420\n",
            "options_text": '{"mem_limit": "64m", "pids_limit": 50}',
            "create_now": "on",
        },
    )
    assert response.status_code == 302
    server = VpnServer.objects.get(name="vpn-form-made")
    assert server.environment == {"WG_MTU": "1420"}
    assert server.observed_state == "created" and server.container_id


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"name": "-bad name"}, "name", "starting with a letter or digit"),
        ({"name": "x"}, "name", "at least two characters"),
        ({"image": "vpnadmin-test/nope:1"}, "image", "is not on host local"),
        ({"port": 70000}, "port", "less than or equal to 65535"),
        ({"environment_text": "not an assignment"}, "environment_text", "Line 1: write NAME=value"),
        ({"options_text": "{not json"}, "options_text", "Not valid JSON"),
        ({"options_text": '{"privileged": true}'}, "options_text", "privileged mode is refused"),
    ],
)
def test_the_server_form_refuses_bad_input_and_creates_nothing(
    owner_client: Client, local_host: DockerHost, fields: dict[str, object], field: str, message: str
) -> None:
    data = {"host": local_host.pk, "name": "vpn-ok", "protocol": "vless", "image": TEST_IMAGE, "port": 443}
    data.update(fields)
    response = owner_client.post("/containers/new/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not VpnServer.objects.exists()


def test_the_server_form_refuses_a_port_or_name_already_used_on_the_host(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    taken = make_server(local_host)
    response = owner_client.post(
        "/containers/new/",
        {"host": local_host.pk, "name": taken.name, "protocol": "vless", "image": TEST_IMAGE, "port": taken.port},
    )
    page = response.content.decode()
    assert response.status_code == 400
    assert f"Port {taken.port} is already used by server {taken.name}" in page
    assert f"A server named {taken.name} already exists" in page
    assert VpnServer.objects.count() == 1


def test_the_sync_button_records_a_container_removed_behind_the_apps_back(
    owner_client: Client,
    local_host: DockerHost,
    make_server: Callable[..., VpnServer],
    docker_client: docker.DockerClient,
) -> None:
    server = make_server(local_host)
    servers_start_batch(servers=[server])
    server.refresh_from_db()
    docker_client.containers.get(server.container_id).remove(force=True)
    response = owner_client.post("/containers/sync/", follow=True)
    assert "local: 0 changed, 1 vanished" in response.content.decode()
    server.refresh_from_db()
    assert (server.observed_state, server.container_id) == ("missing", "")


def test_disabling_a_host_keeps_its_servers_out_of_batches(
    owner_client: Client, local_host: DockerHost, second_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    server = make_server(second_host)
    response = owner_client.post(f"/containers/hosts/{second_host.pk}/disable/", follow=True)
    assert "second disabled." in response.content.decode()
    outcome = servers_start_batch(servers=[VpnServer.objects.select_related("host").get(pk=server.pk)])
    assert [(r.outcome, r.message) for r in outcome.results] == [("failed", "host second is disabled")]
    owner_client.post(f"/containers/hosts/{second_host.pk}/enable/")
    second_host.refresh_from_db()
    assert second_host.enabled is True


def test_changing_a_host_needs_the_change_permission(
    make_operator: Callable[..., User], second_host: DockerHost
) -> None:
    client = Client()
    client.force_login(make_operator("containers.view_dockerhost"))
    assert client.post(f"/containers/hosts/{second_host.pk}/disable/").status_code == 403
    second_host.refresh_from_db()
    assert second_host.enabled is True


def test_an_unknown_job_is_a_404_page(owner_client: Client) -> None:
    response = owner_client.get("/containers/jobs/999999/")
    assert response.status_code == 404
    assert "There is no such job." in response.content.decode()


def test_the_servers_page_polls_the_stats_panel_only_while_the_tab_is_visible(
    owner_client: Client, local_host: DockerHost
) -> None:
    page = owner_client.get("/containers/").content.decode()
    assert 'hx-get="/containers/stats/"' in page
    # Polled from static/js/app.js while the tab is visible (no htmx trigger filter: the CSP forbids eval).
    assert 'hx-trigger="poll, refresh-now" data-poll="5"' in page


def test_stats_for_servers_on_two_hosts_carry_cpu_memory_and_pids(
    local_host: DockerHost, second_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    from containers.services import servers_stats_batch

    servers = [make_server(local_host), make_server(second_host)]
    stopped = make_server(local_host)
    servers_start_batch(servers=servers)
    servers_stats_batch_results = servers_stats_batch(servers=VpnServer.objects.all())
    results = {r.server_name: r for r in servers_stats_batch_results}
    for server in servers:
        sample = results[server.name].stats
        assert results[server.name].outcome == "done"
        assert sample is not None
        assert sample["cpu_percent"] is not None and sample["memory_limit"] > 0 and sample["pids"] >= 1
    assert (results[stopped.name].outcome, results[stopped.name].stats) == ("failed", None)


def test_opening_the_page_of_a_job_whose_worker_died_changes_nothing_and_says_no_worker_runs(
    owner_client: Client,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    job = BatchJob.objects.create(action="start", server_ids=[1, 2], total=2, done=1, status="running")
    BatchJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    before = BatchJob.objects.filter(pk=job.pk).values().get()
    page = owner_client.get(f"/containers/jobs/{job.pk}/").content.decode()
    assert 'data-job-status="running"' in page
    assert 'data-worker="down"' in page and "procrastinate worker" in page
    assert BatchJob.objects.filter(pk=job.pk).values().get() == before


def test_the_collector_computes_cpu_from_consecutive_samples_and_tags_them_by_host(
    local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    from containers.stats import read_samples
    from perf.cache import tagged_cache

    server = make_server(local_host)
    servers_start_batch(servers=[server])
    collect_stats_once()
    assert read_samples([server.pk])[server.pk]["cpu_percent"] is None  # one reading: no rate yet
    collect_stats_once()
    assert read_samples([server.pk])[server.pk]["cpu_percent"] is not None
    tagged_cache().invalidate_tags([f"host:{local_host.pk}"])
    assert read_samples([server.pk]) == {}


def test_the_stats_panel_says_so_when_no_collector_has_run(owner_client: Client, local_host: DockerHost) -> None:
    page = owner_client.get("/containers/stats/", headers={"HX-Request": "true"}).content.decode()
    assert 'data-stats-state="none"' in page
    assert "the stats collector" in page


def test_the_dashboard_checks_every_enabled_host(
    owner_client: Client, local_host: DockerHost, second_host: DockerHost
) -> None:
    DockerHost.objects.create(name="off", base_url=local_host.base_url, enabled=False)
    page = owner_client.get("/").content.decode()
    assert 'data-component="docker:local"' in page and 'data-component="docker:second"' in page
    assert 'data-component="docker:off"' not in page
