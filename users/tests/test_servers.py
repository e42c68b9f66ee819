"""Users linked to the VPN server that serves them: filter, list column, cache tags."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from containers.models import DockerHost, VpnServer
from perf.cache import tagged_cache
from users import services
from users.models import VpnUser
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db


def _server(name: str) -> VpnServer:
    host, _ = DockerHost.objects.get_or_create(name="test-host", defaults={"base_url": "unix:///var/run/docker.sock"})
    port = 4433 + VpnServer.objects.filter(host=host).count()
    return VpnServer.objects.create(host=host, name=name, protocol="vless", image="vpnadmin-test/busybox", port=port)


def test_the_list_filters_by_server_and_shows_its_name(owner_client: Client) -> None:
    server = _server("edge-1")
    ids = make_users(4)
    services.users_update_batch(actor=None, changes={pk: {"server_id": server.pk} for pk in ids[:2]})
    html = owner_client.get("/users/", {"server": str(server.pk)}).content.decode()
    assert "user0000" in html and "user0001" in html and "user0002" not in html and "edge-1" in html
    html = owner_client.get("/users/", {"server": "none"}).content.decode()
    assert "user0002" in html and "user0000" not in html


def test_moving_users_invalidates_both_servers_pages(django_capture_on_commit_callbacks: Any) -> None:
    old, new = _server("edge-old"), _server("edge-new")
    ids = make_users(2)
    services.users_update_batch(actor=None, changes={pk: {"server_id": old.pk} for pk in ids})
    calls = {"old": 0, "new": 0}

    def probe(name: str, server: VpnServer) -> None:
        def compute() -> int:
            calls[name] += 1
            return calls[name]

        tagged_cache().get_or_set(f"probe-{name}", compute, 60, tags=[f"server:{server.pk}"])

    probe("old", old)
    probe("new", new)
    with django_capture_on_commit_callbacks(execute=True):
        services.users_update_batch(actor=None, changes={pk: {"server_id": new.pk} for pk in ids})
    probe("old", old)
    probe("new", new)
    assert calls == {"old": 2, "new": 2}
    assert set(VpnUser.objects.values_list("server_id", flat=True)) == {new.pk}


def test_a_bulk_action_invalidates_the_servers_of_the_users_it_touched(django_capture_on_commit_callbacks: Any) -> None:
    server = _server("edge-2")
    ids = make_users(3)
    services.users_update_batch(actor=None, changes={ids[0]: {"server_id": server.pk}})
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return 1

    tagged_cache().get_or_set("probe", compute, 60, tags=[f"server:{server.pk}"])
    with django_capture_on_commit_callbacks(execute=True):
        services.users_set_active(actor=None, users=VpnUser.objects.all(), active=False)
    tagged_cache().get_or_set("probe", compute, 60, tags=[f"server:{server.pk}"])
    assert len(computed) == 2


def test_a_server_added_through_the_service_appears_in_the_filter_at_once(
    owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    from containers.services import servers_create

    _server("edge-1")
    assert "edge-1" in owner_client.get("/users/").content.decode()  # the choices are now cached
    host = DockerHost.objects.get(name="test-host")
    with django_capture_on_commit_callbacks(execute=True):
        servers_create(actor=None, host=host, name="edge-2", protocol="vless", image="vpnadmin-test/busybox", port=4500)
    assert ">edge-2</option>" in owner_client.get("/users/").content.decode()
