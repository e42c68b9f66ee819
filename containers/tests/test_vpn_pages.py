"""Data-plane pages: the server page, the user's usage panel, the dashboard's apply counts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from containers.models import ApplyState, DockerHost, VpnServer
from users.models import VpnUser
from users.services import users_create_batch


@pytest.fixture
def server(db: None) -> VpnServer:
    host = DockerHost.objects.create(name="pages", base_url="unix:///var/run/docker.sock", network_mode="none")
    return VpnServer.objects.create(
        host=host, name="vless-1", protocol="vless", image="vpnadmin-test/v2ray:latest", port=30443,
        public_host="vpn.example.net", apply_state=ApplyState.FAILED, apply_error="invalid request user id",
        traffic_total=5 * 2**20, applied_at=timezone.now(),
    )  # fmt: skip


def _users(server: VpnServer, count: int) -> list[int]:
    rows = [{"username": f"p{i:04d}", "protocol": "vless", "server_id": server.pk} for i in range(count)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors
    return result.ids


def test_the_server_page_shows_users_apply_state_the_cores_message_and_traffic(
    owner_client: Client, server: VpnServer
) -> None:
    ids = _users(server, 3)
    VpnUser.objects.filter(pk=ids[0]).update(is_active=False)
    response = owner_client.get(reverse("containers:server_detail", args=[server.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-users="3"' in body
    assert "3 assigned, 2 served" in body
    assert "invalid request user id" in body
    assert "5.0\xa0MB" in body
    assert "vpn.example.net:30443" in body


def test_the_server_panel_refresh_is_a_partial_read_from_the_cache(
    owner_client: Client, server: VpnServer, django_assert_max_num_queries: Any
) -> None:
    url = reverse("containers:server_detail", args=[server.pk])
    owner_client.get(url, headers={"HX-Request": "true"})
    with django_assert_max_num_queries(2):  # the session and its user; the panel comes from the cache
        response = owner_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and 'data-apply-state="failed"' in body


def test_a_stranger_may_not_see_a_server_page_or_apply_it(stranger_client: Client, server: VpnServer) -> None:
    assert stranger_client.get(reverse("containers:server_detail", args=[server.pk])).status_code == 403
    assert stranger_client.post(reverse("containers:server_apply", args=[server.pk])).status_code == 403
    assert stranger_client.get(reverse("containers:dataplane")).status_code == 403


def test_a_read_only_operator_sees_the_page_but_may_not_apply(
    make_operator: Callable[..., User], server: VpnServer
) -> None:
    client = Client()
    client.force_login(make_operator("containers.view_vpnserver"))
    assert client.get(reverse("containers:server_detail", args=[server.pk])).status_code == 200
    assert client.post(reverse("containers:server_apply", args=[server.pk])).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_apply_now_marks_the_server_pending(owner_client: Client, server: VpnServer) -> None:
    response = owner_client.post(reverse("containers:server_apply", args=[server.pk]))
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.apply_state == ApplyState.PENDING and server.dirty_at is not None


def test_the_dashboard_panel_counts_pending_and_failed_servers(owner_client: Client, server: VpnServer) -> None:
    VpnServer.objects.create(
        host=server.host, name="ss-1", protocol="shadowsocks", image="vpnadmin-test/shadowsocks:latest", port=30500
    )
    body = owner_client.get(reverse("containers:dataplane")).content.decode()
    assert 'data-servers-pending="1"' in body and 'data-servers-failed="1"' in body
    assert "vless-1" in body
    assert reverse("containers:dataplane") in owner_client.get(reverse("dashboard")).content.decode()


def test_the_user_usage_panel_shows_the_server_usage_and_last_seen(owner_client: Client, server: VpnServer) -> None:
    (pk,) = _users(server, 1)
    VpnUser.objects.filter(pk=pk).update(used_traffic=3 * 2**20, last_online_at=timezone.now())
    body = owner_client.get(reverse("containers:user_usage", args=[pk])).content.decode()
    assert "vless-1" in body and "3.0\xa0MB" in body and "never" not in body
    assert (
        reverse("containers:user_usage", args=[pk])
        in owner_client.get(reverse("users:detail", args=[pk])).content.decode()
    )


def test_the_server_list_shows_each_servers_apply_state(owner_client: Client, server: VpnServer) -> None:
    body = owner_client.get(reverse("containers:servers")).content.decode()
    assert 'data-apply-state="failed"' in body
    assert reverse("containers:server_detail", args=[server.pk]) in body
