"""VPN users at a million rows: batch writes against raw PostgreSQL, pages against 1,000 users.

Writes run in vpnadmin_bench beside its 1,000,000 seeded users (so every index is
full size); each round's rows are removed afterwards, outside the timing.
Pages: two gunicorn servers (1 worker, 4 threads) with the users cache off
(USERS_CACHE_READS=0), so every request reaches PostgreSQL; one serves
vpnadmin_bench (1,000,000 users), the other vpnadmin_bench_small (1,000 users).
Figures are medians of HTTP round trips on loopback, interleaved.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

from bench.harness import REPO, Row, gunicorn, http_get, interleaved_medians, login_session_cookie
from bench.users import at_rest, indexes
from bench.users.seed import BIG, PROTOCOLS, ensure_small_database, ensure_users

N = 10_000
SAVE_SAMPLE = 1_000
REQUESTS_PER_ROUND = 10


def _rows(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "username": f"bench-{tag}-{i:05d}",
            "email": f"bench-{tag}-{i:05d}@mail.example.org",
            "protocol": PROTOCOLS[i % 3],
            "data_limit": 50 * 10**9,
            "note": f"plan bench ticket b{i}",
        }
        for i in range(N)
    ]


def _remove(prefix: str) -> None:
    """Outside the timing: the product's delete, which also removes what references the users."""
    from users.models import VpnUser
    from users.services import users_delete

    users_delete(actor=None, users=VpnUser.objects.filter(username__startswith=prefix))


def _raw_copy(rows: list[dict[str, Any]]) -> None:
    """The baseline: psycopg COPY of the same rows, credentials computed beforehand."""
    from django.db import connection, transaction

    from users.credentials import generate_credentials

    now = datetime.datetime.now(datetime.UTC)
    prepared = [
        (r["username"], r["email"], r["protocol"], r["data_limit"], r["note"], *generate_credentials(r["protocol"]))
        for r in rows
    ]
    columns = (
        "username, email, protocol, data_limit, note, credential_uuid, credential_password, wg_private_key, "
        "wg_public_key, is_active, used_traffic, reset_strategy, created_at, updated_at"
    )

    def copy() -> None:
        with (
            transaction.atomic(),
            connection.cursor() as cursor,
            cursor.connection.cursor() as raw,
            raw.copy(f"COPY users_vpnuser ({columns}) FROM STDIN") as out,
        ):
            for row in prepared:
                out.write_row((*row, True, 0, "none", now, now))

    copy()


