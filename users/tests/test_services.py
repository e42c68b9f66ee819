"""The batch services: validation of every row, COPY writes, set operations, audit, cache."""

from __future__ import annotations

import base64
import datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.utils import timezone

from users import services
from users.models import MAX_BYTES, Status, VpnUser
from users.selectors import UserFilter, filtered_users, users_page
from users.tests.factories import make_users
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_a_batch_gets_credentials_generated_for_each_protocol() -> None:
    result = services.users_create_batch(
        actor=None,
        rows=[
            {"username": "vl-one", "protocol": "vless"},
            {"username": "ss-one", "protocol": "shadowsocks"},
            {"username": "wg-one", "protocol": "wireguard"},
        ],
    )
    assert result.ok and result.written == 3
    vless = VpnUser.objects.get(username="vl-one")
    ss = VpnUser.objects.get(username="ss-one")
    wg = VpnUser.objects.get(username="wg-one")
    assert vless.credential_uuid is not None and not vless.credential_password
    assert len(ss.credential_password) >= 24 and ss.credential_uuid is None
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(wg.wg_private_key))
    assert base64.b64encode(private.public_key().public_bytes_raw()).decode() == wg.wg_public_key


def test_every_user_gets_different_credentials() -> None:
    make_users(50, protocol="shadowsocks")
    passwords = set(VpnUser.objects.values_list("credential_password", flat=True))
    assert len(passwords) == 50


def test_the_returned_ids_are_the_created_rows() -> None:
    ids = make_users(30)
    assert sorted(VpnUser.objects.values_list("pk", flat=True)) == sorted(ids)


def test_usernames_are_stored_in_lower_case() -> None:
    services.users_create_batch(actor=None, rows=[{"username": "  Alice.Smith ", "protocol": "VLESS"}])
    assert VpnUser.objects.filter(username="alice.smith", protocol="vless").exists()


def test_a_batch_with_bad_rows_writes_nothing_and_names_every_bad_row() -> None:
    make_users(1, prefix="taken")
    rows: list[dict[str, Any]] = [
        {"username": "good-one", "protocol": "vless"},
        {"username": "no spaces allowed", "protocol": "vless"},
        {"username": "ab", "protocol": "vless"},
        {"username": "good-one", "protocol": "vless"},
        {"username": "taken0000", "protocol": "vless"},
        {"username": "neg-limit", "protocol": "vless", "data_limit": -5},
        {"username": "huge-limit", "protocol": "vless", "data_limit": MAX_BYTES + 1},
        {"username": "bad-proto", "protocol": "openvpn"},
        {"username": "both-expiry", "protocol": "vless", "expire_at": "2030-01-01", "on_hold_days": 5},
        {"username": "bad-mail", "protocol": "vless", "email": "not-an-address"},
        {"username": "far-future", "protocol": "vless", "expire_at": "9999-01-01"},
        {"username": "null\x00byte", "protocol": "vless"},
        {"protocol": "vless"},
        {"username": "no-protocol"},
        {"username": "extra-col", "protocol": "vless", "password": "x"},
    ]
    result = services.users_create_batch(actor=None, rows=rows)
    assert result.written == 0
    assert VpnUser.objects.count() == 1
    bad_positions = {error.position for error in result.errors}
    assert bad_positions == set(range(2, 16))
    messages = {error.position: str(error) for error in result.errors}
    assert "repeats row 1" in messages[4]
    assert "already exists" in messages[5]
    assert "negative" in messages[6]
    assert "1 PiB" in messages[7]
    assert "must be one of" in messages[8]
    assert not AuditEntry.objects.filter(action="users_create_batch").exclude(count=1).exists()


def test_write_good_rows_writes_the_good_rows_only_when_asked() -> None:
    rows = [{"username": "fine-one", "protocol": "vless"}, {"username": "x", "protocol": "vless"}]
    result = services.users_create_batch(actor=None, rows=rows, write_good_rows=True)
    assert result.written == 1
    assert [e.position for e in result.errors] == [2]
    assert list(VpnUser.objects.values_list("username", flat=True)) == ["fine-one"]


