"""Users on servers: assigned from the page, the admin and CSV; every write marks its servers dirty.

The data plane applies a server once per batch of writes that marked it
(containers.services.servers_mark_dirty); these tests check that every users write
marks exactly the servers whose users it touched: the old and the new one of a move.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from users import services
from users.csv_io import parse_users_csv
from users.models import VpnUser
from users.tests.factories import make_users
from users.tests.servers import dirty_servers, make_server, settle_servers

pytestmark = pytest.mark.django_db

Capture = Callable[..., AbstractContextManager[Any]]


def _text(response: Any) -> str:
    return response.content.decode()


def _stamp(response: Any) -> str:
    found = re.search(r'name="stamp" value="([^"]+)"', _text(response))
    assert found, _text(response)
    return found.group(1)


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Capture) -> Callable[[], AbstractContextManager[Any]]:
    """Run a block and then its on-commit work (the test's transaction never commits)."""

    def run() -> AbstractContextManager[Any]:
        return django_capture_on_commit_callbacks(execute=True)

    return run


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    made = {
        "v1": make_server("v1", "vless"),
        "v2": make_server("v2", "vless"),
        "wg": make_server("wg", "wireguard"),
        "idle": make_server("idle", "vless"),
    }
    settle_servers()
    yield made


def _on(server: Any, count: int, prefix: str, protocol: str = "vless") -> list[int]:
    ids = make_users(count, prefix=prefix, protocol=protocol)
    VpnUser.objects.filter(pk__in=ids).update(server=server)
    settle_servers()
    return ids


# --- every write marks its servers ---------------------------------------------------------


def test_creating_users_on_a_server_marks_that_server_only(servers: dict[str, Any], committed: Any) -> None:
    with committed():
        result = services.users_create_batch(
            actor=None, rows=[{"username": "new-one", "protocol": "vless", "server_id": servers["v1"].pk}]
        )
    assert result.ok and VpnUser.objects.get().server_id == servers["v1"].pk
    assert dirty_servers() == {"v1"}


def test_creating_users_without_a_server_marks_no_server(servers: dict[str, Any], committed: Any) -> None:
    with committed():
        make_users(3)
    assert dirty_servers() == set()


def test_editing_users_marks_the_server_that_serves_them(servers: dict[str, Any], committed: Any) -> None:
    ids = _on(servers["v1"], 2, "on-v1")
    with committed():
        services.users_update_batch(actor=None, changes={ids[0]: {"data_limit": "1GB"}})
    assert dirty_servers() == {"v1"}


def test_moving_users_marks_the_old_and_the_new_server(servers: dict[str, Any], committed: Any) -> None:
    ids = _on(servers["v1"], 2, "mover")
    with committed():
        result = services.users_update_batch(actor=None, changes={pk: {"server_id": servers["v2"].pk} for pk in ids})
    assert result.ok
    assert dirty_servers() == {"v1", "v2"}


@pytest.mark.parametrize(
    "write",
    [
        lambda users: services.users_set_active(actor=None, users=users, active=False),
        lambda users: services.users_reset_traffic(actor=None, users=users.filter(pk__gt=0)),
        lambda users: services.users_delete(actor=None, users=users),
        lambda users: services.users_bulk_edit(actor=None, users=users, edit=services.BulkEdit(add_days=3)),
    ],
    ids=["disable", "reset", "delete", "bulk-edit"],
)
def test_every_set_operation_marks_the_servers_of_the_users_it_touched(
    servers: dict[str, Any], committed: Any, write: Callable[[Any], int]
) -> None:
    v1 = _on(servers["v1"], 2, "a")
    _on(servers["v2"], 2, "b")
    VpnUser.objects.filter(pk__in=v1).update(used_traffic=5)
    with committed():
        assert write(VpnUser.objects.filter(pk__in=v1)) >= 1
    assert dirty_servers() == {"v1"}


def test_a_bulk_move_over_all_matching_marks_every_old_server_and_the_new_one(
    servers: dict[str, Any], committed: Any
) -> None:
    _on(servers["v1"], 2, "a")
    _on(servers["v2"], 2, "b")
    make_users(2, prefix="loose")
    edit = services.BulkEdit(values={"server_id": servers["idle"].pk})
    with committed():
        assert services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit) == 6
    assert dirty_servers() == {"v1", "v2", "idle"}
    assert set(VpnUser.objects.values_list("server_id", flat=True)) == {servers["idle"].pk}


