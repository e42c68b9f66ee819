"""The bulk edit, NetBox style: chosen fields set on the ticked rows or on all matching, page and admin alike."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client
from django.utils import timezone

from users import services
from users.models import VpnUser
from users.tests.factories import make_users
from users.tests.servers import make_server
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

ADMIN = "/admin/users/vpnuser/"


def _text(response: Any) -> str:
    return response.content.decode()


def _stamp(response: Any) -> str:
    found = re.search(r'name="stamp" value="([^"]+)"', _text(response))
    assert found, _text(response)
    return found.group(1)


def _users_writes() -> int:
    return AuditEntry.objects.filter(action__startswith="users_").exclude(action="users_create_batch").count()


def _edit_on_page(client: Client, selection: dict[str, str], fields: dict[str, str]) -> Any:
    """The page's two steps: ask for the form (with the count and stamp), then submit it."""
    asked = client.post("/users/bulk/", {"action": "edit", **selection})
    assert asked.status_code == 200, _text(asked)
    edited = {f"edit-{name}": value for name, value in fields.items()}
    return client.post("/users/bulk/", {"action": "edit", **selection, "post": "yes", "stamp": _stamp(asked), **edited})


def _edit_all(edit: services.BulkEdit) -> int:
    return services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit)


# --- the service ------------------------------------------------------------------------


def test_a_bulk_edit_sets_the_chosen_fields_on_every_selected_user_with_one_audit_entry(owner: Any) -> None:
    server = make_server("edge-1")
    ids = make_users(4, note="old", data_limit=5)
    edit = services.BulkEdit(
        values={"server_id": server.pk, "data_limit": "20GB", "reset_strategy": "month", "note": "moved"}
    )
    users = VpnUser.objects.filter(pk__in=ids[:3])
    assert services.users_bulk_edit(actor=owner, users=users, edit=edit, selection="3 selected") == 3
    rows = dict(VpnUser.objects.values_list("pk", "server_id"))
    assert [rows[pk] for pk in ids] == [server.pk, server.pk, server.pk, None]
    edited = VpnUser.objects.filter(pk__in=ids[:3])
    assert {(u.data_limit, u.reset_strategy, u.note) for u in edited} == {(20 * 10**9, "month", "moved")}
    assert VpnUser.objects.get(pk=ids[3]).note == "old"
    entry = AuditEntry.objects.get(action="users_bulk_edit")
    assert entry.count == 3 and entry.actor_name == "owner" and sorted(entry.object_ids) == sorted(ids[:3])
    assert entry.detail["set"]["reset_strategy"] == "month" and entry.detail["selection"] == "3 selected"


def test_fields_left_out_of_a_bulk_edit_stay_as_they_were() -> None:
    expiry = timezone.now() + datetime.timedelta(days=9)
    make_users(2, data_limit=7, expire_at=expiry, note="keep", reset_strategy="week")
    services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=services.BulkEdit(values={"note": "new"}))
    assert {(u.data_limit, u.expire_at, u.reset_strategy, u.note) for u in VpnUser.objects.all()} == {
        (7, expiry, "week", "new")
    }


def test_setting_an_expiry_date_ends_a_hold_and_never_clears_both() -> None:
    make_users(1, prefix="hold", on_hold_days=30)
    date = datetime.datetime(2031, 1, 2, tzinfo=datetime.UTC)
    _edit_all(services.BulkEdit(values={"expire_at": date}))
    assert VpnUser.objects.values_list("expire_at", "on_hold_days").get() == (date, None)
    _edit_all(services.BulkEdit(values={"expire_at": None}))
    assert VpnUser.objects.values_list("expire_at", "on_hold_days").get() == (None, None)


def test_days_and_data_to_add_leave_unlimited_and_never_expiring_users_so() -> None:
    now = timezone.now()
    make_users(1, prefix="lim", data_limit=1000, expire_at=now + datetime.timedelta(days=1))
    make_users(1, prefix="free")
    edit = services.BulkEdit(add_days=30, add_bytes=24)
    assert services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit) == 2
    limited = VpnUser.objects.get(username="lim0000")
    assert limited.data_limit == 1024 and limited.expire_at is not None
    assert abs((limited.expire_at - now).days - 31) <= 1
    assert VpnUser.objects.values_list("data_limit", "expire_at").get(username="free0000") == (None, None)