def test_limits_take_sizes_with_units() -> None:
    services.users_create_batch(
        actor=None, rows=[{"username": "sized", "protocol": "vless", "data_limit": "1.5 GB", "used_traffic": "2KiB"}]
    )
    user = VpnUser.objects.get(username="sized")
    assert (user.data_limit, user.used_traffic) == (1_500_000_000, 2048)


def test_a_batch_records_one_audit_entry_with_who_and_how_many(owner: Any) -> None:
    ids = services.users_create_batch(
        actor=owner, rows=[{"username": f"audited{i}", "protocol": "vless"} for i in range(5)]
    ).ids
    entry = AuditEntry.objects.get(action="users_create_batch")
    assert (entry.actor_name, entry.count, sorted(entry.object_ids)) == ("owner", 5, sorted(ids))


def test_each_user_gets_its_own_values_in_one_update() -> None:
    ids = make_users(20)
    changes = {pk: {"used_traffic": pk * 1000, "note": f"synced {pk}"} for pk in ids}
    result = services.users_update_batch(actor=None, changes=changes)
    assert result.ok and result.written == 20
    for user in VpnUser.objects.all():
        assert user.used_traffic == user.pk * 1000
        assert user.note == f"synced {user.pk}"
    assert AuditEntry.objects.filter(action="users_update_batch", count=20).count() == 1


def test_an_update_with_one_bad_value_writes_nothing() -> None:
    ids = make_users(3)
    changes: dict[int, dict[str, Any]] = {
        ids[0]: {"used_traffic": 5},
        ids[1]: {"used_traffic": -1},
        ids[2]: {"username": "renamed"},
    }
    result = services.users_update_batch(actor=None, changes=changes)
    assert result.written == 0
    assert {e.position for e in result.errors} == {2, 3}
    assert not VpnUser.objects.filter(used_traffic=5).exists()


def test_an_update_of_unknown_ids_reports_fewer_written() -> None:
    ids = make_users(2)
    result = services.users_update_batch(actor=None, changes={ids[0]: {"note": "a"}, 999_999: {"note": "b"}})
    assert result.written == 1


def test_changing_the_protocol_generates_new_credentials() -> None:
    (pk,) = make_users(1, protocol="vless")
    services.users_update_batch(actor=None, changes={pk: {"protocol": "wireguard"}})
    user = VpnUser.objects.get(pk=pk)
    assert user.protocol == "wireguard" and user.wg_private_key and user.wg_public_key


def test_disable_and_enable_count_only_the_users_that_change() -> None:
    ids = make_users(10)
    assert services.users_set_active(actor=None, users=VpnUser.objects.filter(pk__in=ids[:4]), active=False) == 4
    assert services.users_set_active(actor=None, users=VpnUser.objects.all(), active=False) == 6
    assert services.users_set_active(actor=None, users=VpnUser.objects.all(), active=True) == 10


def test_a_set_operation_over_a_filter_touches_exactly_the_matching_users() -> None:
    make_users(10, prefix="keep")
    make_users(10, prefix="drop", protocol="wireguard")
    selection, _, _ = filtered_users(UserFilter(protocol="wireguard"))
    assert services.users_delete(actor=None, users=selection, selection="protocol=wireguard") == 10
    assert VpnUser.objects.count() == 10
    entry = AuditEntry.objects.get(action="users_delete")
    assert entry.count == 10 and entry.detail["selection"] == "protocol=wireguard" and len(entry.object_ids) == 10


def test_extending_expiry_moves_dates_later_and_lengthens_holds() -> None:
    now = timezone.now()
    services.users_create_batch(
        actor=None,
        rows=[
            {"username": "future", "protocol": "vless", "expire_at": now + datetime.timedelta(days=10)},
            {"username": "past", "protocol": "vless", "expire_at": now - datetime.timedelta(days=10)},
            {"username": "holding", "protocol": "vless", "on_hold_days": 30},
            {"username": "forever", "protocol": "vless"},
        ],
    )
    edit = services.BulkEdit(add_days=5)
    assert services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit) == 4
    users = {u.username: u for u in VpnUser.objects.all()}
    future, past = users["future"].expire_at, users["past"].expire_at
    assert future is not None and past is not None
    assert abs((future - now).days - 15) <= 1
    assert abs((past - now).days - 5) <= 1
    assert users["holding"].on_hold_days == 35
    assert users["forever"].expire_at is None


