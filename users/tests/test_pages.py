"""The users pages through the real client: permissions, bad input, bulk actions, secrets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from users.models import VpnUser
from users.tests.factories import make_users
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

VIEW = "users.view_vpnuser"
CHANGE = "users.change_vpnuser"


def _text(response: Any) -> str:
    return response.content.decode()


# --- permissions -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/users/"),
        ("get", "/users/stats/"),
        ("get", "/users/new/"),
        ("get", "/users/import/"),
        ("get", "/users/export.csv"),
        ("post", "/users/bulk/"),
    ],
)
def test_a_stranger_gets_403_on_every_users_page(stranger_client: Client, method: str, url: str) -> None:
    assert getattr(stranger_client, method)(url).status_code == 403


def test_an_anonymous_visitor_is_sent_to_the_login(client: Client) -> None:
    response = client.get("/users/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_a_viewer_sees_the_list_but_cannot_run_bulk_actions(make_operator: Any) -> None:
    ids = make_users(2)
    viewer = Client()
    viewer.force_login(make_operator(VIEW))
    assert viewer.get("/users/").status_code == 200
    response = viewer.post("/users/bulk/", {"action": "disable", "ids": ",".join(map(str, ids))})
    assert response.status_code == 403
    assert VpnUser.objects.filter(is_active=True).count() == 2


def test_an_operator_who_may_change_but_not_delete_cannot_delete(make_operator: Any) -> None:
    ids = make_users(2)
    editor = Client()
    editor.force_login(make_operator(VIEW, CHANGE))
    response = editor.post("/users/bulk/", {"action": "delete", "ids": ",".join(map(str, ids)), "post": "yes"})
    assert response.status_code == 403
    assert VpnUser.objects.count() == 2


def test_a_bulk_post_without_the_csrf_token_is_refused(csrf_client: Client) -> None:
    ids = make_users(1)
    response = csrf_client.post("/users/bulk/", {"action": "disable", "ids": str(ids[0])})
    assert response.status_code == 403
    assert VpnUser.objects.get().is_active


# --- the list: search, filters, pages, bad input ------------------------------------------


def test_the_list_shows_users_without_any_credential(owner_client: Client) -> None:
    make_users(3, protocol="shadowsocks")
    html = _text(owner_client.get("/users/"))
    assert "user0002" in html
    for password in VpnUser.objects.values_list("credential_password", flat=True):
        assert password not in html


def test_search_as_you_type_answers_with_the_results_partial(owner_client: Client) -> None:
    make_users(3)
    response = owner_client.get("/users/?q=user0001", headers={"HX-Request": "true"})
    html = _text(response)
    assert response.status_code == 200 and "<html" not in html
    assert "user0001" in html and "user0002" not in html
    # The export link outside the swapped region follows the search.
    assert 'id="export-link" hx-swap-oob="true" href="/users/export.csv?q=user0001' in html


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"q": "x" * 10_000}, "at most 200 characters"),
        ({"q": "abc\x00def"}, "null byte"),
        ({"username": "a*"}, "at least 3 characters"),
        ({"ordering": "password"}, "Unknown ordering"),
        ({"ordering": "'; DROP TABLE users_vpnuser; --"}, "Unknown ordering"),
        ({"page": "abc"}, "whole number"),
        ({"page": "0"}, "start at 1"),
        ({"page": "-4"}, "start at 1"),
        ({"page": "99999999999999999999"}, "Page numbers go up to"),
        ({"page": "7"}, "no page 7"),
        ({"after": "not-a-cursor"}, "not valid"),
        ({"status": "sleeping"}, "Select a valid choice"),
        ({"protocol": "openvpn"}, "Select a valid choice"),
        ({"used_min": "-5"}, "negative"),
        ({"used_min": "lots"}, "size such as 10GB"),
        ({"created_from": "2026-13-45"}, "valid date"),
        ({"server": "abc"}, "server id"),
    ],
)
def test_bad_list_input_gets_a_clear_message_never_a_500(
    owner_client: Client, query: dict[str, str], message: str
) -> None:
    make_users(3)
    response = owner_client.get("/users/", query)
    assert response.status_code == 200
    assert message in _text(response)


@pytest.mark.parametrize("q", ["%", "_", "\\", "'", '"', "%_\\", "🦄", "🦄🦄🦄", "a'b\"c", "--", "x" * 200])
def test_search_with_special_characters_answers_normally(owner_client: Client, q: str) -> None:
    make_users(3)
    response = owner_client.get("/users/", {"q": q})
    assert response.status_code == 200
    assert "user0001" not in _text(response)


def test_the_next_link_leads_to_the_next_rows(owner_client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    from users import selectors

    monkeypatch.setattr(selectors, "PAGE_SIZE", 5)
    make_users(12)
    html = _text(owner_client.get("/users/?protocol=vless"))
    assert "user0011" in html and "user0006" not in html
    found = re.search(r'rel="next" href="\?([^"]+)"', html)
    assert found
    next_query = found.group(1).replace("&amp;", "&")
    assert "protocol=vless" in next_query
    second = _text(owner_client.get(f"/users/?{next_query}"))
    assert "user0006" in second and "user0011" not in second
    last = _text(owner_client.get("/users/?last=1"))
    assert "user0000" in last and "user0005" not in last


# --- bulk actions ------------------------------------------------------------------------


def test_a_bulk_action_on_selected_rows_reports_its_count(owner_client: Client) -> None:
    ids = make_users(5)
    response = owner_client.post("/users/bulk/", {"action": "disable", "ids": f"{ids[0]},{ids[1]}"}, follow=True)
    assert "Disabled 2 users." in _text(response)
    assert VpnUser.objects.filter(is_active=False).count() == 2


def test_select_all_matching_sends_the_filter_not_the_ids(owner_client: Client) -> None:
    make_users(7, prefix="match")
    make_users(4, prefix="other", protocol="wireguard")
    response = owner_client.post(
        "/users/bulk/", {"action": "disable", "select_all": "on", "protocol": "vless", "q": "match"}, follow=True
    )
    assert "Disabled 7 users." in _text(response)
    assert set(VpnUser.objects.filter(is_active=False).values_list("protocol", flat=True)) == {"vless"}
    entry = AuditEntry.objects.get(action="users_disable")
    assert "protocol=vless" in entry.detail["selection"]


def test_select_all_with_a_bad_filter_writes_nothing(owner_client: Client) -> None:
    make_users(3)
    response = owner_client.post(
        "/users/bulk/", {"action": "disable", "select_all": "on", "status": "bogus"}, follow=True
    )
    assert "Select a valid choice" in _text(response)
    assert not VpnUser.objects.filter(is_active=False).exists()


def _stamp(response: Any) -> str:
    found = re.search(r'name="stamp" value="([^"]+)"', _text(response))
    assert found, _text(response)
    return found.group(1)


def test_delete_asks_for_confirmation_first(owner_client: Client) -> None:
    ids = make_users(4)
    data = {"action": "delete", "select_all": "on", "username": "user000*"}
    response = owner_client.post("/users/bulk/", data)
    assert response.status_code == 200 and "Delete 4 VPN users?" in _text(response)
    assert VpnUser.objects.count() == 4
    response = owner_client.post("/users/bulk/", {**data, "post": "yes", "stamp": _stamp(response)}, follow=True)
    assert "Deleted 4 users." in _text(response)
    assert not VpnUser.objects.filter(pk__in=ids).exists()


def test_a_confirmation_without_the_stamp_only_asks_again(owner_client: Client) -> None:
    make_users(2)
    response = owner_client.post("/users/bulk/", {"action": "delete", "select_all": "on", "post": "yes"})
    assert "Delete 2 VPN users?" in _text(response)
    assert VpnUser.objects.count() == 2


def test_deleting_all_users_matching_a_search_deletes_exactly_those(owner_client: Client) -> None:
    make_users(6, prefix="spam")
    make_users(3, prefix="keep")
    data = {"action": "delete", "select_all": "on", "q": "spam"}
    stamp = _stamp(owner_client.post("/users/bulk/", data))
    response = owner_client.post("/users/bulk/", {**data, "post": "yes", "stamp": stamp}, follow=True)
    assert "Deleted 6 users." in _text(response)
    assert sorted(VpnUser.objects.values_list("username", flat=True)) == ["keep0000", "keep0001", "keep0002"]


def test_a_selection_of_ten_thousand_ids_travels_in_one_field(owner_client: Client) -> None:
    ids = make_users(3)
    many = ",".join(str(n) for n in range(1_000_000, 1_000_000 + 9_997)) + "," + ",".join(map(str, ids))
    response = owner_client.post("/users/bulk/", {"action": "disable", "ids": many}, follow=True)
    assert "Disabled 3 users." in _text(response)


def test_more_ids_than_allowed_get_a_message(owner_client: Client) -> None:
    make_users(1)
    many = ",".join(str(n) for n in range(1, 10_002))
    response = owner_client.post("/users/bulk/", {"action": "disable", "ids": many}, follow=True)
    assert "at most 10,000" in _text(response)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "disable"}, "Select at least one user"),
        ({"action": "disable", "ids": "1,x"}, "not a list of user ids"),
        ({"action": "launch", "ids": "1"}, "Select a valid choice"),
        ({"action": "disable", "ids": "-4"}, "not a list of user ids"),
        ({"action": "disable", "ids": "99999999999999999999"}, "not a list of user ids"),
        ({"action": "extend", "ids": "1", "days": "30"}, "Select a valid choice"),
        ({"action": "add_data", "ids": "1", "amount": "10GB"}, "Select a valid choice"),
    ],
)
def test_a_bad_bulk_request_gets_a_message_and_writes_nothing(
    owner_client: Client, data: dict[str, str], message: str
) -> None:
    make_users(1)
    response = owner_client.post("/users/bulk/", data, follow=True)
    assert response.status_code == 200
    assert message in _text(response)
    assert not AuditEntry.objects.filter(action__startswith="users_").exclude(action="users_create_batch").exists()


# --- one user -----------------------------------------------------------------------------


def test_creating_a_user_through_the_page(owner_client: Client) -> None:
    response = owner_client.post(
        "/users/new/",
        {
            "username": "New.User",
            "protocol": "wireguard",
            "data_limit": "50GB",
            "reset_strategy": "month",
            "is_active": "on",
        },
    )
    user = VpnUser.objects.get(username="new.user")
    assert response.status_code == 302 and response["Location"] == f"/users/{user.pk}/"
    assert user.data_limit == 50 * 10**9 and user.wg_public_key


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": "bad name!", "protocol": "vless"}, "3 to 32 characters"),
        ({"username": "taken0000", "protocol": "vless"}, "already exists"),
        ({"username": "okname", "protocol": "pptp"}, "Select a valid choice"),
        ({"username": "okname", "protocol": "vless", "data_limit": "-10"}, "negative"),
        ({"username": "okname", "protocol": "vless", "data_limit": "5000PB"}, "1 PiB"),
        ({"username": "okname", "protocol": "vless", "on_hold_days": "0"}, "greater than or equal to 1"),
        ({"username": "okname", "protocol": "vless", "expire_at": "2030-01-01", "on_hold_days": "3"}, "cannot both"),
    ],
)
def test_a_bad_new_user_is_refused_with_a_message(owner_client: Client, data: dict[str, str], message: str) -> None:
    make_users(1, prefix="taken")
    response = owner_client.post("/users/new/", {"reset_strategy": "none", **data})
    assert response.status_code == 400
    assert message in _text(response)
    assert VpnUser.objects.count() == 1


def test_editing_a_user_keeps_credentials_unless_the_protocol_changes(owner_client: Client) -> None:
    (pk,) = make_users(1)
    before = VpnUser.objects.get(pk=pk).credential_uuid
    form = {"username": "ignored", "protocol": "vless", "reset_strategy": "none", "note": "vip", "data_limit": "1GB"}
    assert owner_client.post(f"/users/{pk}/", form).status_code == 302
    user = VpnUser.objects.get(pk=pk)
    assert (user.note, user.data_limit, user.credential_uuid, user.username) == ("vip", 10**9, before, "user0000")
    owner_client.post(f"/users/{pk}/", {**form, "protocol": "shadowsocks"})
    assert VpnUser.objects.get(pk=pk).credential_password


def test_the_detail_page_hides_credentials_until_revealed(owner_client: Client) -> None:
    (pk,) = make_users(1, protocol="shadowsocks")
    password = VpnUser.objects.get(pk=pk).credential_password
    assert password not in _text(owner_client.get(f"/users/{pk}/"))
    revealed = owner_client.post(f"/users/{pk}/credentials/")
    assert password in _text(revealed)
    assert "no-store" in revealed["Cache-Control"] or "no-cache" in revealed["Cache-Control"]
    assert AuditEntry.objects.filter(action="users_reveal_credentials", object_ids=[pk]).exists()


def test_revealing_credentials_needs_the_change_permission(make_operator: Any) -> None:
    (pk,) = make_users(1)
    viewer = Client()
    viewer.force_login(make_operator(VIEW))
    assert viewer.get(f"/users/{pk}/").status_code == 200
    assert viewer.post(f"/users/{pk}/credentials/").status_code == 403
    assert (
        viewer.post(f"/users/{pk}/", {"username": "x", "protocol": "vless", "reset_strategy": "none"}).status_code
        == 403
    )


def test_a_missing_user_is_a_404(owner_client: Client) -> None:
    assert owner_client.get("/users/424242/").status_code == 404


def test_the_statistics_panel_counts_by_status(owner_client: Client) -> None:
    make_users(4)
    make_users(2, prefix="off", is_active=False)
    html = _text(owner_client.get("/users/stats/"))
    assert "4 active" in html and "2 disabled" in html


@pytest.mark.django_db(transaction=True)
def test_a_list_read_that_runs_too_long_is_cancelled_with_a_message(
    owner_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import connection

    from users import selectors

    make_users(3)
    real_count = selectors.count_users

    def slow_count(qs: Any, **kwargs: Any) -> Any:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(2)")
        return real_count(qs, **kwargs)

    monkeypatch.setattr(selectors, "QUERY_TIMEOUT_MS", 100)
    monkeypatch.setattr(selectors, "count_users", slow_count)
    response = owner_client.get("/users/", {"q": "user"})
    assert response.status_code == 200
    assert "took longer than 0.1 s" in _text(response)
    monkeypatch.setattr(selectors, "count_users", real_count)
    assert "user0001" in _text(owner_client.get("/users/", {"q": "user"}))


def test_the_cached_rows_of_the_list_change_as_soon_as_a_user_is_disabled(
    owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    from users.services import users_set_active

    ids = make_users(3, prefix="rowcache")
    first = _text(owner_client.get("/users/"))
    assert first.count("badge-disabled") == 0
    with django_capture_on_commit_callbacks(execute=True):
        users_set_active(actor=None, users=VpnUser.objects.filter(pk=ids[0]), active=False)
    second = _text(owner_client.get("/users/"))
    assert second.count('class="badge badge-disabled"') == 1


def test_extra_fields_posted_to_the_user_forms_are_ignored(make_operator: Any) -> None:
    operator = make_operator("users.view_vpnuser", "users.add_vpnuser", "users.change_vpnuser", username="forger")
    client = Client()
    client.force_login(operator)
    forged = {
        "is_superuser": "on",
        "is_staff": "on",
        "wg_private_key": "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=",
        "credential_uuid": "00000000-0000-4000-8000-000000000000",
        "used_traffic": "0",
        "wg_address": "10.8.0.2",
    }
    data = {"username": "forge.new", "protocol": "wireguard", "reset_strategy": "none", "is_active": "on"}
    assert client.post("/users/new/", {**data, **forged}).status_code == 302
    created = VpnUser.objects.get(username="forge.new")
    assert created.wg_private_key != forged["wg_private_key"] and created.wg_address is None
    (pk,) = make_users(1, used_traffic=5000)
    before = VpnUser.objects.get(pk=pk)
    form = {"username": "ignored", "protocol": "vless", "reset_strategy": "none", "note": "edited"}
    assert client.post(f"/users/{pk}/", {**form, **forged}).status_code == 302
    after = VpnUser.objects.get(pk=pk)
    assert after.note == "edited"
    assert (after.credential_uuid, after.used_traffic) == (before.credential_uuid, 5000)
    operator.refresh_from_db()
    assert not operator.is_superuser