def test_moving_users_to_a_server_of_another_protocol_is_refused_naming_how_many_mismatch() -> None:
    server = make_server("edge-vless", "vless")
    make_users(3, prefix="v")
    make_users(2, prefix="w", protocol="wireguard")
    edit = services.BulkEdit(values={"server_id": server.pk, "note": "x"})
    with pytest.raises(services.BulkRefused, match=r"2 of the selected users do not use vless.*'edge-vless'"):
        services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit)
    assert not VpnUser.objects.filter(server__isnull=False).exists() and not VpnUser.objects.filter(note="x").exists()
    assert _users_writes() == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (services.BulkEdit(values={"server_id": 987654}), "server does not exist"),
        (services.BulkEdit(values={"data_limit": -1}), "cannot be negative"),
        (services.BulkEdit(values={"data_limit": "2000PB"}), "larger than 1 PiB"),
        (services.BulkEdit(values={"expire_at": "2030-01-01"}, add_days=3), "not both"),
        (services.BulkEdit(values={"data_limit": 5}, add_bytes=3), "not both"),
        (services.BulkEdit(add_days=0), "Days to add"),
        (services.BulkEdit(add_bytes=-5), "Data to add"),
        (services.BulkEdit(values={"username": "x"}), "cannot set username"),
        (services.BulkEdit(), "at least one field"),
    ],
)
def test_a_bad_bulk_edit_is_refused_and_writes_nothing(edit: services.BulkEdit, message: str) -> None:
    make_users(2, note="same")
    with pytest.raises(services.BulkRefused, match=message):
        services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit)
    assert set(VpnUser.objects.values_list("note", flat=True)) == {"same"}
    assert _users_writes() == 0


def test_a_move_clears_the_tunnel_allocation_except_for_users_already_there() -> None:
    old, new = make_server("wg-old", "wireguard"), make_server("wg-new", "wireguard")
    stay, move = make_users(2, protocol="wireguard")
    VpnUser.objects.filter(pk=stay).update(server=new, wg_address="10.8.0.2")
    VpnUser.objects.filter(pk=move).update(server=old, wg_address="10.8.0.2")
    _edit_all(services.BulkEdit(values={"server_id": new.pk}))
    assert dict(VpnUser.objects.values_list("pk", "wg_address")) == {stay: "10.8.0.2", move: None}


# --- the page ------------------------------------------------------------------------------


def test_the_page_asks_with_the_form_and_the_count_then_applies(owner_client: Client) -> None:
    server = make_server("edge-1")
    ids = make_users(3)
    selection = {"ids": ",".join(map(str, ids[:2]))}
    asked = owner_client.post("/users/bulk/", {"action": "edit", **selection})
    assert "Edit 2 users" in _text(asked) and "edge-1 (vless)" in _text(asked)
    assert _users_writes() == 0
    fields = {"edit-server": str(server.pk), "edit-add_data": "10GB", "edit-reset_strategy": ""}
    response = owner_client.post(
        "/users/bulk/", {"action": "edit", **selection, "post": "yes", "stamp": _stamp(asked), **fields}, follow=True
    )
    assert "Edited 2 users: server edge-1, data limit +" in _text(response)
    assert VpnUser.objects.filter(server=server).count() == 2


def test_all_matching_edits_every_user_the_filter_matches_beyond_the_first_page(owner_client: Client) -> None:
    make_users(60, prefix="shop")
    make_users(3, prefix="other")
    response = _edit_on_page(owner_client, {"select_all": "on", "q": "shop"}, {"add_days": "", "note": "shop"})
    assert response.status_code == 302
    assert VpnUser.objects.filter(note="shop").count() == 60
    assert "q=shop" in AuditEntry.objects.get(action="users_bulk_edit").detail["selection"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"data_limit": "-1GB"}, "cannot be negative"),
        ({"data_limit": "9000PB"}, "larger than 1 PiB"),
        ({"data_limit": "lots"}, "size such as 10GB"),
        ({"expire_at": "2031-01-01", "add_days": "5"}, "Set an expiry date or days to add, not both."),
        ({"add_days": "99999"}, "less than or equal to 3650"),
        ({"data_limit": "1GB", "data_unlimited": "on"}, "not both"),
        ({"server": "424242"}, "Select a valid choice"),
        ({}, "Choose at least one field to change."),
    ],
)
def test_bad_bulk_edit_input_shows_the_form_again_with_the_reason_and_writes_nothing(
    owner_client: Client, fields: dict[str, str], message: str
) -> None:
    make_users(2, note="same")
    response = _edit_on_page(owner_client, {"select_all": "on"}, fields)
    assert response.status_code == 400
    assert message in _text(response) and "Edit 2 users" in _text(response)
    assert set(VpnUser.objects.values_list("note", flat=True)) == {"same"} and _users_writes() == 0


def test_a_server_of_another_protocol_is_refused_on_the_page_with_the_mismatch_count(owner_client: Client) -> None:
    server = make_server("wg-1", "wireguard")
    make_users(4)
    make_users(1, prefix="wg", protocol="wireguard")
    response = _edit_on_page(owner_client, {"select_all": "on"}, {"server": str(server.pk)})
    assert response.status_code == 400
    assert "4 of the selected users do not use wireguard" in _text(response)
    assert not VpnUser.objects.filter(server__isnull=False).exists() and _users_writes() == 0


