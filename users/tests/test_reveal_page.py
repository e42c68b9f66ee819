"""Revealing a user's credentials: one POST answers the whole page with them, audited once."""

from __future__ import annotations

import pytest
from django.test import Client

from users.models import VpnUser
from users.tests.factories import make_users
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db


def test_the_reveal_form_answers_the_whole_user_page_with_the_credentials(owner_client: Client) -> None:
    (pk,) = make_users(1, protocol="wireguard")
    private_key = VpnUser.objects.get(pk=pk).wg_private_key
    page = owner_client.get(f"/users/{pk}/").content.decode()
    assert private_key not in page and f'action="/users/{pk}/credentials/"' in page
    response = owner_client.post(f"/users/{pk}/credentials/")
    text = response.content.decode()
    assert response.status_code == 200 and "<html" in text
    assert private_key in text and "Reveal credentials" not in text
    assert 'name="note"' in text  # the rest of the page, edit form included
    assert "no-store" in response["Cache-Control"] or "no-cache" in response["Cache-Control"]
    assert AuditEntry.objects.filter(action="users_reveal_credentials", object_ids=[pk]).count() == 1


def test_an_htmx_reveal_swaps_in_only_the_credentials(owner_client: Client) -> None:
    (pk,) = make_users(1, protocol="shadowsocks")
    password = VpnUser.objects.get(pk=pk).credential_password
    text = owner_client.post(f"/users/{pk}/credentials/", headers={"HX-Request": "true"}).content.decode()
    assert password in text and "<html" not in text


def test_a_reveal_never_binds_the_edit_form_nor_changes_the_user(owner_client: Client) -> None:
    (pk,) = make_users(1)
    before = VpnUser.objects.values().get(pk=pk)
    response = owner_client.post(f"/users/{pk}/credentials/", {"note": "sneaky", "protocol": "wireguard"})
    assert response.status_code == 200 and "errorlist" not in response.content.decode()
    assert VpnUser.objects.values().get(pk=pk) == before
