"""A real Chromium on /perf/cache/: the live panel refreshes, a pattern is invalidated after
a confirmation that shows how many keys match, and the cache is warmed."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches

from perf.cache import tagged_cache

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_cache_panel_refreshes_with_live_figures(logged_in_page: Any) -> None:
    page = logged_in_page
    page.goto("/perf/cache/")
    assert page.locator("[data-cache-state]").get_attribute("data-cache-state") == "up"
    # Traffic from another process (this one) shows in the panel on its next refresh.
    cache = tagged_cache()
    cache.set("e2e-browse:1", "rows", 60, tags=["e2e-tag"])
    for _ in range(3):
        cache.get_or_set("e2e-browse:1", lambda: "never", 60, tags=["e2e-tag"])
    cache.metrics.flush()
    page.locator("#cache-panel").dispatch_event("refresh-now")
    page.wait_for_selector("[data-prefix='e2e-browse']")
    page.wait_for_selector("[data-tag='e2e-tag']")
    assert page.locator("[data-figure=hit-ratio]").inner_text().endswith("%")


def test_an_owner_invalidates_a_pattern_after_seeing_how_many_keys_match(logged_in_page: Any) -> None:
    page = logged_in_page
    cache = caches["default"]
    cache.set_many({f"e2e-list:{i}": i for i in range(12)}, 60)
    page.goto("/perf/cache/")
    page.fill("#id_pattern", "e2e-list:*")
    page.click("#invalidate-pattern button[type=submit]")
    page.wait_for_selector("[data-matching]")
    assert page.locator("[data-matching]").get_attribute("data-matching") == "12"
    assert cache.get("e2e-list:3") == 3
    page.click("text=Yes, delete 12 keys")
    page.wait_for_selector(".msg-success")
    assert "Deleted 12 keys" in page.locator(".msg-success").inner_text()
    assert cache.get("e2e-list:3") is None


def test_an_owner_warms_the_cache_from_the_page(logged_in_page: Any) -> None:
    page = logged_in_page
    page.goto("/perf/cache/")
    page.click("#warm button[type=submit]")
    page.wait_for_selector(".messages li")
    assert "Warmed" in page.locator(".messages li").first.inner_text()
