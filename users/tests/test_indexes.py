"""Every index of users_vpnuser serves a query the product makes, and no other index exists.

Each index costs every create (bench/users/indexes.py measures it), so one that no query
uses is dropped. EXPLAIN runs with sequential scans forbidden: a tiny test table is
always cheaper to scan, and what must hold at a million rows is that the index CAN answer.
The filters and searches are in test_selectors.test_an_index_serves_each_filter_and_search.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet

from containers.models import VpnServer
from users.credentials import uuid_index_candidates
from users.models import VpnUser
from users.selectors import UserFilter, filtered_users
from users.tests.factories import make_users

pytestmark = pytest.mark.django_db

# Index name -> why it exists (a query below, test_selectors, or a uniqueness rule).
EXPECTED = {
    "users_vpnuser_pkey": "rows by id, the newest-first walk of every list (also a protocol filter)",
    "users_vpnuser_username_key": "unique usernames; a short search matches a username exactly",
    "users_vpnuser_credential_uuid_index_ecfe7d14_uniq": "unique UUIDs, found by their blind index",
    "users_vpnuser_server_id_1c2e0d26": "a server's users (its desired set, its page, server filter)",
    "vpnuser_created": "created-from/to filter",
    "vpnuser_expire": "expires filter, the expired status, expiry enforcement",
    "vpnuser_used_id": "traffic ranges and the traffic ordering",
    "vpnuser_disabled": "status disabled",
    "vpnuser_quota_used": "status limited",
    "vpnuser_on_hold": "status on hold",
    "vpnuser_username_trgm": "substring search and username patterns",
    "vpnuser_email_trgm": "substring search and e-mail patterns",
    "vpnuser_search_vector": "full-text search of username, e-mail and note",
    "vpnuser_wg_public_key_unique": "unique WireGuard public keys",
    "vpnuser_wg_address_per_server": "unique WireGuard address per server",
    "vpnuser_ss_port_per_server": "unique Shadowsocks port per server",
}


def _plan(qs: QuerySet[Any]) -> str:
    sql, params = qs.query.sql_with_params()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return json.dumps(plan if not isinstance(plan, str) else json.loads(plan))


def test_the_users_table_has_exactly_the_indexes_its_queries_need() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'users_vpnuser'::regclass")
        names = {row[0] for row in cursor.fetchall()}
    assert names == set(EXPECTED)


def _server_users() -> QuerySet[Any]:
    return VpnUser.objects.filter(server=VpnServer(pk=1)).values("pk")


def _by_uuid() -> QuerySet[Any]:
    return VpnUser.objects.filter(
        credential_uuid_index__in=uuid_index_candidates("0b7f1f4e-7a57-4f43-9a4b-6f2f1e7c9d10")
    ).values("pk")


def _newest_of_a_protocol() -> QuerySet[Any]:
    qs, _, _ = filtered_users(UserFilter(protocol="wireguard"))
    return qs.order_by("-id").values("pk")[:51]


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (_server_users, "users_vpnuser_server_id_1c2e0d26"),
        (_by_uuid, "users_vpnuser_credential_uuid_index_ecfe7d14_uniq"),
        (_newest_of_a_protocol, "users_vpnuser_pkey"),
        (lambda: VpnUser.objects.filter(username="user0001").values("pk"), "users_vpnuser_username_key"),
    ],
)
def test_an_index_serves_each_lookup_the_product_makes(query: Callable[[], QuerySet[Any]], index: str) -> None:
    make_users(20)
    assert f'"Index Name": "{index}"' in _plan(query())
