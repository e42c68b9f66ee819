from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db


def _password_from(output: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in output.splitlines() if "password:" in line)


def test_the_first_administrator_gets_a_random_password_that_logs_in() -> None:
    out = StringIO()
    call_command("createadmin", stdout=out)
    password = _password_from(out.getvalue())
    assert len(password) >= 20
    response = Client().post("/login/", {"username": "admin", "password": password})
    assert response.status_code == 302 and response["Location"] == "/"


def test_two_runs_never_share_a_password() -> None:
    first = StringIO()
    call_command("createadmin", stdout=first)
    User.objects.all().delete()
    second = StringIO()
    call_command("createadmin", stdout=second)
    assert _password_from(first.getvalue()) != _password_from(second.getvalue())


def test_it_does_nothing_when_an_administrator_exists(owner: User) -> None:
    out = StringIO()
    call_command("createadmin", stdout=out)
    assert "already exists" in out.getvalue()
    assert "password" not in out.getvalue()
    assert User.objects.filter(is_superuser=True).count() == 1


def test_creating_the_first_administrator_is_audited_without_the_password() -> None:
    from vpnadmin.models import AuditEntry

    out = StringIO()
    call_command("createadmin", stdout=out)
    entry = AuditEntry.objects.get(action="admins_create_first")
    assert entry.detail["username"] == "admin"
    assert _password_from(out.getvalue()) not in str(entry.detail)
