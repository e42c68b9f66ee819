"""/perf/cache/ and its actions, through the real client, and the warmcache command."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import StringIO
from typing import cast

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache as default_cache
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from perf.cache import RedisTaggedCache
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

WARM_CALLS: list[str] = []

# Every page of the Performance section needs this first (vpnadmin/access.py); login is audited.
PERF_SECTION = "vpnadmin.view_performance"

# The default cache is always the tagged backend: typed as such for the checker.
cache = cast("RedisTaggedCache", default_cache)


def warm_two(progress: Callable[[str], None]) -> int:
    """A warmer for these tests: stores two entries and reports progress."""
    cache.set("warm:a", 1, tags=["stats"])
    cache.set("warm:b", 2, tags=["stats"])
    progress("test warmer: two entries")
    WARM_CALLS.append("warm_two")
    return 2


def warm_broken(progress: Callable[[str], None]) -> int:
    raise RuntimeError("the database is not ready")


THIS = "perf.tests.test_cache_page"


@pytest.fixture(autouse=True)
def _clean_cache() -> Iterator[None]:
    cache.clear()
    WARM_CALLS.clear()
    yield
    cache.clear()


@pytest.fixture
def cache_manager_client(make_operator: Callable[..., User]) -> Client:
    client = Client()
    client.force_login(make_operator(PERF_SECTION, "vpnadmin.manage_cache", username="cache-operator"))
    return client


@pytest.fixture
def reader_client(make_operator: Callable[..., User]) -> Client:
    """Staff without the cache permission: may look, may not act."""
    client = Client()
    client.force_login(make_operator(PERF_SECTION, username="cache-reader"))
    return client


# --- the page -------------------------------------------------------------------------


def test_the_cache_page_shows_live_figures(owner_client: Client) -> None:
    cache.set("users:list:1", "rows", tags=["users"])
    cache.get("users:list:1")
    cache.get("users:list:2")
    cache.get_or_set("users:stats", lambda: {"total": 3}, 60, tags=["stats"])
    response = owner_client.get("/perf/cache/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-cache-state="up"' in body
    assert 'data-figure="hit-ratio"' in body
    assert 'data-prefix="users"' in body
    assert 'data-tag="stats"' in body
    assert 'data-figure="policy"' in body
    # Refreshed every 5 s while the tab is visible (static/js/app.js drives data-poll).
    assert 'hx-trigger="poll, refresh-now" data-poll="5"' in body


def test_an_htmx_poll_gets_only_the_panel(owner_client: Client) -> None:
    response = owner_client.get("/perf/cache/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-cache-state="up"' in body
    assert "<html" not in body
    assert "HX-Request" in response.headers["Vary"]


def test_it_warns_when_keys_can_never_be_evicted(owner_client: Client) -> None:
    # The shared Redis runs without maxmemory: nothing is ever evicted.
    body = owner_client.get("/perf/cache/").content.decode()
    assert 'data-warning="eviction"' in body


def test_anonymous_visitors_are_sent_to_login() -> None:
    response = Client().get("/perf/cache/")
    assert response.status_code == 302
    assert "/login/" in response["Location"]


def test_staff_without_the_permission_see_figures_but_no_actions(reader_client: Client) -> None:
    body = reader_client.get("/perf/cache/").content.decode()
    assert "Cache actions" not in body
    for url in ("/perf/cache/invalidate-tag/", "/perf/cache/invalidate-pattern/", "/perf/cache/warm/"):
        assert reader_client.post(url, {"tag": "users", "pattern": "users:*"}).status_code == 403


def test_a_logged_in_stranger_may_not_act(stranger_client: Client) -> None:
    assert stranger_client.post("/perf/cache/invalidate-tag/", {"tag": "users"}).status_code == 403


def test_actions_need_a_csrf_token(csrf_client: Client) -> None:
    assert csrf_client.post("/perf/cache/invalidate-tag/", {"tag": "users"}).status_code == 403


# --- invalidate a tag -----------------------------------------------------------------


def test_an_operator_with_the_permission_invalidates_a_tag(cache_manager_client: Client) -> None:
    cache.set("users:list:1", "rows", tags=["users"])
    response = cache_manager_client.post("/perf/cache/invalidate-tag/", {"tag": "users"}, follow=True)
    assert response.status_code == 200
    assert "Invalidated tag “users”" in response.content.decode()
    assert cache.get("users:list:1") is None
    entry = AuditEntry.objects.get(action="cache_invalidate_tag")
    assert entry.detail == {"tag": "users"}
    assert entry.actor_name == "cache-operator"


def test_it_rejects_a_bad_tag_with_a_clear_message(cache_manager_client: Client) -> None:
    response = cache_manager_client.post("/perf/cache/invalidate-tag/", {"tag": "two words"})
    assert response.status_code == 400
    assert "invalid cache tag" in response.content.decode()
    response = cache_manager_client.post("/perf/cache/invalidate-tag/", {"tag": ""})
    assert response.status_code == 400
    assert not AuditEntry.objects.exclude(action="auth_login").exists()


# --- invalidate a pattern -------------------------------------------------------------


def test_pattern_invalidation_asks_for_confirmation_with_the_count(cache_manager_client: Client) -> None:
    cache.set_many({f"users:list:{i}": i for i in range(7)})
    cache.set("users:stats", 1)
    response = cache_manager_client.post("/perf/cache/invalidate-pattern/", {"pattern": "users:list:*"})
    assert response.status_code == 200
    body = response.content.decode()
    assert 'data-matching="7"' in body
    assert "Yes, delete 7 keys" in body
    assert cache.get("users:list:3") == 3  # nothing deleted yet

    response = cache_manager_client.post(
        "/perf/cache/invalidate-pattern/", {"pattern": "users:list:*", "confirm": "true"}, follow=True
    )
    assert "Deleted 7 keys matching “users:list:*”" in response.content.decode()
    assert cache.get("users:list:3") is None
    assert cache.get("users:stats") == 1
    assert AuditEntry.objects.get(action="cache_invalidate_pattern").count == 7


def test_it_rejects_a_bad_pattern_with_a_clear_message(cache_manager_client: Client) -> None:
    for pattern, message in (("", "required"), ("a b", "no spaces"), ("_cache:*", "own stamps")):
        response = cache_manager_client.post("/perf/cache/invalidate-pattern/", {"pattern": pattern})
        assert response.status_code == 400
        assert message in response.content.decode()


# --- warm -----------------------------------------------------------------------------


@override_settings(CACHE_WARMERS=[f"{THIS}.warm_two"])
def test_the_warm_button_runs_the_warmers_and_says_how_many_entries(cache_manager_client: Client) -> None:
    response = cache_manager_client.post("/perf/cache/warm/", follow=True)
    assert "Warmed 2 cache entries from 1 warmer(s)." in response.content.decode()
    assert cache.get("warm:a") == 1
    assert AuditEntry.objects.get(action="cache_warm").count == 2


@override_settings(CACHE_WARMERS=[f"{THIS}.warm_two"])
def test_warmcache_preloads_with_progress() -> None:
    out = StringIO()
    call_command("warmcache", stdout=out)
    text = out.getvalue()
    assert "test warmer: two entries" in text
    assert "Warmed 2 cache entries" in text
    assert cache.get("warm:b") == 2


@override_settings(CACHE_WARMERS=["users.no_such_module.warm", f"{THIS}.warm_broken", f"{THIS}.warm_two"])
def test_warmcache_reports_a_warmer_it_cannot_import_or_run_and_runs_the_rest() -> None:
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("warmcache", stdout=out)
    message = str(failure.value)
    assert "cannot import users.no_such_module.warm" in message
    assert "RuntimeError: the database is not ready" in message
    assert "Warmed 2 cache entries" in message
    assert WARM_CALLS == ["warm_two"]


def test_warmcache_runs_the_configured_users_warmer() -> None:
    out = StringIO()
    call_command("warmcache", stdout=out)
    text = out.getvalue()
    assert "users.selectors.warm_hot_reads: warming" in text
    assert "Warmed" in text
