"""The Django admin for VPN users: slim list, search, filters, estimating paginator, actions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client

from users import selectors
from users.models import VpnUser
from users.tests.factories import make_users
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

URL = "/admin/users/vpnuser/"


def _text(response: Any) -> str:
    return response.content.decode()


def test_the_changelist_lists_users_without_credentials(owner_client: Client) -> None:
    make_users(3, protocol="shadowsocks")
    html = _text(owner_client.get(URL))
    assert "user0002" in html and "Import CSV" in html
    for password in VpnUser.objects.values_list("credential_password", flat=True):
        assert password not in html


@pytest.mark.parametrize(
    ("query", "shown", "hidden"),
    [
        ("?status=disabled", "off0000", "user0000"),
        ("?protocol__exact=wireguard", "off0000", "user0000"),
        ("?q=off0", "off0001", "user0001"),
        ("?q=user0001", "user0001", "user0002"),
    ],
)
def test_filters_and_search_narrow_the_changelist(owner_client: Client, query: str, shown: str, hidden: str) -> None:
    make_users(3)
    make_users(2, prefix="off", protocol="wireguard", is_active=False)
    html = _text(owner_client.get(URL + query))
    assert shown in html and hidden not in html


@pytest.mark.parametrize("q", ["%", "_", "\\", "'", "🦄🦄🦄", "x" * 10_000, "ab"])
def test_odd_admin_searches_answer_with_a_page(owner_client: Client, q: str) -> None:
    make_users(2)
    response = owner_client.get(URL, {"q": q})
    assert response.status_code == 200


def test_a_search_with_a_null_byte_is_refused_politely(owner_client: Client) -> None:
    make_users(2)
    response = owner_client.get(URL, {"q": "ab\x00cd"})
    assert response.status_code == 200
    assert "null byte" in _text(response) or "Null characters" in _text(response)


def test_a_big_table_gets_an_estimated_count_not_a_count_star(
    owner_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_users(60)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users_vpnuser")
    monkeypatch.setattr(selectors, "ESTIMATE_THRESHOLD", 10)
    from django.db import connection as conn
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(conn) as queries:
        response = owner_client.get(URL)
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries]
    assert any("reltuples" in s for s in sql)
    assert not any("COUNT(*)" in s.upper() and "users_vpnuser" in s for s in sql)


def _action(client: Client, action: str, ids: list[int], *, across: bool = False, query: str = "", **extra: str) -> Any:
    data = {"action": action, ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], "index": "0", **extra}
    if across:
        data["select_across"] = "1"
    return client.post(URL + query, data, follow=True)


def test_an_action_on_selected_rows_ends_with_a_count(owner_client: Client) -> None:
    ids = make_users(5)
    response = _action(owner_client, "disable", ids[:3])
    assert "Disabled 3 users." in _text(response)
    assert VpnUser.objects.filter(is_active=False).count() == 3
    assert AuditEntry.objects.get(action="users_disable").actor_name == "owner"


def test_select_all_across_pages_acts_on_the_filtered_queryset(owner_client: Client) -> None:
    make_users(8)
    make_users(3, prefix="wg", protocol="wireguard")
    page_ids = list(VpnUser.objects.filter(protocol="vless").values_list("pk", flat=True)[:2])
    response = _action(owner_client, "reset_traffic", page_ids, across=True, query="?protocol__exact=vless")
    assert "Reset the used traffic of 8 users to zero?" in _text(response)
    response = _action(owner_client, "disable", page_ids, across=True, query="?protocol__exact=vless")
    assert "Disabled 8 users." in _text(response)
    assert not VpnUser.objects.filter(protocol="wireguard", is_active=False).exists()


def test_an_action_with_a_thousand_selected_ids_is_not_refused(owner_client: Client) -> None:
    ids = make_users(1_000)
    response = _action(owner_client, "disable", ids)
    assert response.status_code == 200
    assert "Disabled 1,000 users." in _text(response)


def test_delete_asks_first_then_deletes_with_one_statement(owner_client: Client) -> None:
    ids = make_users(4)
    response = owner_client.post(
        URL, {"action": "delete", ACTION_CHECKBOX_NAME: [str(pk) for pk in ids[:2]], "index": "0"}
    )
    assert "Delete 2 VPN users?" in _text(response)
    assert VpnUser.objects.count() == 4
    stamp = re.search(r'name="stamp" value="([^"]+)"', _text(response)).group(1)  # type: ignore[union-attr]
    response = owner_client.post(
        URL,
        {
            "action": "delete",
            ACTION_CHECKBOX_NAME: [str(pk) for pk in ids[:2]],
            "index": "0",
            "post": "yes",
            "stamp": stamp,
        },
        follow=True,
    )
    assert "Deleted 2 users." in _text(response)
    assert VpnUser.objects.count() == 2


def test_an_operator_without_change_permission_gets_no_bulk_actions(make_operator: Any) -> None:
    ids = make_users(2)
    viewer = Client()
    viewer.force_login(make_operator("users.view_vpnuser"))
    assert viewer.get(URL).status_code == 200
    response = _action(viewer, "disable", ids)
    assert VpnUser.objects.filter(is_active=False).count() == 0
    assert response.status_code in (200, 403)


def test_adding_a_user_in_the_admin_goes_through_the_service(owner_client: Client) -> None:
    response = owner_client.post(
        URL + "add/",
        {
            "username": "Admin.Made",
            "protocol": "wireguard",
            "is_active": "on",
            "used_traffic": "0",
            "reset_strategy": "none",
        },
    )
    assert response.status_code == 302, _text(response)
    user = VpnUser.objects.get(username="admin.made")
    assert user.wg_private_key and AuditEntry.objects.filter(action="users_create_batch", actor_name="owner").exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "bad name", "protocol": "vless"}, "3 to 32 characters"),
        ({"username": "okname", "protocol": "vless", "data_limit": "-1"}, "negative"),
        ({"username": "okname", "protocol": "vless", "expire_at_0": "9000-01-01", "expire_at_1": "00:00"}, "2199"),
    ],
)
def test_a_bad_admin_add_is_refused_with_a_message(owner_client: Client, data: dict[str, str], message: str) -> None:
    response = owner_client.post(
        URL + "add/", {"is_active": "on", "used_traffic": "0", "reset_strategy": "none", **data}
    )
    assert response.status_code == 200
    assert message in _text(response)
    assert not VpnUser.objects.exists()


def test_editing_in_the_admin_keeps_the_username_and_credentials(owner_client: Client) -> None:
    (pk,) = make_users(1)
    before = VpnUser.objects.get(pk=pk).credential_uuid
    response = owner_client.post(
        f"{URL}{pk}/change/",
        {"protocol": "vless", "is_active": "on", "used_traffic": "5", "reset_strategy": "week", "note": "edited"},
    )
    assert response.status_code == 302, _text(response)
    user = VpnUser.objects.get(pk=pk)
    assert (user.username, user.note, user.used_traffic, user.credential_uuid) == ("user0000", "edited", 5, before)


def test_a_deep_admin_page_shows_the_same_rows_as_offset_would(
    owner_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from users import admin as users_admin

    make_users(120)
    expected = list(VpnUser.objects.order_by("-id").values_list("username", flat=True)[100:120])
    monkeypatch.setattr(users_admin, "DEEP_OFFSET", 10)
    html = _text(owner_client.get(URL + "?p=3"))
    shown = [name for name in expected if f">{name}<" in html]
    assert shown == expected
    assert f">{VpnUser.objects.order_by('-id').values_list('username', flat=True)[99]}<" not in html


def test_a_rare_admin_search_is_sorted_after_the_indexes_found_it(owner_client: Client) -> None:
    from django.test.utils import CaptureQueriesContext

    make_users(130)
    with CaptureQueriesContext(connection) as queries:
        html = _text(owner_client.get(URL, {"q": "user00"}))  # 100 matches: two pages
    assert ">user0099<" in html and ">user0100<" not in html
    listing = [q["sql"] for q in queries.captured_queries if q["sql"].endswith("LIMIT 50")]
    assert listing and '("users_vpnuser"."id" + 0) DESC' in listing[0]
