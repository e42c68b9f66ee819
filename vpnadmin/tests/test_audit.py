"""The audit trail: one entry per change on every path, with request id, address and before/after."""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction
from django.test import Client, override_settings
from django.utils import timezone

from conftest import PASSWORD
from vpnadmin.audit import MASK, audit_changes, audit_record
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db


# --- request id -------------------------------------------------------------------------


def test_every_response_carries_a_request_id(owner_client: Client) -> None:
    first, second = owner_client.get("/users/"), Client().get("/login/")
    assert len(first["X-Request-ID"]) == 32 and first["X-Request-ID"] != second["X-Request-ID"]


def test_a_request_id_from_the_client_is_ignored_without_a_trusted_proxy() -> None:
    response = Client().get("/login/", HTTP_X_REQUEST_ID="chosen-by-the-client-123")
    assert response["X-Request-ID"] != "chosen-by-the-client-123"


@override_settings(BEHIND_PROXY=True)
def test_a_request_id_from_the_trusted_proxy_is_kept_and_reaches_the_audit_entry(owner: User) -> None:
    response = Client().post(
        "/login/", {"username": "owner", "password": PASSWORD}, HTTP_X_REQUEST_ID="0123456789abcdef0123456789abcdef"
    )
    assert response["X-Request-ID"] == "0123456789abcdef0123456789abcdef"
    assert AuditEntry.objects.get(action="auth_login").request_id == "0123456789abcdef0123456789abcdef"