def test_taking_users_off_their_server_marks_it(servers: dict[str, Any], committed: Any) -> None:
    _on(servers["v1"], 2, "a")
    with committed():
        services.users_bulk_edit(
            actor=None, users=VpnUser.objects.all(), edit=services.BulkEdit(values={"server_id": None})
        )
    assert dirty_servers() == {"v1"} and not VpnUser.objects.filter(server__isnull=False).exists()


def test_traffic_marks_a_server_only_when_a_user_reaches_the_limit(servers: dict[str, Any], committed: Any) -> None:
    (pk,) = _on(servers["v1"], 1, "t")
    VpnUser.objects.filter(pk=pk).update(data_limit=100)
    with committed():
        services.users_record_traffic(actor=None, usage={pk: 40})
    assert dirty_servers() == set()
    with committed():
        services.users_record_traffic(actor=None, usage={pk: 60})
    assert dirty_servers() == {"v1"}


def test_a_refused_write_marks_nothing(servers: dict[str, Any], committed: Any) -> None:
    _on(servers["v1"], 2, "a")
    edit = services.BulkEdit(values={"server_id": servers["wg"].pk})
    with committed(), pytest.raises(services.BulkRefused):
        services.users_bulk_edit(actor=None, users=VpnUser.objects.all(), edit=edit)
    assert dirty_servers() == set()


# --- protocol must match ------------------------------------------------------------------------


def test_a_new_user_on_a_server_of_another_protocol_is_a_bad_row(servers: dict[str, Any]) -> None:
    rows = [
        {"username": "fine", "protocol": "wireguard", "server_id": servers["wg"].pk},
        {"username": "wrong", "protocol": "vless", "server_id": servers["wg"].pk},
        {"username": "nowhere", "protocol": "vless", "server_id": 987654},
    ]
    result = services.users_create_batch(actor=None, rows=rows)
    assert [(e.position, e.field) for e in result.errors] == [(2, "server"), (3, "server")]
    assert "'wg' serves wireguard users; this user uses vless" in str(result.errors[0])
    assert "does not exist" in str(result.errors[1])
    assert not VpnUser.objects.exists()


def test_changing_the_protocol_of_a_user_on_a_server_is_refused_unless_it_moves_too(servers: dict[str, Any]) -> None:
    (pk,) = _on(servers["v1"], 1, "p")
    refused = services.users_update_batch(actor=None, changes={pk: {"protocol": "wireguard"}})
    assert not refused.ok and "serves vless users" in str(refused.errors[0])
    assert VpnUser.objects.get(pk=pk).protocol == "vless"
    both = {"protocol": "wireguard", "server_id": servers["wg"].pk}
    moved = services.users_update_batch(actor=None, changes={pk: both})
    assert moved.ok
    assert VpnUser.objects.values_list("protocol", "server_id").get(pk=pk) == ("wireguard", servers["wg"].pk)


# --- the page, the admin, CSV ---------------------------------------------------------------------


def test_a_user_created_on_the_page_can_be_given_a_server(owner_client: Client, servers: dict[str, Any]) -> None:
    form = {"username": "paged", "protocol": "vless", "reset_strategy": "none", "server": str(servers["v2"].pk)}
    assert owner_client.post("/users/new/", form).status_code == 302
    assert VpnUser.objects.get(username="paged").server_id == servers["v2"].pk


def test_the_page_refuses_a_server_of_another_protocol_with_a_message(
    owner_client: Client, servers: dict[str, Any]
) -> None:
    form = {"username": "paged", "protocol": "vless", "reset_strategy": "none", "server": str(servers["wg"].pk)}
    response = owner_client.post("/users/new/", form)
    assert response.status_code == 400 and "serves wireguard users" in _text(response)
    assert not VpnUser.objects.exists()


def test_editing_a_user_on_the_page_moves_it_to_another_server(owner_client: Client, servers: dict[str, Any]) -> None:
    (pk,) = _on(servers["v1"], 1, "e")
    form = {"username": "x", "protocol": "vless", "reset_strategy": "none", "server": str(servers["v2"].pk)}
    assert owner_client.post(f"/users/{pk}/", form).status_code == 302
    assert VpnUser.objects.get(pk=pk).server_id == servers["v2"].pk
    assert f'<option value="{servers["v2"].pk}" selected>' in _text(owner_client.get(f"/users/{pk}/"))


