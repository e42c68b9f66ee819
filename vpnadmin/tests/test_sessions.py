"""Sessions: idle timeout, log out everywhere, disabled users, and a rotatable /metrics token."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client, override_settings

from conftest import PASSWORD
from vpnadmin.models import AuditEntry, UserSession
from vpnadmin.sessions import LAST_SEEN_KEY

pytestmark = pytest.mark.django_db


def _logged_in(username: str, password: str = PASSWORD) -> Client:
    client = Client()
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, response.content[:300]
    return client


def _age_session(client: Client, seconds: int) -> None:
    session = client.session
    session[LAST_SEEN_KEY] = int(time.time()) - seconds
    session.save()


def test_a_session_idle_longer_than_the_timeout_ends(owner: User) -> None:
    client = _logged_in("owner")
    with override_settings(SESSION_IDLE_TIMEOUT=600):
        _age_session(client, 601)
        response = client.get("/users/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert client.get("/users/").status_code == 302  # the session is gone, not only this request
    assert AuditEntry.objects.filter(action="auth_logout", detail__reason="idle").count() == 1


def test_a_session_used_within_the_timeout_stays(owner: User) -> None:
    client = _logged_in("owner")
    with override_settings(SESSION_IDLE_TIMEOUT=600):
        _age_session(client, 300)
        assert client.get("/users/").status_code == 200


def test_log_out_everywhere_ends_every_session_of_the_caller(owner: User) -> None:
    first, second = _logged_in("owner"), _logged_in("owner")
    other = User.objects.create_user("other", password=PASSWORD, is_staff=True)
    bystander = _logged_in("other")
    response = first.post("/account/logout-everywhere/")
    assert response.status_code == 302
    assert second.get("/users/").status_code == 302
    assert first.get("/users/").status_code == 302
    assert bystander.get("/account/sessions/").status_code == 200
    assert not UserSession.objects.filter(user=owner).exists()
    assert AuditEntry.objects.get(action="sessions_end").detail == {"user": "owner", "reason": "self"}
    assert other.pk


def test_log_out_everywhere_refuses_a_get(owner: User) -> None:
    client = _logged_in("owner")
    assert client.get("/account/logout-everywhere/").status_code == 405
    assert UserSession.objects.filter(user=owner).count() == 1


def test_the_sessions_page_lists_ones_own_logins(owner: User) -> None:
    client = _logged_in("owner")
    page = client.get("/account/sessions/")
    assert page.status_code == 200 and b"this one" in page.content


def test_an_administrator_ends_every_session_of_a_staff_user(owner: User) -> None:
    User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    staffer = _logged_in("staffer")
    admin_client = _logged_in("owner")
    target = User.objects.get(username="staffer")
    response = admin_client.post(f"/staff/{target.pk}/logout-everywhere/")
    assert response.status_code == 302
    assert staffer.get("/account/sessions/").status_code == 302
    entry = AuditEntry.objects.get(action="sessions_end")
    assert entry.actor_name == "owner" and entry.detail["reason"] == "administrator"


def test_the_admin_action_ends_a_staff_users_sessions(owner: User) -> None:
    User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    staffer = _logged_in("staffer")
    admin_client = _logged_in("owner")
    target = User.objects.get(username="staffer")
    response = admin_client.post(
        "/admin/auth/user/", {"action": "end_sessions", "_selected_action": [target.pk]}, follow=True
    )
    assert response.status_code == 200 and b"Ended 1 session" in response.content
    assert staffer.get("/account/sessions/").status_code == 302


def test_an_operator_cannot_end_someone_elses_sessions(make_operator: Any) -> None:
    operator = make_operator("users.view_vpnuser")
    User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    staffer = _logged_in("staffer")
    client = Client()
    client.force_login(operator)
    target = User.objects.get(username="staffer")
    assert client.post(f"/staff/{target.pk}/logout-everywhere/").status_code == 403
    assert staffer.get("/account/sessions/").status_code == 200
    assert not AuditEntry.objects.filter(action="sessions_end").exists()


def test_disabling_a_staff_user_ends_their_sessions(owner: User) -> None:
    User.objects.create_user("staffer", password=PASSWORD, is_staff=True)
    staffer = _logged_in("staffer")
    key = staffer.session.session_key
    target = User.objects.get(username="staffer")
    target.is_active = False
    target.save()
    assert not Session.objects.filter(session_key=key).exists()
    assert staffer.get("/account/sessions/").status_code == 302


def test_the_metrics_token_is_read_from_its_file_and_rotates_without_a_restart(tmp_path: Path) -> None:
    token_file = tmp_path / "metrics-token"
    token_file.write_text("first-token-0123456789\n")
    with override_settings(METRICS_TOKEN_FILE=str(token_file), METRICS_TOKEN=""):
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer first-token-0123456789").status_code == 200
        token_file.write_text("second-token-9876543210\n")
        # A rewrite within the same clock tick must still be seen: size or time changes.
        os.utime(token_file, ns=(time.time_ns(), time.time_ns() + 1_000_000))
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer first-token-0123456789").status_code == 401
        assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer second-token-9876543210").status_code == 200


def test_a_login_drops_the_users_rows_of_sessions_that_ended_without_a_logout(owner: User) -> None:
    first = _logged_in("owner")
    Session.objects.filter(session_key=first.session.session_key).delete()  # expired and cleared
    _logged_in("owner")
    assert UserSession.objects.filter(user=owner).count() == 1
