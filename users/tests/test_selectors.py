"""Reads: the effective status, search, filters, keyset pages, counts, statistics, indexes."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from django.db import connection, transaction
from django.utils import timezone

from users import selectors
from users.models import Status, VpnUser, status_expression, status_q
from users.selectors import SearchRefused, UserFilter, filtered_users, users_page, users_stats
from users.services import users_create_batch
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db


def _mixed_users() -> None:
    now = timezone.now()
    rows: list[dict[str, Any]] = [
        {"username": "plain", "protocol": "vless"},
        {"username": "switched-off", "protocol": "vless", "is_active": False},
        {
            "username": "off-and-expired",
            "protocol": "vless",
            "is_active": False,
            "expire_at": now - datetime.timedelta(days=1),
        },
        {"username": "over-quota", "protocol": "wireguard", "data_limit": 100, "used_traffic": 100},
        {"username": "expired", "protocol": "shadowsocks", "expire_at": now - datetime.timedelta(days=1)},
        {
            "username": "expired-over",
            "protocol": "vless",
            "expire_at": now - datetime.timedelta(days=1),
            "data_limit": 1,
            "used_traffic": 5,
        },
        {"username": "waiting", "protocol": "vless", "on_hold_days": 30},
        {"username": "waiting-over", "protocol": "vless", "on_hold_days": 30, "data_limit": 10, "used_traffic": 10},
        {
            "username": "running",
            "protocol": "vless",
            "expire_at": now + datetime.timedelta(days=3),
            "data_limit": 10,
            "used_traffic": 9,
        },
    ]
    assert users_create_batch(actor=None, rows=rows).ok


EXPECTED = {
    "plain": Status.ACTIVE,
    "switched-off": Status.DISABLED,
    "off-and-expired": Status.DISABLED,
    "over-quota": Status.LIMITED,
    "expired": Status.EXPIRED,
    "expired-over": Status.EXPIRED,
    "waiting": Status.ON_HOLD,
    "waiting-over": Status.LIMITED,
    "running": Status.ACTIVE,
}


def test_the_effective_status_is_computed_in_sql() -> None:
    _mixed_users()
    now = timezone.now()
    computed = dict(VpnUser.objects.annotate(status=status_expression(now)).values_list("username", "status"))
    assert computed == EXPECTED


@pytest.mark.parametrize("status", Status.values)
def test_each_status_filter_matches_the_computed_status(status: str) -> None:
    _mixed_users()
    now = timezone.now()
    filtered = set(VpnUser.objects.filter(status_q(status, now)).values_list("username", flat=True))
    assert filtered == {name for name, value in EXPECTED.items() if value == status}


def test_the_list_sorts_by_status() -> None:
    _mixed_users()
    page = users_page(UserFilter(), ordering="status")
    statuses = [row["status"] for row in page.rows]
    assert statuses == sorted(statuses)


def test_statistics_come_from_one_query(django_assert_num_queries: Any) -> None:
    _mixed_users()
    with django_assert_num_queries(1):
        stats = users_stats()
    assert stats["total"] == 9
    assert stats["status_limited"] == 2 and stats["status_on_hold"] == 1 and stats["status_disabled"] == 2
    assert stats["protocol_wireguard"] == 1
    assert stats["expiring_7d"] == 1
    assert stats["used_total"] == 124


def test_a_substring_of_three_characters_finds_usernames_and_emails() -> None:
    users_create_batch(
        actor=None,
        rows=[
            {"username": "alice", "protocol": "vless", "email": "a@zeta.example"},
            {"username": "bob", "protocol": "vless", "email": "bob@lic.example"},
            {"username": "carol", "protocol": "vless"},
        ],
    )
    qs, _, _ = filtered_users(UserFilter(q="LIC"))
    assert set(qs.values_list("username", flat=True)) == {"alice", "bob"}


def test_full_text_finds_words_in_the_note_and_ranks_better_matches_first() -> None:
    users_create_batch(
        actor=None,
        rows=[
            {"username": "weak", "protocol": "vless", "note": "customer from berlin"},
            {"username": "berlin-office", "protocol": "vless", "note": "office in berlin"},
            {"username": "other", "protocol": "vless", "note": "paris"},
        ],
    )
    page = users_page(UserFilter(q="berlin"))
    assert page.ordering == "relevance"
    assert [row["username"] for row in page.rows] == ["berlin-office", "weak"]


def test_a_short_search_matches_a_username_exactly_and_says_so() -> None:
    users_create_batch(
        actor=None, rows=[{"username": "abc", "protocol": "vless"}, {"username": "xab", "protocol": "vless"}]
    )
    page = users_page(UserFilter(q="ab"))
    assert page.rows == []
    assert "exactly" in page.notes[0]


@pytest.mark.parametrize(
    "text", ["%", "_", "\\", "'", '"', "%%%", "__x", "a\\_b", "'; DROP TABLE x; --", "🦄🦄🦄", "x" * 200]
)
def test_search_characters_are_matched_literally(text: str) -> None:
    make_users(5)
    users_create_batch(actor=None, rows=[{"username": "literal", "protocol": "vless", "note": f"has {text} inside"}])
    qs, _, _ = filtered_users(UserFilter(q=text))
    assert set(qs.values_list("username", flat=True)) <= {"literal"}


def test_a_wildcard_filter_matches_with_star_only() -> None:
    make_users(3, prefix="team-a-")
    make_users(3, prefix="team_b-")
    qs, _, _ = filtered_users(UserFilter(username="team-*"))
    assert qs.count() == 3
    qs, _, _ = filtered_users(UserFilter(username="team_b*"))
    assert qs.count() == 3
    qs, _, _ = filtered_users(UserFilter(username="team%"))
    assert qs.count() == 0


def test_a_wildcard_pattern_too_short_for_an_index_is_refused() -> None:
    with pytest.raises(SearchRefused, match="3 characters"):
        filtered_users(UserFilter(username="a*"))


def test_range_filters_select_created_expiry_and_traffic_ranges() -> None:
    now = timezone.now()
    users_create_batch(
        actor=None,
        rows=[
            {"username": "light", "protocol": "vless", "used_traffic": 10},
            {
                "username": "heavy",
                "protocol": "vless",
                "used_traffic": 10**10,
                "expire_at": now + datetime.timedelta(days=2),
            },
        ],
    )
    qs, _, _ = filtered_users(UserFilter(used_min=10**9))
    assert list(qs.values_list("username", flat=True)) == ["heavy"]
    today = timezone.localdate()
    qs, _, _ = filtered_users(UserFilter(expires_from=today, expires_to=today + datetime.timedelta(days=5)))
    assert list(qs.values_list("username", flat=True)) == ["heavy"]
    qs, _, _ = filtered_users(UserFilter(created_from=today, created_to=today))
    assert qs.count() == 2


@pytest.mark.parametrize("ordering", ["-id", "id", "username", "-username", "-used_traffic", "used_traffic"])
def test_keyset_pages_walk_every_row_once_forwards_and_backwards(
    ordering: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "PAGE_SIZE", 7)
    ids = make_users(30)
    users_create_batch(
        actor=None, rows=[{"username": f"same{i}", "protocol": "vless", "used_traffic": 5} for i in range(10)]
    )
    expected = list(VpnUser.objects.order_by(*selectors.ORDERINGS[ordering].fields).values_list("username", flat=True))
    seen: list[str] = []
    page = users_page(UserFilter(), ordering=ordering)
    pages = [page]
    seen += [row["username"] for row in page.rows]
    while page.has_next:
        page = users_page(UserFilter(), ordering=ordering, after=page.next_params["after"])
        pages.append(page)
        seen += [row["username"] for row in page.rows]
    assert seen == expected and len(ids) + 10 == len(seen)
    back: list[str] = [row["username"] for row in page.rows]
    while page.has_previous:
        page = users_page(UserFilter(), ordering=ordering, before=page.previous_params["before"])
        back = [row["username"] for row in page.rows] + back
    assert back == expected
    last = users_page(UserFilter(), ordering=ordering, last=True)
    assert [row["username"] for row in last.rows] == expected[-7:]


def test_a_forged_page_link_shows_the_first_page_with_a_note() -> None:
    make_users(3)
    for token in ["garbage", "W10", "WyJ4Il0", "!!!", "WzEsMiwzXQ"]:
        page = users_page(UserFilter(), after=token)
        assert len(page.rows) == 3
        assert "not valid" in page.notes[0]


def test_page_numbers_stop_where_offset_would_get_slow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "PAGE_SIZE", 2)
    monkeypatch.setattr(selectors, "MAX_OFFSET", 4)
    make_users(12)
    assert users_page(UserFilter(), page=3).page_number == 3
    deep = users_page(UserFilter(), page=5)
    assert deep.page_number == 1 and "Page numbers go up to" in deep.notes[0]


def test_a_big_table_is_estimated_not_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    make_users(40)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE users_vpnuser")
    monkeypatch.setattr(selectors, "ESTIMATE_THRESHOLD", 10)
    count = selectors.count_users(VpnUser.objects.all(), filtered=False)
    assert not count.exact and count.value > 0 and count.display.startswith("about")
    monkeypatch.setattr(selectors, "ESTIMATE_THRESHOLD", 10**9)
    assert selectors.count_users(VpnUser.objects.all(), filtered=False).value == 40


def test_a_filter_is_counted_exactly_up_to_the_cap_then_estimated(monkeypatch: pytest.MonkeyPatch) -> None:
    make_users(25)
    monkeypatch.setattr(selectors, "COUNT_CAP", 10)
    qs, _, _ = filtered_users(UserFilter(protocol="vless"))
    count = selectors.count_users(qs, filtered=True)
    assert not count.exact and count.value > 10
    qs, _, _ = filtered_users(UserFilter(username="user000*"))
    assert selectors.count_users(qs, filtered=True).value == 10


def test_warming_reads_every_hot_entry_and_reports_each() -> None:
    make_users(3)
    lines: list[str] = []
    assert selectors.warm_hot_reads(lines.append) == len(lines) > 3


def test_the_detail_read_leaves_the_credentials_unloaded() -> None:
    (pk,) = make_users(1)
    user = selectors.user_detail(pk)
    assert user is not None
    assert {"credential_uuid", "credential_password", "wg_private_key"} <= user.get_deferred_fields()


# --- the indexes serve the filters (PostgreSQL's planner, with sequential scans off) ---


def _plan(qs: Any, *, forbid: tuple[str, ...] = ("seqscan",)) -> str:
    sql, params = qs.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        # A tiny test table is always cheaper to scan; forbidding that shows whether an
        # index CAN answer the predicate, which is what must hold at a million rows.
        for method in forbid:
            cursor.execute(f"SET LOCAL enable_{method} = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return json.dumps(plan if not isinstance(plan, str) else json.loads(plan))


@pytest.mark.parametrize(
    ("flt", "index"),
    [
        (UserFilter(q="lic"), "vpnuser_username_trgm"),
        (UserFilter(q="lic"), "vpnuser_email_trgm"),
        (UserFilter(q="berlin"), "vpnuser_search_vector"),
        (UserFilter(q="ab"), "users_vpnuser_username"),
        (UserFilter(username="team*"), "vpnuser_username_trgm"),
        (UserFilter(email="*@mail.example"), "vpnuser_email_trgm"),
        (UserFilter(status="disabled"), "vpnuser_disabled"),
        (UserFilter(status="limited"), "vpnuser_quota_used"),
        (UserFilter(status="on_hold"), "vpnuser_on_hold"),
        (UserFilter(status="expired"), "vpnuser_expire"),
        (UserFilter(used_min=1000), "vpnuser_used_id"),
        (UserFilter(created_from=datetime.date(2026, 1, 1)), "vpnuser_created"),
    ],
)
def test_an_index_serves_each_filter_and_search(flt: UserFilter, index: str) -> None:
    make_users(20)
    qs, _, _ = filtered_users(flt)
    assert index in _plan(qs.order_by().values("pk"))


def test_a_deep_keyset_page_is_an_index_range_scan() -> None:
    make_users(20)
    values = [5, 3]
    condition = selectors._keyset_condition(selectors.ORDERINGS["-used_traffic"], values, after=True)
    qs = VpnUser.objects.filter(condition).order_by("-used_traffic", "-id").values("pk")[:50]
    plan = _plan(qs, forbid=("seqscan", "bitmapscan", "sort"))
    assert '"Scan Direction": "Backward"' in plan and '"Index Name": "vpnuser_used_id"' in plan
    assert '"Node Type": "Sort"' not in plan


@pytest.mark.parametrize("count_cap", [1_000, 2])
@pytest.mark.parametrize("ordering", ["-id", "username", "-used_traffic"])
def test_search_results_page_the_same_whether_sorted_after_filtering_or_walked(
    count_cap: int, ordering: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selectors, "PAGE_SIZE", 3)
    monkeypatch.setattr(selectors, "COUNT_CAP", count_cap)
    make_users(10, prefix="match")
    make_users(10, prefix="other")
    flt = UserFilter(q="match")
    expected = list(
        VpnUser.objects.filter(username__startswith="match")
        .order_by(*selectors.ORDERINGS[ordering].fields)
        .values_list("username", flat=True)
    )
    page = users_page(flt, ordering=ordering, page=None, after="")
    if ordering == "-id":
        page = users_page(flt, ordering=ordering, after=selectors.encode_cursor([10**9]))
    seen = [row["username"] for row in page.rows]
    while page.has_next:
        page = users_page(flt, ordering=ordering, after=page.next_params["after"])
        seen += [row["username"] for row in page.rows]
    assert seen == expected


def test_a_rare_search_term_is_sorted_after_the_indexes_found_it() -> None:
    from django.test.utils import CaptureQueriesContext

    make_users(5)
    with CaptureQueriesContext(connection) as queries:
        users_page(UserFilter(q="user0003"), ordering="-id", after=selectors.encode_cursor([10**9]))
    listing = [q["sql"] for q in queries.captured_queries if q["sql"].endswith("LIMIT 51")]
    assert listing and '("users_vpnuser"."id" + 0) DESC' in listing[0]