def _bench_create() -> list[Row]:
    from users.credentials import sealed_credentials
    from users.models import VpnUser
    from users.services import users_create_batch
    from users.tasks import clean_search_indexes

    clean_search_indexes()  # nothing left over from earlier writes in the first round
    counter = iter(range(10_000))

    merges: list[float] = []

    def ours() -> None:
        tag = f"s{next(counter)}"
        result = users_create_batch(actor=None, rows=_rows(tag))
        assert result.written == N, result.errors[:3]
        # What the service queued after its commit (users.clean_search_indexes), timed apart:
        # the save() loop below merges its GIN pending lists as it goes.
        started = time.perf_counter()
        clean_search_indexes()
        merges.append(time.perf_counter() - started)

    def raw() -> None:
        _raw_copy(_rows(f"r{next(counter)}"))

    def save_loop() -> None:
        from users.credentials import generate_credentials

        for row in _rows(f"p{next(counter)}")[:SAVE_SAMPLE]:
            VpnUser(**row, **generate_credentials(row["protocol"])._asdict()).save()

    times: dict[str, list[float]] = {"ours": [], "raw": [], "save": []}

    for _ in range(3):
        for name, fn in (("ours", ours), ("raw", raw), ("save", save_loop)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            _remove("bench-")

    # `ours` includes its merge: subtract it for the request's own time.
    merge_s = statistics.median(merges)
    with_merge_s = statistics.median(times["ours"])
    ours_s, raw_s = with_merge_s - merge_s, statistics.median(times["raw"])
    save_s = statistics.median(times["save"]) * (N / SAVE_SAMPLE)
    protocols = [row["protocol"] for row in _rows("x")]
    started = time.perf_counter()
    for protocol in protocols:
        sealed_credentials(protocol)
    sealing_s = time.perf_counter() - started
    return [
        Row.compare(
            "create 10,000 users with credentials (service, COPY)",
            ours_s,
            "raw psycopg COPY of the same rows, credentials made beforehand",
            raw_s,
            "<= 3",
        ),
        Row.compare(
            "create 10,000 users (service) vs save() loop (1,000 rows x10)",
            ours_s,
            "per-row Model.save() on a 1,000-row sample, scaled to 10,000",
            save_s,
            "<= 0.05",
        ),
        Row.compare(
            "create 10,000 users + the GIN merge it queues (service + task)",
            with_merge_s,
            "per-row Model.save() on a 1,000-row sample, scaled to 10,000",
            save_s,
            "<= 0.05",
        ),
        Row.compare(
            "share of the create: credentials generated + encrypted (10,000)",
            sealing_s,
            "the service's whole create of 10,000 users (above)",
            ours_s,
            "<= 0.6",
        ),
    ]


def _bench_update() -> list[Row]:
    from django.db import connection, transaction

    from users.models import VpnUser
    from users.services import users_create_batch, users_update_batch

    users_create_batch(actor=None, rows=_rows("u"))
    ids = list(VpnUser.objects.filter(username__startswith="bench-u-").order_by("pk").values_list("pk", flat=True))
    round_no = iter(range(1, 10_000))

    def values() -> dict[int, dict[str, Any]]:
        n = next(round_no)
        return {pk: {"used_traffic": pk * n % 10**11, "note": f"synced {n} {pk}"} for pk in ids}

    def ours() -> None:
        result = users_update_batch(actor=None, changes=values())
        assert result.written == N

    def raw() -> None:
        changes = values()
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE bench_changes (id bigint, used_traffic bigint, note text) ON COMMIT DROP")
            with cursor.connection.cursor() as rc, rc.copy("COPY bench_changes FROM STDIN") as copy:
                for pk, v in changes.items():
                    copy.write_row((pk, v["used_traffic"], v["note"]))
            cursor.execute(
                "UPDATE users_vpnuser u SET used_traffic = c.used_traffic, note = c.note, updated_at = now() "
                "FROM bench_changes c WHERE u.id = c.id"
            )

    def django_bulk_update() -> None:
        changes = values()
        objects = [VpnUser(pk=pk, **v, updated_at=datetime.datetime.now(datetime.UTC)) for pk, v in changes.items()]
        VpnUser.objects.bulk_update(objects, ["used_traffic", "note", "updated_at"], batch_size=1000)

    # All three alternate, so the table's bloat and the machine's load hit them alike.
    medians = interleaved_medians({"ours": ours, "raw": raw, "bulk": django_bulk_update}, rounds=3)
    _remove("bench-")
    return [
        Row.compare(
            "update 10,000 users, own values each (service)",
            medians["ours"],
            "raw COPY into a temp table + one UPDATE ... FROM",
            medians["raw"],
            "<= 2",
        ),
        Row.compare(
            "update 10,000 users (service) vs Django bulk_update",
            medians["ours"],
            "Django bulk_update (CASE WHEN), same 10,000 rows",
            medians["bulk"],
            "<= 0.1",
        ),
    ]


def _bench_bulk_edit() -> list[Row]:
    """The bulk edit over "all matching" (10,000 of 1M): both requests of it against the bare UPDATE.

    Ours: the confirmation page's count and stamp, then users_bulk_edit (the stamp again,
    one UPDATE, the audit entry, the cache tags). Raw: one UPDATE of the same rows
    setting the same values. The users are on no server: a server move would queue
    applies that a worker of another suite sharing this database could pick up.
    """
    from django.db import connection, transaction

    from users.models import VpnUser
    from users.selectors import selection_stamp
    from users.services import BulkEdit, users_bulk_edit, users_create_batch

    users_create_batch(actor=None, rows=_rows("e"))
    selection = VpnUser.objects.filter(username__startswith="bench-e-")
    round_no = iter(range(1, 10_000))

    def ours() -> None:
        n = next(round_no)
        stamp = selection_stamp(selection)  # the confirmation page
        edit = BulkEdit(values={"data_limit": n * 10**9, "note": f"round {n}"}, add_days=1)
        assert users_bulk_edit(actor=None, users=selection, edit=edit, selection="bench", stamp=stamp) == N

    def raw() -> None:
        n = next(round_no)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "UPDATE users_vpnuser SET data_limit = %s, note = %s, "
                "expire_at = CASE WHEN expire_at IS NOT NULL THEN GREATEST(expire_at, now()) + interval '1 day' "
                "ELSE expire_at END, "
                "on_hold_days = CASE WHEN expire_at IS NULL AND on_hold_days IS NOT NULL "
                "THEN LEAST(on_hold_days + 1, 3650) ELSE on_hold_days END, "
                "updated_at = now() WHERE username LIKE 'bench-e-%%'",
                [n * 10**9, f"round {n}"],
            )

    medians = interleaved_medians({"ours": ours, "raw": raw}, rounds=5)
    _remove("bench-")
    return [
        Row.compare(
            "bulk edit all matching: 10,000 of 1M users, limit + note + 1 day (confirm + submit)",
            medians["ours"],
            "one bare UPDATE of the same rows with the same values",
            medians["raw"],
            "<= 3",
        )
    ]


