"""What each index of users_vpnuser costs a 10,000-row COPY, at a million rows.

Rows for the users suite (bench/users/suite.py adds them, part `indexes`):
- a raw COPY of 10,000 rows into the table with every index vs the same COPY with only
  the primary key (every other index dropped inside the transaction, then rolled back);
- the same with the GIN pending lists allowed to hold the whole batch
  (`gin_pending_list_limit`, what users_create_batch sets for large batches): the three GIN
  indexes then append to their pending lists instead of merging them mid-COPY;
- per index: the COPY with only the primary key and that index vs only the primary key.

The per-index costs do not add up to the all-index figure: with every index, their pages
no longer fit PostgreSQL's shared buffers together (128 MB here) and each COPY evicts and
rereads them. Each round is rolled back, so the table itself never changes.
The rows carry token-sized values in the encrypted columns (random, not encrypted: the
cost of the encryption itself is a row of bench/users/at_rest.py).
"""

from __future__ import annotations

import datetime
import secrets
import statistics
import time
from typing import Any

from bench.harness import Row
from users.services import LARGE_BATCH_GIN_PENDING_LIST

N = 10_000
ROUNDS = 3
PROTOCOLS = ("vless", "shadowsocks", "wireguard")
COLUMNS = (
    "username, email, protocol, data_limit, note, credential_uuid, credential_password, wg_private_key, "
    "wg_public_key, credential_uuid_index, is_active, used_traffic, reset_strategy, created_at, updated_at"
)


def _token() -> str:
    # The length of a Fernet token of a short secret; random, so indexes see distinct values.
    return "gAAAAA" + secrets.token_urlsafe(114)


def _rows(tag: str) -> list[tuple[Any, ...]]:
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for i in range(N):
        protocol = PROTOCOLS[i % 3]
        name = f"bidx-{tag}-{i:05d}"
        rows.append(
            (
                name,
                f"{name}@mail.example.org",
                protocol,
                50 * 10**9,
                f"plan bench ticket b{i}",
                _token() if protocol == "vless" else None,
                _token() if protocol == "shadowsocks" else "",
                _token() if protocol == "wireguard" else "",
                secrets.token_urlsafe(32)[:43] + "=" if protocol == "wireguard" else "",
                secrets.token_hex(32) if protocol == "vless" else None,
                True,
                0,
                "none",
                now,
                now,
            )
        )
    return rows


def table_indexes() -> list[tuple[str, str]]:
    """(index name, constraint name or "") of every index but the primary key."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, coalesce(c.conname, '') FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = i.oid "
            "WHERE x.indrelid = 'users_vpnuser'::regclass AND NOT x.indisprimary ORDER BY 1"
        )
        return [(str(name), str(constraint)) for name, constraint in cursor.fetchall()]


def _timed_copy(drop: list[tuple[str, str]], *, gin_pending_list: str = "") -> float:
    from django.db import connection

    rows = _rows(secrets.token_hex(3))
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            for index, constraint in drop:
                # Names come from pg_catalog, not from input.
                if constraint:
                    cursor.execute(f'ALTER TABLE users_vpnuser DROP CONSTRAINT "{constraint}"')
                else:
                    cursor.execute(f'DROP INDEX "{index}"')
            if gin_pending_list:
                cursor.execute("SELECT set_config('gin_pending_list_limit', %s, true)", [gin_pending_list])
            started = time.perf_counter()
            with cursor.connection.cursor() as raw, raw.copy(f"COPY users_vpnuser ({COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return time.perf_counter() - started
        finally:
            cursor.execute("ROLLBACK")


def run() -> list[Row]:
    from django.db import connection

    connection.ensure_connection()
    assert connection.get_autocommit(), "the index bench runs its own transactions"
    indexes = table_indexes()
    variants: dict[str, tuple[list[tuple[str, str]], str]] = {
        "all": ([], ""),
        "all-gin": ([], LARGE_BATCH_GIN_PENDING_LIST),
        "pkey": (indexes, ""),
    }
    for kept in indexes:
        variants[kept[0]] = ([other for other in indexes if other != kept], "")
    samples: dict[str, list[float]] = {name: [] for name in variants}
    _timed_copy([])  # warm-up, unmeasured
    for _ in range(ROUNDS):
        for name, (drop, gin) in variants.items():
            samples[name].append(_timed_copy(drop, gin_pending_list=gin))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    with connection.cursor() as cursor:
        # The rolled-back rows left dead entries at the newest end of every index: the page
        # rows of a later run would walk through them.
        cursor.execute("VACUUM ANALYZE users_vpnuser")
    rows = [
        Row.compare(
            f"raw COPY 10,000 rows into 1M users, all {len(indexes) + 1} indexes",
            medians["all"],
            "the same COPY with only the primary key (others dropped, rolled back)",
            medians["pkey"],
            "<= 4",
        ),
        Row.compare(
            f"raw COPY 10,000 rows, all indexes, GIN pending lists {LARGE_BATCH_GIN_PENDING_LIST}",
            medians["all-gin"],
            "the same COPY with only the primary key",
            medians["pkey"],
            "<= 3",
        ),
    ]
    for name, _ in indexes:
        rows.append(
            Row.compare(
                f"raw COPY 10,000 rows, primary key + {name}",
                medians[name],
                "the same COPY with only the primary key",
                medians["pkey"],
                "<= 2",
            )
        )
    return rows
