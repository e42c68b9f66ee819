"""The policy in a real browser: the dashboard polls from static JavaScript, and nothing is refused."""

from __future__ import annotations

from typing import Any

import pytest

# gunicorn serves from its own connections: it sees committed rows only (the owner).
pytestmark = pytest.mark.django_db(transaction=True)


def test_the_dashboard_polls_in_a_real_browser_without_a_policy_violation(logged_in_page: Any) -> None:
    page = logged_in_page
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    with page.expect_request(lambda r: r.headers.get("hx-request") == "true", timeout=15_000) as polled:
        page.goto("/")
    assert polled.value.method == "GET"
    page.wait_for_selector("[data-overall]")
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []


def test_a_select_that_submits_on_change_works_without_an_inline_handler(logged_in_page: Any) -> None:
    page = logged_in_page
    page.goto("/users/")
    with page.expect_request(lambda r: "status=active" in r.url, timeout=15_000):
        page.select_option("select[name=status]", "active")