def test_the_admin_assigns_a_server_and_refuses_one_of_another_protocol(
    owner_client: Client, servers: dict[str, Any]
) -> None:
    base = {"username": "adm", "protocol": "vless", "is_active": "on", "used_traffic": "0", "reset_strategy": "none"}
    response = owner_client.post("/admin/users/vpnuser/add/", {**base, "server": str(servers["wg"].pk)})
    assert response.status_code == 200 and "serves wireguard users" in _text(response)
    assert not VpnUser.objects.exists()
    response = owner_client.post("/admin/users/vpnuser/add/", {**base, "server": str(servers["v1"].pk)})
    assert response.status_code == 302
    assert VpnUser.objects.get().server_id == servers["v1"].pk


def test_the_admin_bulk_edit_moves_users_between_servers(owner_client: Client, servers: dict[str, Any]) -> None:
    ids = _on(servers["v1"], 3, "adm")
    base = {"action": "edit", ACTION_CHECKBOX_NAME: [str(pk) for pk in ids], "index": "0"}
    asked = owner_client.post("/admin/users/vpnuser/", base)
    data = {**base, "post": "yes", "stamp": _stamp(asked), "edit-server": str(servers["v2"].pk)}
    response = owner_client.post("/admin/users/vpnuser/", data, follow=True)
    assert "Edited 3 users: server v2." in _text(response)
    assert set(VpnUser.objects.values_list("server_id", flat=True)) == {servers["v2"].pk}


def _csv(text: str) -> Any:
    return parse_users_csv(io.BytesIO(text.encode()), max_rows=100)


def test_a_csv_server_column_names_servers_and_reports_bad_ones_by_line(servers: dict[str, Any]) -> None:
    parsed = _csv(
        "username,protocol,server\n"
        "good-one,vless,v1\n"
        "no-server,vless,\n"
        "unknown,vless,atlantis\n"
        "host-named,wireguard,test-host/wg\n"
    )
    assert [(e.position, e.field) for e in parsed.errors] == [(4, "server")]
    assert "'atlantis' is not a server here" in str(parsed.errors[0])
    assert [row.get("server_id") for row in parsed.rows] == [servers["v1"].pk, None, servers["wg"].pk]
    assert parsed.lines == [2, 3, 5]


def test_a_server_name_on_two_hosts_must_be_written_host_slash_name(servers: dict[str, Any]) -> None:
    make_server("v1", "vless", host="other-host")
    parsed = _csv("username,protocol,server\nambiguous,vless,v1\nexact,vless,other-host/v1\n")
    assert "'v1' names 2 servers; write host/name" in str(parsed.errors[0])
    assert len(parsed.rows) == 1


def test_importing_a_csv_with_a_protocol_mismatch_reports_the_line_and_writes_nothing(
    owner_client: Client, servers: dict[str, Any]
) -> None:
    body = b"username,protocol,server\nfine,vless,v1\nwrong,vless,wg\nlost,vless,nowhere\n"
    upload = SimpleUploadedFile("users.csv", body, content_type="text/csv")
    response = owner_client.post("/users/import/", {"file": upload, "step": "import"})
    html = _text(response)
    assert "serves wireguard users" in html and "nowhere" in html
    assert re.search(r"\b3\b", html) and re.search(r"\b4\b", html)
    assert not VpnUser.objects.exists()


def test_importing_a_csv_with_servers_assigns_them_and_marks_them_dirty(
    owner_client: Client, servers: dict[str, Any], committed: Any
) -> None:
    body = b"username,protocol,server\na-one,vless,v1\na-two,wireguard,wg\n"
    upload = SimpleUploadedFile("users.csv", body, content_type="text/csv")
    with committed():
        response = owner_client.post("/users/import/", {"file": upload, "step": "import"})
    assert response.status_code == 200, _text(response)
    assert dict(VpnUser.objects.values_list("username", "server__name")) == {"a-one": "v1", "a-two": "wg"}
    assert dirty_servers() == {"v1", "wg"}


def test_an_export_with_servers_reimports_onto_the_same_servers(owner_client: Client, servers: dict[str, Any]) -> None:
    _on(servers["v1"], 2, "round")
    exported = b"".join(owner_client.get("/users/export.csv").streaming_content)  # type: ignore[attr-defined]
    assert b",server," in exported.splitlines()[0] and b",v1," in exported
    VpnUser.objects.all().delete()
    upload = SimpleUploadedFile("users.csv", exported, content_type="text/csv")
    owner_client.post("/users/import/", {"file": upload, "step": "import"})
    assert set(VpnUser.objects.values_list("server__name", flat=True)) == {"v1"}
    assert VpnUser.objects.count() == 2
