"""The users list as one cached fragment: warm requests read no users, yet show every change at once."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from users.models import VpnUser
from users.services import users_update_batch
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db

VIEW = "users.view_vpnuser"


def _queries_on_users(client: Client, url: str, *, htmx: bool = False) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url, headers={"HX-Request": "true"} if htmx else {}).status_code == 200
    return [q["sql"] for q in queries.captured_queries if "users_vpnuser" in q["sql"]]


def test_a_warm_list_page_reads_no_user_rows(owner_client: Client) -> None:
    make_users(3)
    assert _queries_on_users(owner_client, "/users/?q=user")
    assert _queries_on_users(owner_client, "/users/?q=user") == []
    assert _queries_on_users(owner_client, "/users/?q=user", htmx=True) == []


def test_the_cached_list_shows_a_change_right_after_it(
    owner_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    (pk,) = make_users(1)
    assert "changed@example.org" not in owner_client.get("/users/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        users_update_batch(actor=None, changes={pk: {"email": "changed@example.org"}})
    assert "changed@example.org" in owner_client.get("/users/").content.decode()


def test_a_viewer_does_not_get_the_bulk_bar_an_owner_cached(owner_client: Client, make_operator: Any) -> None:
    make_users(2)
    assert 'id="bulk-apply"' in owner_client.get("/users/").content.decode()
    viewer = Client()
    viewer.force_login(make_operator(VIEW))
    assert 'id="bulk-apply"' not in viewer.get("/users/").content.decode()
    assert 'id="bulk-apply"' in owner_client.get("/users/").content.decode()


def test_the_bulk_form_posts_with_the_token_of_its_own_session(csrf_client: Client) -> None:
    ids = make_users(2)
    csrf_client.get("/users/")  # the fragment is cached by this first request
    page = csrf_client.get("/users/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)" form="bulk"', page)
    assert token is not None
    response = csrf_client.post(
        "/users/bulk/",
        {"csrfmiddlewaretoken": token.group(1), "action": "disable", "ids": ",".join(map(str, ids))},
    )
    assert response.status_code == 302
    assert VpnUser.objects.filter(is_active=False).count() == 2


def test_an_htmx_swap_gets_the_results_only_and_a_full_load_the_page(owner_client: Client) -> None:
    make_users(2)
    partial = owner_client.get("/users/", headers={"HX-Request": "true"}).content.decode()
    full = owner_client.get("/users/").content.decode()
    assert "<html" not in partial and 'id="bulk"' in partial and 'hx-swap-oob="true"' in partial
    assert "<html" in full and 'id="filters"' in full and 'hx-swap-oob="true"' not in full
