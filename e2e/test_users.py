"""A real Chromium searches the users list, selects all matching and runs bulk actions."""

from __future__ import annotations

from typing import Any

import pytest

from users.models import VpnUser
from users.tests.factories import make_users

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_an_operator_searches_selects_all_matching_and_disables_them(logged_in_page: Any) -> None:
    make_users(60, prefix="shop")  # more than one page: "all matching" must reach past page 1
    make_users(5, prefix="other")
    page = logged_in_page
    page.goto("/users/")
    page.fill("#id_q", "shop")
    # Search as you type: the results region is swapped without a page load.
    # A selector, not wait_for_function: the page's CSP forbids evaluating strings.
    page.wait_for_selector("#result-count[data-count='60']")
    assert page.locator("tr[data-user^=other]").count() == 0
    assert "q=shop" in page.url
    page.check("#select-all-matching")
    page.select_option("#bulk-action", "disable")
    with page.expect_navigation():
        page.click("#bulk-apply")
    page.wait_for_selector(".messages")
    assert "Disabled 60 users." in page.locator(".messages").inner_text()
    assert VpnUser.objects.filter(is_active=False).count() == 60
    assert not VpnUser.objects.filter(username__startswith="other", is_active=False).exists()
    # The list came back with the search still applied and the new status shown.
    assert page.locator("tr[data-user=shop0059] .badge").inner_text() == "disabled"
    # A filter control narrows the list at once, keeping the search.
    page.fill("#id_q", "")
    page.select_option("select[name=status]", "disabled")
    page.wait_for_url("**status=disabled**")
    page.wait_for_selector("#result-count[data-count='60']")
    assert page.locator("tr[data-user^=other]").count() == 0


def test_an_operator_deletes_two_selected_rows_after_confirming(logged_in_page: Any) -> None:
    make_users(4, prefix="gone")
    page = logged_in_page
    page.goto("/users/?q=gone")
    page.check("tr[data-user=gone0001] .row-select")
    page.check("tr[data-user=gone0002] .row-select")
    assert page.locator("#selected-count").inner_text() == "2 selected on this page"
    page.select_option("#bulk-action", "delete")
    # Choosing the action must not re-run the search (that would clear the ticked rows).
    page.wait_for_timeout(500)
    assert page.locator("tr[data-user=gone0001] .row-select").is_checked()
    with page.expect_navigation():
        page.click("#bulk-apply")
    page.wait_for_selector("#bulk-confirm")
    assert "Delete 2 VPN users?" in page.locator("h1").inner_text()
    with page.expect_navigation():
        page.click("#bulk-confirm")
    page.wait_for_selector(".messages")
    assert "Deleted 2 users." in page.locator(".messages").inner_text()
    assert sorted(VpnUser.objects.values_list("username", flat=True)) == ["gone0000", "gone0003"]


def test_an_operator_moves_all_matching_users_to_a_server_with_the_bulk_edit(logged_in_page: Any) -> None:
    from users.tests.servers import make_server

    server = make_server("edge-e2e", "vless")
    make_users(55, prefix="move")
    make_users(3, prefix="stay", protocol="wireguard")
    page = logged_in_page
    page.goto("/users/?protocol=vless")
    page.wait_for_selector("#result-count[data-count='55']")
    page.check("#select-all-matching")
    page.select_option("#bulk-action", "edit")
    with page.expect_navigation():
        page.click("#bulk-apply")
    assert "Edit 55 users" in page.locator("h1").inner_text()
    page.select_option("#id_edit-server", str(server.pk))
    page.fill("#id_edit-add_days", "30")
    with page.expect_navigation():
        page.click("#bulk-confirm")
    page.wait_for_selector(".messages")
    assert "Edited 55 users: server edge-e2e, expiry +30 days." in page.locator(".messages").inner_text()
    assert VpnUser.objects.filter(server=server).count() == 55
    assert not VpnUser.objects.filter(protocol="wireguard", server__isnull=False).exists()