def _small_cookie(database_url: str) -> dict[str, str]:
    code = (
        "import django, json; django.setup(); from bench.harness import login_session_cookie; "
        "print(json.dumps(login_session_cookie()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "DATABASE_URL": database_url},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _cursor_at(database_url: str, offset: int) -> str:
    from users.selectors import encode_cursor

    with psycopg.connect(database_url.replace("postgres://", "postgresql://")) as conn:
        row = conn.execute("SELECT id FROM users_vpnuser ORDER BY id DESC OFFSET %s LIMIT 1", [offset]).fetchone()
    if row is None:
        raise RuntimeError(f"the bench table has fewer than {offset + 1:,} users")
    return encode_cursor([row[0]])


def _bench_pages() -> list[Row]:
    big_url = os.environ["DATABASE_URL"]
    small_url = ensure_small_database()
    big_cookie = login_session_cookie()
    small_cookie = _small_cookie(small_url)
    env_common = {"USERS_CACHE_READS": "0"}
    deep_big = _cursor_at(big_url, 10_000 * 50 - 1)
    deep_small = _cursor_at(small_url, 10 * 50 - 1)
    pages: dict[str, tuple[str, str, str]] = {
        # name: (path for 1M, path for 1k, row title). Search terms match a full page of
        # 50 rows at both sizes, so both pages render the same amount.
        "first": ("/users/", "/users/", "list page, first page"),
        "deep": (
            f"/users/?after={deep_big}",
            f"/users/?after={deep_small}",
            "list page 10,000 deep (keyset; 10 deep at 1k)",
        ),
        "substring": ("/users/?q=l12", "/users/?q=l12", "search, 3-character substring 'l12' (5% match)"),
        # Not a full page at 1k: '042' matches 11 of 1,000 sequential names there (ranked, 11
        # rows rendered) against 50 rows at 1M, so this ratio also carries ~40 rows of rendering.
        "clustered": ("/users/?q=042", "/users/?q=042", "search, substring '042', matches clustered by id"),
        "fulltext": ("/users/?q=plus", "/users/?q=plus", "search, full-text word 'plus' (20% match)"),
        "fulltext_rare": ("/users/?q=t17", "/users/?q=t17", "search, full-text rare 't17' (20 matches, ranked)"),
        "rare_sorted": (
            "/users/?q=t17&ordering=username",
            "/users/?q=t17&ordering=username",
            "search, rare 't17' ordered by username (no index walk)",
        ),
        "filtered": ("/users/?status=disabled", "/users/?status=disabled", "list filtered by status disabled"),
        "limited": ("/users/?status=limited", "/users/?status=limited", "list filtered by status limited (over quota)"),
        "admin": ("/admin/users/vpnuser/", "/admin/users/vpnuser/", "admin changelist, first page"),
        "admin_search": (
            "/admin/users/vpnuser/?q=l12",
            "/admin/users/vpnuser/?q=l12",
            "admin changelist, search 'l12'",
        ),
        "admin_rare": (
            "/admin/users/vpnuser/?q=t17",
            "/admin/users/vpnuser/?q=t17",
            "admin changelist, search rare 't17' (20 matches)",
        ),
        "admin_deep": (
            "/admin/users/vpnuser/?p=10000",
            "/admin/users/vpnuser/?p=15",
            "admin changelist, page 10,000 (15 at 1k)",
        ),
    }
    with (
        gunicorn(env={**env_common, "DATABASE_URL": big_url}) as big,
        gunicorn(env={**env_common, "DATABASE_URL": small_url, "CACHE_KEY_PREFIX": "vpnadmin-bench-small"}) as small,
    ):

        def batch(url: str, cookie: dict[str, str]) -> Callable[[], None]:
            def run() -> None:
                for _ in range(REQUESTS_PER_ROUND):
                    http_get(url, cookies=cookie)

            return run

        fns: dict[str, Callable[[], None]] = {}
        for name, (big_path, small_path, _) in pages.items():
            fns[f"{name}:big"] = batch(big.url + big_path, big_cookie)
            fns[f"{name}:small"] = batch(small.url + small_path, small_cookie)
        medians = interleaved_medians(fns, rounds=7)
    rows = []
    for name, (_, _, title) in pages.items():
        target = "<= 3" if name.startswith("admin") else "<= 2"
        rows.append(
            Row.compare(
                f"{title} at 1M users",
                medians[f"{name}:big"] / REQUESTS_PER_ROUND,
                f"same page with 1,000 users ({title})",
                medians[f"{name}:small"] / REQUESTS_PER_ROUND,
                target,
            )
        )
    return rows


# The suite's parts, in the order a full run measures them. `USERS_BENCH_PARTS=create,indexes`
# runs only those (the whole suite takes a long while on a loaded machine).
PARTS: dict[str, Callable[[], list[Row]]] = {
    "pages": lambda: _bench_pages(),
    "create": lambda: _bench_create(),
    "indexes": lambda: indexes.run(),
    "update": lambda: _bench_update(),
    "bulk_edit": lambda: _bench_bulk_edit(),
    # Secrets at rest (bench/users/at_rest.py): encrypted creates vs raw COPY, and the reveal.
    "at_rest": lambda: at_rest.bench_create(),
    "reveal": lambda: at_rest.bench_reveal(),
}


def selected_parts(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()] or list(PARTS)
    unknown = sorted(set(names) - set(PARTS))
    if unknown:
        raise SystemExit(f"USERS_BENCH_PARTS: unknown part(s) {', '.join(unknown)}; known: {', '.join(PARTS)}")
    return names


def run() -> list[Row]:
    parts = selected_parts(os.environ.get("USERS_BENCH_PARTS", ""))
    ensure_users(BIG)
    _remove("bench-")
    rows: list[Row] = []
    for name in parts:
        rows += PARTS[name]()
    return rows