def test_all_matching_refuses_when_the_filter_matches_other_users_at_submit(owner_client: Client) -> None:
    make_users(3, prefix="shop")
    selection = {"select_all": "on", "q": "shop"}
    asked = owner_client.post("/users/bulk/", {"action": "edit", **selection})
    assert "Edit 3 users" in _text(asked)
    make_users(1, prefix="shopx")  # matches the filter now, but the operator never saw it
    response = owner_client.post(
        "/users/bulk/",
        {"action": "edit", **selection, "post": "yes", "stamp": _stamp(asked), "edit-note": "sale"},
        follow=True,
    )
    assert "The selection changed after you confirmed it (it now holds 4 users; you saw 3)" in _text(response)
    assert not VpnUser.objects.filter(note="sale").exists() and _users_writes() == 0


def test_a_ticked_user_deleted_before_the_delete_is_confirmed_stops_the_delete(owner_client: Client) -> None:
    ids = make_users(3)
    selection = {"action": "delete", "ids": ",".join(map(str, ids))}
    stamp = _stamp(owner_client.post("/users/bulk/", selection))
    VpnUser.objects.filter(pk=ids[0]).delete()
    response = owner_client.post("/users/bulk/", {**selection, "post": "yes", "stamp": stamp}, follow=True)
    assert "selection changed" in _text(response)
    assert VpnUser.objects.count() == 2


def test_forged_ids_of_users_that_do_not_exist_change_nothing(owner_client: Client) -> None:
    make_users(1)
    response = owner_client.post("/users/bulk/", {"action": "edit", "ids": "999998,999999"}, follow=True)
    assert "None of the selected users exist" in _text(response)
    forged = {"action": "edit", "ids": "999999", "post": "yes", "stamp": "1:999999", "edit-note": "x"}
    response = owner_client.post("/users/bulk/", forged, follow=True)
    assert "selection changed" in _text(response)
    assert _users_writes() == 0


def test_an_empty_selection_gets_a_message(owner_client: Client) -> None:
    make_users(1)
    response = owner_client.post("/users/bulk/", {"action": "edit", "ids": ""}, follow=True)
    assert "Select at least one user." in _text(response)


def test_a_viewer_cannot_bulk_edit(make_operator: Any) -> None:
    ids = make_users(1)
    viewer = Client()
    viewer.force_login(make_operator("users.view_vpnuser"))
    assert viewer.post("/users/bulk/", {"action": "edit", "ids": str(ids[0])}).status_code == 403


def test_the_list_offers_the_bulk_edit_and_no_fixed_extend_or_add_actions(owner_client: Client) -> None:
    make_users(1)
    html = _text(owner_client.get("/users/"))
    assert 'value="edit"' in html and 'name="days"' not in html and 'name="amount"' not in html


# --- the admin ----------------------------------------------------------------------------


def _admin_edit(
    client: Client, ids: list[int], fields: dict[str, str], *, query: str = "", across: bool = False
) -> Any:
    base = {"action": "edit", ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], "index": "0"}
    if across:
        base["select_across"] = "1"
    asked = client.post(ADMIN + query, base)
    assert asked.status_code == 200, _text(asked)
    edited = {f"edit-{name}": value for name, value in fields.items()}
    return client.post(ADMIN + query, {**base, "post": "yes", "stamp": _stamp(asked), **edited}, follow=True)


def test_the_admin_bulk_edit_is_the_same_form_and_service(owner_client: Client) -> None:
    server = make_server("edge-2")
    ids = make_users(3)
    response = _admin_edit(owner_client, ids[:2], {"server": str(server.pk), "expire_never": "on"})
    assert "Edited 2 users: server edge-2, never expires." in _text(response)
    assert VpnUser.objects.filter(server=server).count() == 2
    assert AuditEntry.objects.get(action="users_bulk_edit").detail["selection"] == "admin: selected"


def test_the_admin_bulk_edit_over_all_matching_follows_the_changelist_filter(owner_client: Client) -> None:
    ids = make_users(5)
    make_users(2, prefix="wg", protocol="wireguard")
    # The admin sends the ticked rows too; with select_across they do not narrow anything.
    response = _admin_edit(owner_client, ids[:1], {"note": "all vless"}, query="?protocol__exact=vless", across=True)
    assert "Edited 5 users" in _text(response)
    assert set(VpnUser.objects.filter(note="all vless").values_list("protocol", flat=True)) == {"vless"}


def test_the_admin_refuses_a_server_of_another_protocol_with_the_mismatch_count(owner_client: Client) -> None:
    server = make_server("wg-2", "wireguard")
    ids = make_users(2)
    response = _admin_edit(owner_client, ids, {"server": str(server.pk)})
    assert response.status_code == 400
    assert "2 of the selected users do not use wireguard" in _text(response)
    assert not VpnUser.objects.filter(server=server).exists()


def test_the_admin_has_no_fixed_extend_or_add_actions(owner_client: Client) -> None:
    make_users(1)
    html = _text(owner_client.get(ADMIN))
    assert 'value="edit"' in html and "extend_30_days" not in html and "add_10_gb" not in html
