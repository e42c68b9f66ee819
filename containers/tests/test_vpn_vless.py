"""VLESS end to end: users made in the panel reach a real v2ray server with a real v2ray client."""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from containers.models import ApplyState, DockerHost, VpnServer
from containers.sync import servers_apply, servers_poll_traffic
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    apply_count,
    fetch,
    fetch_until,
    origin,
    start_server,
    vless_client,
    vpn_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch, users_set_active

pytestmark = pytest.mark.django_db(transaction=True)


def _make_users(server: VpnServer, count: int, prefix: str = "v") -> list[VpnUser]:
    rows = [{"username": f"{prefix}{i:05d}", "protocol": "vless", "server_id": server.pk} for i in range(count)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors[:3]
    return list(VpnUser.objects.filter(pk__in=result.ids).order_by("pk"))


def _converge(server: VpnServer) -> Any:
    outcome = servers_apply(server_id=server.pk)
    server.refresh_from_db()
    return outcome


def test_a_vless_user_created_in_the_panel_fetches_a_page_and_another_uuid_is_refused(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    (user,) = _make_users(server, 1)
    _converge(server)
    assert server.apply_state == ApplyState.APPLIED, server.apply_error
    wait_ready(server)

    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/20000", ok=True) == 20000
    with vless_client(server.port, str(uuid.uuid4())) as socks:
        assert fetch(socks, f"{origin}/bytes/20000", timeout=3) == 0


def test_a_disabled_vless_user_is_refused_after_the_next_apply_and_works_again_when_enabled(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    user, other = _make_users(server, 2)
    _converge(server)
    wait_ready(server)
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000

        users_set_active(actor=None, users=VpnUser.objects.filter(pk=user.pk), active=False)
        server.refresh_from_db()
        assert server.apply_state == ApplyState.PENDING
        _converge(server)
        assert server.apply_state == ApplyState.APPLIED
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=False) == 0

        users_set_active(actor=None, users=VpnUser.objects.filter(pk=user.pk), active=True)
        _converge(server)
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000
    with vless_client(server.port, str(other.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000


def test_applying_the_same_users_twice_reloads_the_core_once(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer]
) -> None:
    server = start_server(vpn_host, "vless")
    _make_users(server, 3)
    first = _converge(server)
    second = _converge(server)
    assert first.changed and not second.changed
    assert apply_count(server) == 1


def test_a_config_the_core_refuses_leaves_the_previous_one_serving_and_the_server_failed(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    # A port the core cannot use: v2ray -test refuses the config before it is swapped in.
    VpnServer.objects.filter(pk=server.pk).update(environment={"VPNADMIN_LISTEN": "not-an-address"})
    _make_users(server, 1, prefix="w")
    outcome = _converge(server)
    assert outcome.state == ApplyState.FAILED
    assert server.apply_state == ApplyState.FAILED
    assert "not-an-address" in server.apply_error or "listen" in server.apply_error.lower(), server.apply_error
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000


def test_bytes_fetched_through_vless_reach_the_users_traffic_within_one_poll_and_a_restart_does_not_double_count(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    size = 2_000_000
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/{size}", ok=True) == size
    servers_poll_traffic()
    user.refresh_from_db()
    assert size <= user.used_traffic <= size * 1.05
    assert user.last_online_at is not None
    counted = user.used_traffic

    # The core restarts (its counters with it): nothing new, nothing counted twice.
    from containers.services import servers_restart_batch

    servers_restart_batch(servers=VpnServer.objects.filter(pk=server.pk))
    wait_ready(server)
    servers_poll_traffic()
    user.refresh_from_db()
    assert user.used_traffic == counted

    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/{size}", ok=True) == size
    servers_poll_traffic()
    user.refresh_from_db()
    assert counted + size <= user.used_traffic <= counted + size * 1.05


def test_an_apply_counts_the_bytes_its_reload_is_about_to_reset_once(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    size = 1_000_000
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/{size}", ok=True) == size

    # No poll in between: the apply that adds a user reads the counters in its own exec,
    # right before the reload that resets them.
    _make_users(server, 1, prefix="w")
    outcome = _converge(server)
    assert outcome.changed and outcome.calls == 1
    user.refresh_from_db()
    assert size <= user.used_traffic <= size * 1.05
    counted = user.used_traffic

    wait_ready(server)
    servers_poll_traffic()
    user.refresh_from_db()
    assert user.used_traffic == counted


def test_a_recreated_container_is_found_by_the_converge_pass_and_served_again(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    from containers.services import servers_remove_batch, servers_start_batch
    from containers.sync import servers_needing_apply

    server = start_server(vpn_host, "vless")
    (user,) = _make_users(server, 1)
    _converge(server)
    assert server.pk not in servers_needing_apply()
    # The container goes away behind the panel's back and a new one starts without a config.
    servers_remove_batch(servers=VpnServer.objects.filter(pk=server.pk))
    servers_start_batch(servers=VpnServer.objects.filter(pk=server.pk))
    assert server.pk in servers_needing_apply()
    server.refresh_from_db()
    assert server.apply_state == ApplyState.PENDING
    _converge(server)
    wait_ready(server)
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000
