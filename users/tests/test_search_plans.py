"""Search plans that do not depend on where the matches sit (EXPLAIN through the real planner)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from users import selectors
from users.models import VpnUser
from users.selectors import UserFilter, bitmap_scans_only, users_page
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db


def _plan(sql: str) -> dict[str, Any]:
    with bitmap_scans_only(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = cursor.fetchone()[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


@pytest.fixture
def clustered_far(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[int]:
    """600 users matching 'far', then 300 newer ones that do not: the matches sit far from the newest."""
    settings.USERS_CACHE_READS = False  # every call below plans and reads
    monkeypatch.setattr(selectors, "SEARCH_WINDOWS", (100, 1_000, 100_000))
    monkeypatch.setattr(selectors, "COUNT_WALK", 100)
    far = make_users(600, prefix="far")
    make_users(300, prefix="near")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users_vpnuser")
    return far


def test_a_search_whose_matches_sit_far_from_the_newest_gets_the_newest_matches(clustered_far: list[int]) -> None:
    page = users_page(UserFilter(q="far"))
    expected = list(
        VpnUser.objects.filter(username__startswith="far").order_by("-id").values_list("id", flat=True)[:50]
    )
    assert [row["id"] for row in page.rows] == expected
    assert page.has_next and not page.count.exact


def test_the_next_page_of_such_a_search_continues_from_its_cursor(clustered_far: list[int]) -> None:
    first = users_page(UserFilter(q="far"))
    second = users_page(UserFilter(q="far"), after=first.next_params["after"])
    ids = sorted(clustered_far, reverse=True)
    assert [row["id"] for row in second.rows] == ids[50:100]


def test_its_count_and_its_page_read_the_search_indexes_bitmap_not_the_table(clustered_far: list[int]) -> None:
    with CaptureQueriesContext(connection) as queries:
        page = users_page(UserFilter(q="far"))
    assert page.count.recent == 0  # the count walked the newest COUNT_WALK ids first: no match there
    reads = [q["sql"] for q in queries.captured_queries if "LIKE" in q["sql"] and not q["sql"].startswith("EXPLAIN")]
    counts = [sql for sql in reads if sql.startswith("SELECT COUNT(*)")]
    assert len(counts) == 2
    count = counts[-1]
    assert '"users_vpnuser"."id" >' not in count  # every match, through the bitmap
    # The second window: the first (100 ids, a bounded walk) held no match.
    window = next(sql for sql in reads if '"users_vpnuser"."id" + 0' in sql or '("users_vpnuser"."id" + 0)' in sql)
    for sql in (count, window):
        kinds = {node["Node Type"] for node in _nodes(_plan(sql))}
        assert "Seq Scan" not in kinds and "Index Scan" not in kinds, kinds
    bitmaps = [node for node in _nodes(_plan(count)) if node["Node Type"] == "Bitmap Index Scan"]
    assert {"vpnuser_username_trgm", "vpnuser_email_trgm", "vpnuser_search_vector"} <= {
        node["Index Name"] for node in bitmaps
    }
    # The window reads through a bitmap bounded by its id range, or by the search indexes
    # (the planner picks by size; neither walks from the newest row until enough match).
    window_bitmaps = [node for node in _nodes(_plan(window)) if node["Node Type"] == "Bitmap Index Scan"]
    assert any(
        node["Index Name"] == "vpnuser_username_trgm"
        or (node["Index Name"] == "users_vpnuser_pkey" and "id >" in node.get("Index Cond", ""))
        for node in window_bitmaps
    ), window_bitmaps
    sort = next(node for node in _nodes(_plan(window)) if node["Node Type"] == "Sort")
    assert sort["Sort Key"] and "id" in sort["Sort Key"][0]