@override_settings(BEHIND_PROXY=True)
def test_a_malformed_request_id_is_replaced() -> None:
    response = Client().get("/login/", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert "\n" not in response["X-Request-ID"] and " " not in response["X-Request-ID"]


def test_log_lines_carry_the_request_id(owner_client: Client, caplog: pytest.LogCaptureFixture) -> None:
    from vpnadmin.requestctx import RequestIdLogFilter

    caplog.handler.addFilter(RequestIdLogFilter())
    with caplog.at_level(logging.WARNING, logger="django.request"):
        response = owner_client.get("/no-such-page/")
    assert response.status_code == 404
    records = [r for r in caplog.records if r.name == "django.request"]
    assert records and records[-1].request_id == response["X-Request-ID"]  # type: ignore[attr-defined]


# --- the admin path, auth objects included ------------------------------------------------


def test_adding_a_staff_user_in_the_admin_is_one_entry_with_the_password_masked(owner_client: Client) -> None:
    response = owner_client.post(
        "/admin/auth/user/add/",
        {
            "username": "newstaff",
            "password1": "a long new password 99",
            "password2": "a long new password 99",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content[:500]
    entries = AuditEntry.objects.filter(target="auth.User").exclude(action__startswith="auth_")
    assert entries.count() == 1
    entry = entries.get()
    assert entry.action == "admin_add" and entry.actor_name == "owner"
    assert "a long new password" not in str(entry.changes) + str(entry.detail)


def test_changing_a_users_groups_in_the_admin_records_before_and_after(owner: User, owner_client: Client) -> None:
    staffer = User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    viewer = Group.objects.get(name="Viewer")
    page = owner_client.get(f"/admin/auth/user/{staffer.pk}/change/")
    form = page.context["adminform"].form
    skipped = ("password", "groups", "user_permissions")
    data = {k: v for k, v in form.initial.items() if v is not None and k not in skipped}
    data.update(
        {
            "username": "staffer",
            "is_staff": "on",
            "is_active": "on",
            "groups": [viewer.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        }
    )
    data.pop("last_login", None)
    data.pop("date_joined", None)
    response = owner_client.post(f"/admin/auth/user/{staffer.pk}/change/", data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    entry = AuditEntry.objects.get(action="admin_change", target="auth.User")
    assert entry.changes["groups"] == [[], [str(viewer.pk)]]
    assert entry.object_ids == [str(staffer.pk)]


def test_deleting_one_group_in_the_admin_is_one_entry(owner_client: Client) -> None:
    group = Group.objects.create(name="Temporary")
    response = owner_client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin_delete")
    assert entry.target == "auth.Group" and entry.object_ids == [str(group.pk)] and entry.count == 1


def test_deleting_users_in_bulk_in_the_admin_is_one_entry(owner_client: Client) -> None:
    ids = [User.objects.create_user(f"gone{n}").pk for n in range(3)]
    response = owner_client.post(
        "/admin/auth/user/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin_delete")
    assert entry.count == 3 and sorted(entry.object_ids) == sorted(str(i) for i in ids)


def test_a_password_change_in_the_admin_is_recorded_without_the_password(owner_client: Client) -> None:
    staffer = User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    response = owner_client.post(
        f"/admin/auth/user/{staffer.pk}/password/",
        {"password1": "another long password 77", "password2": "another long password 77", "usable_password": "true"},
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin_change", target="auth.User")
    assert "another long password" not in str(entry.changes) + str(entry.detail)


def test_a_permission_granted_through_a_group_is_recorded(owner_client: Client) -> None:
    group = Group.objects.create(name="Custom")
    permission = Permission.objects.get(codename="view_vpnuser")
    response = owner_client.post(
        f"/admin/auth/group/{group.pk}/change/", {"name": "Custom", "permissions": [permission.pk]}
    )
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="admin_change", target="auth.Group")
    assert entry.changes == {"permissions": [[], [str(permission.pk)]]}


def test_an_admin_save_that_calls_an_auditing_service_is_not_recorded_twice(rf: Any, owner: User) -> None:
    from django.contrib import admin

    from vpnadmin import requestctx

    model_admin = admin.site._registry[Group]
    request = rf.post("/admin/auth/group/add/")
    request.user = owner
    token = requestctx._current.set(requestctx.RequestContext(request_id="r" * 32, client_ip="127.0.0.1"))
    try:
        group = Group.objects.create(name="ViaService")

        class _Form:
            changed_data: list[str] = []
            initial: dict[str, Any] = {}
            cleaned_data: dict[str, Any] = {}

        # A service that records its own entry inside the save:
        original = Group.save

        def save_with_audit(self: Group, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            audit_record(actor=owner, action="groups_update", target="auth.Group", count=1, object_ids=[self.pk])

        Group.save = save_with_audit  # type: ignore[method-assign,assignment]
        try:
            model_admin.save_model(request, group, _Form(), True)
        finally:
            Group.save = original  # type: ignore[method-assign]
        model_admin.log_change(request, group, "changed")
    finally:
        requestctx._current.reset(token)
    assert list(AuditEntry.objects.values_list("action", flat=True)) == ["groups_update"]


# --- masking ------------------------------------------------------------------------------


def test_secret_fields_are_masked_in_before_and_after() -> None:
    changes = audit_changes(
        {"note": "a", "wg_private_key": "KEY-A", "credential_password": "pw1"},
        {"note": "b", "wg_private_key": "KEY-B", "credential_password": "pw2"},
    )
    assert changes == {"note": ["a", "b"], "wg_private_key": [MASK, MASK], "credential_password": [MASK, MASK]}


# --- append-only, retention -----------------------------------------------------------------


def _entry(**kwargs: Any) -> AuditEntry:
    return audit_record(actor=None, action="test_write", target="test.Thing", count=1, **kwargs)


def test_the_database_refuses_to_change_an_entry() -> None:
    entry = _entry()
    with pytest.raises(DatabaseError, match="cannot be changed"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="rewritten")
    assert AuditEntry.objects.get(pk=entry.pk).action == "test_write"


def test_the_database_refuses_to_delete_an_entry() -> None:
    entry = _entry()
    with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_deleting_an_actor_keeps_their_entries_under_their_name(owner: User) -> None:
    staffer = User.objects.create_user("leaver", is_staff=True)
    entry = audit_record(actor=staffer, action="test_write", target="test.Thing", count=1)
    staffer.delete()
    entry.refresh_from_db()
    assert entry.actor is None and entry.actor_name == "leaver"


def test_the_admin_offers_no_change_and_no_delete_of_entries(owner_client: Client) -> None:
    entry = _entry()
    assert owner_client.get(f"/admin/vpnadmin/auditentry/{entry.pk}/change/").status_code == 200  # read-only view
    assert owner_client.post(f"/admin/vpnadmin/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = owner_client.post(
        "/admin/vpnadmin/auditentry/", {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"}
    )
    assert response.status_code == 200  # no action exists: the list is shown again
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_pruneaudit_deletes_only_entries_older_than_the_given_days() -> None:
    from django.db import connection

    recent = _entry()
    with connection.cursor() as cursor:
        # An entry from 100 days ago, written as it was then (rows are never updated).
        cursor.execute(
            "INSERT INTO vpnadmin_auditentry (actor_name, action, target, count, object_ids, ids_truncated,"
            " detail, changes, request_id, created_at) VALUES ('', 'test_write', 'test.Thing', 1, '[]', false,"
            " '{}', '{}', '', %s) RETURNING id",
            [timezone.now() - timedelta(days=100)],
        )
        old_id = cursor.fetchone()[0]
    out = StringIO()
    call_command("pruneaudit", "--older-than", "90", stdout=out)
    assert "Deleted 1 audit entries" in out.getvalue()
    assert not AuditEntry.objects.filter(pk=old_id).exists()
    assert AuditEntry.objects.filter(pk=recent.pk).exists()
    assert AuditEntry.objects.get(action="audit_prune").count == 1


def test_pruneaudit_refuses_zero_days() -> None:
    _entry()
    with pytest.raises(CommandError, match="at least 1 day"):
        call_command("pruneaudit", "--older-than", "0")
    assert AuditEntry.objects.count() == 1


# --- the audit page ---------------------------------------------------------------------


def test_the_audit_page_filters_by_actor_action_object_and_date(owner: User, owner_client: Client) -> None:
    audit_record(actor=owner, action="users_disable", target="users.VpnUser", count=1, object_ids=[41])
    audit_record(actor=None, action="users_delete", target="users.VpnUser", count=2, object_ids=[42, 43])
    audit_record(actor=owner, action="servers_start", target="containers.VpnServer", count=1, object_ids=[7])

    def ids(**query: str) -> set[str]:
        response = owner_client.get("/audit/", query)
        assert response.status_code == 200
        return {e.action for e in response.context["page"].entries} - {"auth_login"}

    assert ids(actor="owner") == {"users_disable", "servers_start"}
    assert ids(action="users_delete") == {"users_delete"}
    assert ids(target="containers.VpnServer") == {"servers_start"}
    assert ids(object_id="42") == {"users_delete"}
    today = timezone.localdate().isoformat()
    assert "users_delete" in ids(since=today, until=today)
    assert ids(until="2000-01-01") == set()


def test_the_audit_page_pages_by_key(owner_client: Client) -> None:
    for n in range(55):
        audit_record(actor=None, action="test_write", target="test.Thing", count=1, object_ids=[n])
    first = owner_client.get("/audit/", {"action": "test_write"})
    page = first.context["page"]
    assert len(page.entries) == 50 and page.next_before is not None
    second = owner_client.get("/audit/", {"action": "test_write", "before": page.next_before})
    assert len(second.context["page"].entries) == 5 and second.context["page"].next_before is None
    assert f"before={page.next_before}".encode() in first.content


def test_the_audit_page_says_when_from_is_after_to(owner_client: Client) -> None:
    response = owner_client.get("/audit/", {"since": "2026-02-01", "until": "2026-01-01"})
    assert response.status_code == 200 and b"is after" in response.content


def test_the_audit_page_needs_the_view_permission(stranger_client: Client) -> None:
    assert stranger_client.get("/audit/").status_code == 403


# --- every model's admin, single deletes included --------------------------------------------


def test_deleting_one_vpn_user_in_the_admin_leaves_exactly_one_entry(owner_client: Client) -> None:
    from users.tests.factories import make_users

    (user_id,) = make_users(1, prefix="single")
    before = AuditEntry.objects.count()
    response = owner_client.post(f"/admin/users/vpnuser/{user_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    entries = AuditEntry.objects.order_by("-id")[: AuditEntry.objects.count() - before]
    assert len(entries) == 1
    assert entries[0].target == "users.VpnUser" and str(user_id) in [str(i) for i in entries[0].object_ids]


def test_deleting_a_docker_host_in_the_admin_leaves_exactly_one_entry(owner_client: Client) -> None:
    from containers.models import DockerHost

    host = DockerHost.objects.create(name="audited", base_url="unix:///var/run/docker.sock")
    before = AuditEntry.objects.count()
    response = owner_client.post(f"/admin/containers/dockerhost/{host.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not DockerHost.objects.filter(pk=host.pk).exists()
    assert AuditEntry.objects.count() - before == 1


def test_work_outside_a_request_can_carry_the_request_id_of_the_request_that_queued_it() -> None:
    from vpnadmin import requestctx

    with requestctx.activate("0123456789abcdef0123456789abcdef"):
        entry = _entry()
    assert entry.request_id == "0123456789abcdef0123456789abcdef" and entry.client_ip is None
    assert _entry().request_id == ""  # and nothing leaks out of the block