@pytest.mark.parametrize("days", [0, -3, 100_000])
def test_extending_by_an_absurd_number_of_days_is_refused(days: int) -> None:
    make_users(1)
    with pytest.raises(services.BulkRefused, match="Days to add"):
        services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=services.BulkEdit(add_days=days))


def test_adding_data_raises_limits_and_leaves_unlimited_users_alone() -> None:
    services.users_create_batch(
        actor=None,
        rows=[
            {"username": "limited", "protocol": "vless", "data_limit": 1000},
            {"username": "unlimited", "protocol": "vless"},
        ],
    )
    edit = services.BulkEdit(add_bytes=500)
    assert services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit) == 2
    assert dict(VpnUser.objects.values_list("username", "data_limit")) == {"limited": 1500, "unlimited": None}


def test_resetting_traffic_zeroes_it() -> None:
    ids = make_users(3, used_traffic=700)
    assert services.users_reset_traffic(actor=None, users=VpnUser.objects.filter(pk__in=ids)) == 3
    assert set(VpnUser.objects.values_list("used_traffic", flat=True)) == {0}


def test_a_write_invalidates_the_cached_list_once_after_commit(django_capture_on_commit_callbacks: Any) -> None:
    make_users(3)
    first = users_page(UserFilter())
    assert len(first.rows) == 3
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        services.users_set_active(actor=None, users=VpnUser.objects.all(), active=False)
    assert len(callbacks) == 1
    after = users_page(UserFilter())
    assert {row["status"] for row in after.rows} == {Status.DISABLED}


def test_the_cached_list_stays_until_a_commit_invalidates_it() -> None:
    make_users(2)
    users_page(UserFilter())
    # Without a commit (this test runs in a transaction that is rolled back) the cache
    # keeps what it read: invalidation runs only after commit.
    services.users_set_active(actor=None, users=VpnUser.objects.all(), active=False)
    assert {row["status"] for row in users_page(UserFilter()).rows} == {Status.ACTIVE}


def test_recorded_traffic_adds_up_and_starts_an_on_hold_expiry() -> None:
    ids = services.users_create_batch(
        actor=None,
        rows=[
            {"username": "holder", "protocol": "vless", "on_hold_days": 10, "used_traffic": 5},
            {"username": "regular", "protocol": "vless", "used_traffic": 100},
            {"username": "idle", "protocol": "vless", "on_hold_days": 10},
        ],
    ).ids
    result = services.users_record_traffic(actor=None, usage={ids[0]: 1000, ids[1]: 1, ids[2]: 0})
    assert result.ok and result.written == 2
    users = {u.username: u for u in VpnUser.objects.all()}
    assert (users["holder"].used_traffic, users["regular"].used_traffic) == (1005, 101)
    holder_expiry = users["holder"].expire_at
    assert holder_expiry is not None and abs((holder_expiry - timezone.now()).days - 10) <= 1
    assert users["idle"].expire_at is None and users["idle"].last_online_at is None
    assert users["holder"].last_online_at is not None


@pytest.mark.parametrize("amount", [-1, MAX_BYTES + 1, True])
def test_recording_a_negative_or_absurd_amount_writes_nothing(amount: Any) -> None:
    ids = make_users(2)
    result = services.users_record_traffic(actor=None, usage={ids[0]: 5, ids[1]: amount})
    assert result.written == 0 and [e.position for e in result.errors] == [2]
    assert set(VpnUser.objects.values_list("used_traffic", flat=True)) == {0}


def test_deleting_users_removes_their_subscriptions_without_loading_the_users() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from users.subscriptions.models import Subscription

    ids = make_users(5)
    for pk in ids[:3]:
        Subscription.objects.create(user_id=pk, token_hash=f"{pk:064d}")
    with CaptureQueriesContext(connection) as queries:
        assert services.users_delete(actor=None, users=VpnUser.objects.filter(pk__in=ids[:4])) == 4
    assert list(VpnUser.objects.values_list("pk", flat=True)) == [ids[4]]
    assert not Subscription.objects.exists()
    # One DELETE per table by the filter: no query reads the users' own columns (credentials).
    assert not any("credential_password" in q["sql"] for q in queries.captured_queries)
