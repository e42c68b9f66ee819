"""A real Chromium logs in and reads the dashboard served by gunicorn."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_an_operator_logs_in_and_sees_every_component_state(page: Any, owner: Any, queue_worker: Any) -> None:
    page.goto("/")
    assert "/login/" in page.url
    page.fill("#id_username", owner.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-component=database]")
    assert page.locator("[data-component=database] .badge").inner_text() == "up"
    assert page.locator("[data-component=cache] .badge").inner_text() == "up"
    assert page.locator("[data-component='docker:local'] .badge").inner_text() == "up"
    assert page.locator("[data-component=worker] .badge").inner_text() == "up"
    assert page.locator("[data-overall]").get_attribute("data-overall") == "ok"


def test_a_wrong_password_shows_an_error_in_the_browser(page: Any, owner: Any) -> None:
    page.goto("/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", "not the password")
    page.click("button[type=submit]")
    assert "correct username and password" in page.locator("[role=alert]").inner_text()
