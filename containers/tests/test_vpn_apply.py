"""Applies through the real queue: one per server per batch, retried while an engine is down.

A batch's writes mark servers dirty after commit; the apply task's queueing lock keeps at
most one waiting apply per server, so however many writes touch a server before its
apply runs, the server takes one change.
"""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from conftest import QueueWorker
from containers.models import ApplyState, DockerHost, ObservedState, VpnServer
from containers.sync import EngineUnavailable, servers_apply, servers_needing_apply
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    apply_count,
    exec_in,
    fetch_until,
    origin,
    start_server,
    tun_host,
    vless_client,
    vpn_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch, users_set_active, users_update_batch

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_applies(worker: QueueWorker, server: VpnServer) -> int:
    with worker._connect() as conn:
        row = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'",
            [f"containers.apply_server:{server.pk}"],
        ).fetchone()
    return int(row[0])


def _wait_applied(server: VpnServer, worker: QueueWorker, *, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        server.refresh_from_db()
        if server.apply_state == ApplyState.APPLIED:
            return
        time.sleep(0.3)
    pytest.fail(f"server {server.name} is {server.apply_state} ({server.apply_error}):\n{worker.log()[-2000:]}")


def test_a_batch_of_1000_users_and_the_writes_after_it_cost_the_server_exactly_one_apply(
    queue_worker: QueueWorker, tun_host: DockerHost, start_server: Callable[..., VpnServer]
) -> None:
    queue_worker.stop()  # nothing runs while the writes land: every request must join one apply
    server = start_server(tun_host, "wireguard", wg_subnet="10.9.0.0/21")
    rows = [{"username": f"b{i:05d}", "protocol": "wireguard", "server_id": server.pk} for i in range(1000)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok and len(result.ids) == 1000
    users_set_active(actor=None, users=VpnUser.objects.filter(pk__in=result.ids[:10]), active=False)
    users_update_batch(actor=None, changes={pk: {"note": "vip"} for pk in result.ids[10:20]})
    assert _waiting_applies(queue_worker, server) == 1

    queue_worker.start()
    _wait_applied(server, queue_worker)
    assert apply_count(server) == 1
    peers = exec_in(server, "wg", "show", "wg0", "peers").split()
    assert len(peers) == 990
    assert set(peers) == set(
        VpnUser.objects.filter(server=server, is_active=True).values_list("wg_public_key", flat=True)
    )


def test_10000_users_on_one_vless_server_render_and_apply_in_the_queue_and_a_bulk_disable_cuts_them_off(
    queue_worker: QueueWorker,
    vpn_host: DockerHost,
    start_server: Callable[..., VpnServer],
    vless_client: Any,
    origin: str,
) -> None:
    server = start_server(vpn_host, "vless")
    rows = [{"username": f"k{i:05d}", "protocol": "vless", "server_id": server.pk} for i in range(10_000)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok
    _wait_applied(server, queue_worker)
    wait_ready(server)
    config = exec_in(server, "cat", "/etc/vpn/config.json")
    assert config.count('"email"') == 10_000
    user = VpnUser.objects.get(pk=result.ids[-1])
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=True) == 1000
        # "All matching": one statement over the 10,000, one apply.
        users_set_active(actor=None, users=VpnUser.objects.filter(server=server), active=False)
        _wait_applied(server, queue_worker)
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=False) == 0
    assert apply_count(server) == 2


def test_a_server_whose_engine_is_down_stays_pending_with_the_reason_while_the_others_converge(
    queue_worker: QueueWorker,
    vpn_host: DockerHost,
    start_server: Callable[..., VpnServer],
    owner_client: Client,
    tmp_path: Any,
) -> None:
    healthy = start_server(vpn_host, "vless")
    # An engine that died after its server started: nothing listens on its socket any more.
    gone = DockerHost.objects.create(name="gone", base_url=f"unix://{tmp_path}/no-engine.sock", network_mode="host")
    stranded = VpnServer.objects.create(
        host=gone, name="stranded", protocol="vless", image="vpnadmin-test/v2ray:latest", port=healthy.port + 7,
        desired_state="running", observed_state=ObservedState.RUNNING, container_id="0" * 64,
    )  # fmt: skip
    rows = [{"username": f"healthy{i}", "protocol": "vless", "server_id": healthy.pk} for i in range(3)]
    rows += [{"username": f"stranded{i}", "protocol": "vless", "server_id": stranded.pk} for i in range(3)]
    assert users_create_batch(actor=None, rows=rows).ok

    _wait_applied(healthy, queue_worker)
    stranded.refresh_from_db()
    for _ in range(100):
        stranded.refresh_from_db()
        if stranded.apply_error:
            break
        time.sleep(0.2)
    assert stranded.apply_state == ApplyState.PENDING
    assert "unreachable" in stranded.apply_error
    assert stranded.pk in servers_needing_apply()  # the periodic converge defers it again
    with pytest.raises(EngineUnavailable):
        servers_apply(server_id=stranded.pk)
    page = owner_client.get(reverse("containers:server_detail", args=[stranded.pk])).content.decode()
    assert "unreachable" in page and 'data-apply-state="pending"' in page


def test_a_user_moved_to_a_server_of_another_protocol_is_refused_and_nothing_is_written(
    vpn_host: DockerHost,
) -> None:
    vless = VpnServer.objects.create(
        host=vpn_host, name="v", protocol="vless", image="vpnadmin-test/v2ray:latest", port=31000
    )
    wg = VpnServer.objects.create(host=vpn_host, name="w", protocol="wireguard", image="x/y:z", port=31010)
    result = users_create_batch(actor=None, rows=[{"username": "mover", "protocol": "vless", "server_id": vless.pk}])
    assert result.ok
    moved = users_update_batch(actor=None, changes={result.ids[0]: {"server_id": wg.pk}})
    assert not moved.ok and moved.written == 0
    assert "serves wireguard users" in str(moved.errors[0])
    assert VpnUser.objects.get(pk=result.ids[0]).server_id == vless.pk
