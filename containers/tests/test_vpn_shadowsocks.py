"""Shadowsocks end to end: users reach a real ss-manager server with ss-local, added and removed live."""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

import pytest

from containers.kinds import kind_for
from containers.models import ApplyState, DockerHost, VpnServer
from containers.sync import servers_apply, servers_poll_traffic
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    apply_count,
    fetch,
    fetch_until,
    origin,
    ss_client,
    start_server,
    vpn_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch, users_set_active

pytestmark = pytest.mark.django_db(transaction=True)


def _make_users(server: VpnServer, count: int, prefix: str = "s") -> list[VpnUser]:
    rows = [{"username": f"{prefix}{i:05d}", "protocol": "shadowsocks", "server_id": server.pk} for i in range(count)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors[:3]
    return list(VpnUser.objects.filter(pk__in=result.ids).order_by("pk"))


def _converge(server: VpnServer) -> None:
    outcome = servers_apply(server_id=server.pk)
    server.refresh_from_db()
    assert outcome.state == ApplyState.APPLIED, outcome.message


def test_a_shadowsocks_user_fetches_a_page_with_ss_local_and_a_wrong_password_is_refused(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], ss_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "shadowsocks", users_ports=4)
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    user.refresh_from_db()
    assert user.ss_port == server.port + 1

    with ss_client(user.ss_port, user.credential_password) as socks:
        assert fetch_until(socks, f"{origin}/bytes/20000", ok=True) == 20000
    with ss_client(user.ss_port, secrets.token_urlsafe(24)) as socks:
        assert fetch(socks, f"{origin}/bytes/20000", timeout=3) == 0


def test_a_disabled_shadowsocks_user_is_removed_live_and_the_others_stay_connected(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], ss_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "shadowsocks", users_ports=4)
    user, other = _make_users(server, 2)
    _converge(server)
    wait_ready(server)
    user.refresh_from_db()
    other.refresh_from_db()
    with (
        ss_client(user.ss_port, user.credential_password) as mine,
        ss_client(other.ss_port, other.credential_password) as theirs,
    ):
        assert fetch_until(mine, f"{origin}/bytes/1000", ok=True) == 1000
        assert fetch_until(theirs, f"{origin}/bytes/1000", ok=True) == 1000
        other_server_pid = _pid_of_port(server, other.ss_port)

        users_set_active(actor=None, users=VpnUser.objects.filter(pk=user.pk), active=False)
        _converge(server)
        assert fetch_until(mine, f"{origin}/bytes/1000", ok=False) == 0
        assert fetch(theirs, f"{origin}/bytes/1000") == 1000
        # Live: the other user's ss-server process was never restarted.
        assert _pid_of_port(server, other.ss_port) == other_server_pid

        users_set_active(actor=None, users=VpnUser.objects.filter(pk=user.pk), active=True)
        _converge(server)
        assert fetch_until(mine, f"{origin}/bytes/1000", ok=True) == 1000


def _pid_of_port(server: VpnServer, port: int | None) -> str:
    from containers.tests.vpn_fixtures import exec_in

    return exec_in(server, "cat", f"/run/ss/.shadowsocks_{port}.pid").strip()


def test_bytes_through_shadowsocks_reach_the_users_traffic(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], ss_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "shadowsocks", users_ports=2)
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    user.refresh_from_db()
    size = 1_000_000
    with ss_client(user.ss_port, user.credential_password) as socks:
        assert fetch_until(socks, f"{origin}/bytes/{size}", ok=True) == size
    # Each ss-server reports its bytes to the manager every few seconds.
    kind = kind_for(server)
    for _ in range(100):
        if sum(down for _, down in kind.counters(server).values()) >= size:
            break
        time.sleep(0.2)
    servers_poll_traffic()
    user.refresh_from_db()
    assert size <= user.used_traffic <= size * 1.05, user.used_traffic
