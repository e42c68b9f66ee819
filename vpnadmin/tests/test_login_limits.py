"""Login limits (django-axes, database handler) on /login/ and /admin/login/, and the audit of logins."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings

from conftest import PASSWORD
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

LIMIT = settings.AXES_FAILURE_LIMIT


def _login(client: Client, username: str, password: str, path: str = "/login/", **extra: Any) -> Any:
    return client.post(path, {"username": username, "password": password}, **extra)


def _fail(times: int, username: str = "owner", **extra: Any) -> None:
    for _ in range(times):
        response = _login(Client(), username, "wrong password", **extra)
        assert response.status_code in (200, 429)


def test_a_good_login_works_and_is_audited_with_the_client_address(owner: User) -> None:
    response = _login(Client(), "owner", PASSWORD, REMOTE_ADDR="192.0.2.10")
    assert response.status_code == 302
    entry = AuditEntry.objects.get(action="auth_login")
    assert entry.actor_name == "owner"
    assert entry.client_ip == "192.0.2.10"
    assert entry.request_id


def test_the_session_key_changes_at_login(owner: User) -> None:
    client = Client()
    client.get("/login/")
    client.cookies["sessionid"] = "fixated-session-key-from-an-attacker"
    _login(client, "owner", PASSWORD)
    assert client.cookies["sessionid"].value not in ("", "fixated-session-key-from-an-attacker")


def test_a_failed_login_is_audited_without_the_password(owner: User) -> None:
    _login(Client(), "owner", "hunter2-wrong")
    entry = AuditEntry.objects.get(action="auth_login_failed")
    assert entry.detail == {"username": "owner"}
    assert "hunter2" not in str(entry.detail) and entry.actor is None


def test_a_logout_is_audited(owner: User) -> None:
    client = Client()
    _login(client, "owner", PASSWORD)
    client.post("/logout/")
    assert AuditEntry.objects.filter(action="auth_logout", actor_name="owner").count() == 1


def test_too_many_failures_lock_the_username_even_with_the_right_password(owner: User) -> None:
    # Each failure from another address: the username alone is what locks.
    for n in range(LIMIT):
        _login(Client(), "owner", "wrong", REMOTE_ADDR=f"198.51.100.{n + 1}")
    response = _login(Client(), "owner", PASSWORD, REMOTE_ADDR="198.51.100.200")
    assert response.status_code == 429
    assert b"Too many failed logins" in response.content
    assert "_auth_user_id" not in Client().session
    assert AuditEntry.objects.filter(action="auth_lockout").exists()


def test_too_many_failures_lock_the_client_address_for_every_username(owner: User) -> None:
    for n in range(LIMIT):
        _login(Client(), f"nobody{n}", "wrong", REMOTE_ADDR="203.0.113.7")
    assert _login(Client(), "owner", PASSWORD, REMOTE_ADDR="203.0.113.7").status_code == 429
    # Another address is not locked.
    assert _login(Client(), "owner", PASSWORD, REMOTE_ADDR="203.0.113.8").status_code == 302


def test_the_admin_login_is_limited_too(owner: User) -> None:
    for n in range(LIMIT):
        _login(Client(), f"nobody{n}", "wrong", path="/admin/login/", REMOTE_ADDR="203.0.113.9")
    response = _login(Client(), "owner", PASSWORD, path="/admin/login/", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 429


def test_a_forged_x_forwarded_for_does_not_reset_the_lock_without_a_proxy(owner: User) -> None:
    for n in range(LIMIT):
        _login(Client(), f"nobody{n}", "wrong", REMOTE_ADDR="203.0.113.20", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}")
    response = _login(Client(), "owner", PASSWORD, REMOTE_ADDR="203.0.113.20", HTTP_X_FORWARDED_FOR="10.1.1.1")
    assert response.status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.20"}


@override_settings(BEHIND_PROXY=True)
def test_behind_a_proxy_only_the_address_the_proxy_appended_counts(owner: User) -> None:
    # The client forges the left part; our proxy appends the address it saw (right-most).
    for n in range(LIMIT):
        _login(
            Client(), f"nobody{n}", "wrong", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.30"
        )
    forged = _login(Client(), "owner", PASSWORD, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1, 203.0.113.30")
    assert forged.status_code == 429
    other_client = _login(Client(), "owner", PASSWORD, REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.31")
    assert other_client.status_code == 302


def test_the_lock_holds_with_redis_stopped(owner: User, closed_port: int) -> None:
    caches = copy.deepcopy(settings.CACHES)
    caches["default"]["LOCATION"] = f"redis://127.0.0.1:{closed_port}/0"
    with override_settings(CACHES=caches):
        for n in range(LIMIT):
            _login(Client(), f"nobody{n}", "wrong", REMOTE_ADDR="203.0.113.40")
        assert _login(Client(), "owner", PASSWORD, REMOTE_ADDR="203.0.113.40").status_code == 429


def test_an_administrator_sees_the_lockout_and_lifts_it(owner: User, owner_client: Client) -> None:
    victim = User.objects.create_user("victim", password=PASSWORD, is_staff=True)
    for n in range(LIMIT):
        _login(Client(), "victim", "wrong", REMOTE_ADDR=f"198.51.100.{n + 1}")
    assert _login(Client(), "victim", PASSWORD, REMOTE_ADDR="198.51.100.99").status_code == 429

    listing = owner_client.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"victim" in listing.content
    ids = list(AccessAttempt.objects.filter(username="victim").values_list("pk", flat=True))
    response = owner_client.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302
    assert not AccessAttempt.objects.filter(username="victim").exists()
    entry = AuditEntry.objects.get(action="admin_delete", target="axes.AccessAttempt")
    assert entry.actor_name == "owner" and entry.count == len(ids)
    assert _login(Client(), "victim", PASSWORD, REMOTE_ADDR="198.51.100.99").status_code == 302
    assert victim.pk


def test_an_operator_cannot_lift_a_lockout(make_operator: Any) -> None:
    operator = make_operator("axes.view_accessattempt")
    client = Client()
    client.force_login(operator)
    _fail(LIMIT, username="someone", REMOTE_ADDR="203.0.113.50")
    ids = list(AccessAttempt.objects.values_list("pk", flat=True))
    response = client.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": ids, "post": "yes"}
    )
    # The admin offers this role no action at all: the list is shown again, nothing runs.
    assert response.status_code == 200
    assert AccessAttempt.objects.count() == len(ids)
    assert not AuditEntry.objects.filter(action="admin_delete").exists()
