"""The cost of secrets at rest: creating users with encrypted credentials, and revealing them.

Rows for the users suite (bench/users/suite.py adds them):
- 10,000 users created through the service (credentials generated, encrypted, COPY) vs a
  raw psycopg COPY of the same rows with credentials made beforehand, unencrypted;
  and the encryption alone (sealing 10,000 users' credentials) vs generating them.
- A user's page with its credentials revealed (the reveal POST answering the whole page:
  one read, the decryption, the audit entry) vs the same page without the reveal (GET), on
  gunicorn; and the htmx path (the page, then the reveal swapping in the table).

Rows are prefixed `bsec-` and removed afterwards, so they never collide with other rows.
"""

from __future__ import annotations

import datetime
import statistics
import time
import urllib.request
from typing import Any

from bench.harness import Row, gunicorn, http_get, interleaved_medians, login_session_cookie

N = 10_000
PROTOCOLS = ("vless", "shadowsocks", "wireguard")
PREFIX = "bsec-"
REQUESTS_PER_ROUND = 20


def _rows(tag: str) -> list[dict[str, Any]]:
    return [
        {
            "username": f"{PREFIX}{tag}-{i:05d}",
            "email": f"{PREFIX}{tag}-{i:05d}@mail.example.org",
            "protocol": PROTOCOLS[i % 3],
            "data_limit": 50 * 10**9,
            "note": f"plan bench ticket b{i}",
        }
        for i in range(N)
    ]


def _remove() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM users_vpnuser WHERE username LIKE %s", [f"{PREFIX}%"])


def _raw_copy(rows: list[dict[str, Any]]) -> None:
    """The baseline: psycopg COPY of the same rows, credentials made beforehand, not encrypted."""
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
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.connection.cursor() as raw,
        raw.copy(f"COPY users_vpnuser ({columns}) FROM STDIN") as out,
    ):
        for row in prepared:
            out.write_row((*row, True, 0, "none", now, now))


def bench_create() -> list[Row]:
    from users.credentials import generate_credentials, sealed_credentials
    from users.services import users_create_batch

    counter = iter(range(10_000))
    times: dict[str, list[float]] = {"ours": [], "raw": []}

    def ours() -> None:
        result = users_create_batch(actor=None, rows=_rows(f"s{next(counter)}"))
        assert result.written == N, result.errors[:3]

    def raw() -> None:
        _raw_copy(_rows(f"r{next(counter)}"))

    _remove()
    for _ in range(3):
        for name, fn in (("ours", ours), ("raw", raw)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
            _remove()

    protocols = [PROTOCOLS[i % 3] for i in range(N)]
    sealing = interleaved_medians(
        {
            "sealed": lambda: [sealed_credentials(p) for p in protocols],
            "plain": lambda: [generate_credentials(p) for p in protocols],
        },
        rounds=5,
    )
    return [
        Row.compare(
            "create 10,000 users, credentials encrypted (service, COPY)",
            statistics.median(times["ours"]),
            "raw psycopg COPY of the same rows, credentials made beforehand, unencrypted",
            statistics.median(times["raw"]),
            "<= 3",
        ),
        Row.compare(
            "generate + encrypt credentials for 10,000 users",
            sealing["sealed"],
            "generate the same credentials, unencrypted",
            sealing["plain"],
            "<= 4",
        ),
    ]


def _post(url: str, cookies: dict[str, str], csrf: str, *, htmx: bool = True) -> bytes:
    request = urllib.request.Request(url, data=b"", method="POST")  # noqa: S310 - loopback only
    request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in {**cookies, "csrftoken": csrf}.items()))
    request.add_header("X-CSRFToken", csrf)
    if htmx:
        request.add_header("HX-Request", "true")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback only  # nosec B310
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
        return response.read()


def bench_reveal() -> list[Row]:
    from django.db import connection
    from django.utils.crypto import get_random_string

    from users.models import VpnUser
    from users.services import users_create_batch

    _remove()
    names = [f"{PREFIX}reveal", f"{PREFIX}empty"]
    users_create_batch(actor=None, rows=[{"username": name, "protocol": "wireguard"} for name in names])
    pk, empty_pk = (VpnUser.objects.get(username=name).pk for name in names)
    # The control: the same reveal with nothing to decrypt (an empty private key renders an
    # empty cell: the same request, audit entry and template, minus the decryption).
    with connection.cursor() as cursor:
        cursor.execute("UPDATE users_vpnuser SET wg_private_key = '' WHERE id = %s", [empty_pk])
    cookie = login_session_cookie()
    csrf = get_random_string(32)  # cookie and header carry the same token: CsrfViewMiddleware accepts it
    try:
        with gunicorn(env={"USERS_CACHE_READS": "0"}) as server:
            page, reveal = f"{server.url}/users/{pk}/", f"{server.url}/users/{pk}/credentials/"
            control = f"{server.url}/users/{empty_pk}/credentials/"
            assert b"Private key" in _post(reveal, cookie, csrf)
            whole = _post(reveal, cookie, csrf, htmx=False)
            assert b"Private key" in whole and b"Reveal credentials" not in whole

            def repeat(*calls: Any) -> Any:
                def run() -> None:
                    for _ in range(REQUESTS_PER_ROUND):
                        for call in calls:
                            call()

                return run

            medians = interleaved_medians(
                {
                    "page": repeat(lambda: http_get(page, cookies=cookie)),
                    "revealed": repeat(lambda: _post(reveal, cookie, csrf, htmx=False)),
                    "two_requests": repeat(lambda: http_get(page, cookies=cookie), lambda: _post(reveal, cookie, csrf)),
                    "reveal": repeat(lambda: _post(reveal, cookie, csrf)),
                    "control": repeat(lambda: _post(control, cookie, csrf)),
                },
                rounds=7,
            )
    finally:
        _remove()
    return [
        Row.compare(
            "reveal request, private key decrypted",
            medians["reveal"] / REQUESTS_PER_ROUND,
            "the same reveal request with nothing to decrypt",
            medians["control"] / REQUESTS_PER_ROUND,
            "<= 1.2",
        ),
        # The page with its credentials shown is one request: the reveal POST answers the
        # whole page (user and secrets in one read, decryption, the audit entry's write).
        Row.compare(
            "user page with its credentials revealed (the reveal POST answers the page)",
            medians["revealed"] / REQUESTS_PER_ROUND,
            "the same user page without the reveal (GET)",
            medians["page"] / REQUESTS_PER_ROUND,
            "<= 1.2",
        ),
        # What the htmx click costs on top of a loaded page: a second round trip.
        Row.compare(
            "user page, then the htmx reveal of its credentials (2 requests)",
            medians["two_requests"] / REQUESTS_PER_ROUND,
            "the same user page without the reveal (1 request)",
            medians["page"] / REQUESTS_PER_ROUND,
            "<= 2.2",
        ),
    ]


def run() -> list[Row]:
    return [*bench_create(), *bench_reveal()]
