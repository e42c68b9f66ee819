"""Traffic accounting and enforcement: reset-safe deltas, limits that cut a real client off, periodic resets."""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from containers.models import ApplyState, DockerHost, VpnServer
from containers.sync import servers_apply, servers_poll_traffic, traffic_deltas, users_reset_periodic
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    fetch_until,
    origin,
    start_server,
    vless_client,
    vpn_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch
from vpnadmin.models import AuditEntry


def test_a_counter_that_goes_backwards_is_a_reset_never_negative_traffic() -> None:
    owners = {"u1": 1, "u2": 2}
    usage, baseline = traffic_deltas({}, {"u1": (100, 1000), "u2": (0, 0)}, owners)
    assert usage == {1: 1100} and baseline["u1"] == [1, 100, 1000]
    # The core restarted: its counters start again at zero and are all new bytes.
    usage, baseline = traffic_deltas(baseline, {"u1": (10, 50), "u2": (5, 5)}, owners)
    assert usage == {1: 60, 2: 10}
    usage, _ = traffic_deltas(baseline, {"u1": (10, 50), "u2": (5, 5)}, owners)
    assert usage == {}


def test_a_counter_key_handed_to_another_user_starts_from_zero_for_it() -> None:
    _, baseline = traffic_deltas({}, {"20001": (0, 5000)}, {"20001": 7})
    usage, _ = traffic_deltas(baseline, {"20001": (0, 9000)}, {"20001": 8})
    assert usage == {8: 9000}


def test_counters_of_unknown_keys_are_ignored() -> None:
    usage, baseline = traffic_deltas({}, {"stranger": (1, 1)}, {})
    assert usage == {} and baseline == {}


def _user(server: VpnServer | None, **fields: Any) -> VpnUser:
    name = f"t{VpnUser.objects.count():05d}"
    result = users_create_batch(
        actor=None, rows=[{"username": name, "protocol": "vless", "server_id": server.pk if server else None}]
    )
    assert result.ok, result.errors
    VpnUser.objects.filter(pk=result.ids[0]).update(**fields)
    return VpnUser.objects.get(pk=result.ids[0])


@pytest.mark.django_db(transaction=True)
def test_a_user_over_its_data_limit_drops_out_of_the_server_after_one_poll(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], vless_client: Any, origin: str
) -> None:
    server = start_server(vpn_host, "vless")
    user = _user(server, data_limit=300_000)
    servers_apply(server_id=server.pk)
    wait_ready(server)
    with vless_client(server.port, str(user.credential_uuid)) as socks:
        assert fetch_until(socks, f"{origin}/bytes/500000", ok=True) == 500_000
        servers_poll_traffic()
        server.refresh_from_db()
        assert server.apply_state == ApplyState.PENDING  # the poll marked it dirty: the limit was crossed
        servers_apply(server_id=server.pk)
        assert fetch_until(socks, f"{origin}/bytes/1000", ok=False) == 0
    user.refresh_from_db()
    assert user.used_traffic >= 500_000


@pytest.mark.django_db(transaction=True)
def test_periodic_resets_start_a_new_period_keep_the_previous_one_and_bring_limited_users_back() -> None:
    host = DockerHost.objects.create(name="r", base_url="unix:///nowhere.sock", network_mode="none")
    server = VpnServer.objects.create(
        host=host, name="r1", protocol="vless", image="x/v:1", port=32000, apply_state=ApplyState.APPLIED
    )
    now = datetime.datetime(2026, 6, 17, 12, 0, tzinfo=datetime.UTC)  # a Wednesday mid-month
    long_ago = now - datetime.timedelta(days=400)
    daily = _user(server, reset_strategy="day", used_traffic=900, data_limit=900, created_at=long_ago)
    monthly_new = _user(server, reset_strategy="month", used_traffic=50, created_at=now)
    never = _user(server, reset_strategy="none", used_traffic=70, created_at=long_ago)
    yearly = _user(None, reset_strategy="year", used_traffic=20, created_at=long_ago)

    with CaptureQueriesContext(connection) as queries:
        assert users_reset_periodic(now=now) == 2
    updates = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("WITH", "UPDATE"))]
    assert len([sql for sql in updates if "users_vpnuser" in sql and "previous_period_traffic" in sql]) == 1

    daily.refresh_from_db()
    assert (daily.used_traffic, daily.previous_period_traffic, daily.traffic_reset_at) == (0, 900, now)
    assert VpnUser.objects.get(pk=monthly_new.pk).used_traffic == 50  # its first period has not ended
    assert VpnUser.objects.get(pk=never.pk).used_traffic == 70
    assert VpnUser.objects.get(pk=yearly.pk).previous_period_traffic == 20
    entry = AuditEntry.objects.filter(action="users_reset_periodic").get()
    assert entry.count == 2 and set(entry.object_ids) == {daily.pk, yearly.pk}
    server.refresh_from_db()
    assert server.apply_state == ApplyState.PENDING  # the limited daily user is back in the desired set

    # The same day again: nothing is due.
    assert users_reset_periodic(now=now + datetime.timedelta(minutes=5)) == 0
    assert users_reset_periodic(now=now + datetime.timedelta(days=1)) == 1


@pytest.mark.django_db(transaction=True)
def test_a_poll_starts_an_on_hold_users_clock_and_marks_servers_whose_users_expired_since_the_last_poll() -> None:
    from containers.sync import servers_record_readings

    host = DockerHost.objects.create(name="c", base_url="unix:///nowhere.sock", network_mode="none")
    server = VpnServer.objects.create(
        host=host, name="c1", protocol="vless", image="x/v:1", port=33000, apply_state=ApplyState.APPLIED
    )
    held = _user(server, on_hold_days=30)
    assert held.expire_at is None
    servers_record_readings(readings=[(server, {f"u{held.pk}": (100, 900)})])
    held.refresh_from_db()
    assert held.used_traffic == 1000 and held.last_online_at is not None
    assert held.expire_at is not None and held.expire_at > held.last_online_at + datetime.timedelta(days=29)

    server.refresh_from_db()
    VpnServer.objects.filter(pk=server.pk).update(apply_state=ApplyState.APPLIED)
    _user(server, expire_at=timezone.now())  # after the last poll, before the next
    servers_record_readings(readings=[(server, {})])
    server.refresh_from_db()
    assert server.apply_state == ApplyState.PENDING  # the expired user leaves the desired set
