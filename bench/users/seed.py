"""The bench databases' VPN users: 1,000,000 in vpnadmin_bench, 1,000 in vpnadmin_bench_small.

Seeded once through the same batch service the app uses (COPY), and reused when the
count is already there. `python -m bench.users.seed [COUNT]` seeds the database that
DATABASE_URL names (the bench runner points it at vpnadmin_bench).

The rows look like a real install: every protocol, ~5% disabled, some over quota,
some expired, some waiting for first use, and notes with a plan, a city and a ticket
reference (`t<number>`, shared by 20 users at either size) for the full-text benchmarks.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
from typing import Any

from bench.harness import ensure_database

BIG = 1_000_000
SMALL = 1_000
SMALL_DATABASE = "vpnadmin_bench_small"
CHUNK = 50_000
PROTOCOLS = ("vless", "shadowsocks", "wireguard")
CITIES = ("berlin", "paris", "tokyo", "lagos", "lima", "oslo", "quito", "perth", "dubai", "seoul")
PLANS = ("trial", "basic", "plus", "family", "business")
GB = 10**9


def username(i: int) -> str:
    return f"user{i:07d}"


def row(i: int, now: datetime.datetime, count: int = BIG) -> dict[str, Any]:
    limit = (10 + i % 90) * GB if i % 4 else None
    used = (i * 7_919 * 104_729) % (120 * GB)  # spread over 0-120 GB: some users are over quota
    values: dict[str, Any] = {
        "username": username(i),
        "email": f"{username(i)}@mail{i % 20}.example.org",
        "protocol": PROTOCOLS[i % 3],
        "data_limit": limit,
        "used_traffic": used,
        "reset_strategy": ("none", "month", "week")[i % 3],
        "is_active": i % 20 != 7,
        "note": f"plan {PLANS[i % 5]} city {CITIES[i % 10]} ticket t{i % _tickets(count)}",
    }
    if i % 10 == 3:
        values["expire_at"] = now - datetime.timedelta(days=1 + i % 30)
    elif i % 10 == 5:
        values["on_hold_days"] = 30
    elif i % 10 in (1, 6):
        values["expire_at"] = now + datetime.timedelta(days=1 + i % 60)
    return values


def _tickets(count: int) -> int:
    """Each ticket reference is shared by 20 users, whatever the table size."""
    return max(1, count // 20)


def ensure_users(count: int, *, out: Any = sys.stdout) -> int:
    """Make the table hold exactly `count` seeded users; reuse it when it already does."""
    from django.db import connection

    from users.models import VpnUser
    from users.services import users_create_batch

    existing = VpnUser.objects.count()
    if existing > count:
        # Rows other suites or an interrupted run left beside the seed: remove only those.
        VpnUser.objects.exclude(username__regex=r"^user[0-9]{7}$").delete()
        existing = VpnUser.objects.count()
    now = datetime.datetime.now(datetime.UTC)
    last = row(count - 1, now, count)
    seeded = VpnUser.objects.filter(username__in=[username(0), last["username"]]).count()
    same_data = VpnUser.objects.filter(
        username=last["username"], note=last["note"], used_traffic=last["used_traffic"]
    ).exists()
    if existing == count and seeded == 2 and same_data:
        print(f"users: reusing {existing:,} seeded users in {connection.settings_dict['NAME']}", file=out)
        return existing
    print(f"users: seeding {count:,} users into {connection.settings_dict['NAME']} (was {existing:,})", file=out)
    with connection.cursor() as cursor:
        # CASCADE: rows that reference users (subscriptions) go with the seed they belonged to.
        cursor.execute("TRUNCATE users_vpnuser CASCADE")
    started = time.monotonic()
    for start in range(0, count, CHUNK):
        rows = [row(i, now, count) for i in range(start, min(start + CHUNK, count))]
        result = users_create_batch(actor=None, rows=rows)
        if not result.ok:
            raise RuntimeError(f"seeding failed: {result.errors[:5]}")
        done = start + len(rows)
        print(f"users: {done:,}/{count:,} ({time.monotonic() - started:.0f} s)", file=out, flush=True)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE users_vpnuser")
    return count


def small_database_url() -> str:
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    return f"{base}/{SMALL_DATABASE}"


def ensure_small_database() -> str:
    """vpnadmin_bench_small, migrated and seeded with 1,000 users, in a child process."""
    ensure_database(SMALL_DATABASE)
    env = {**os.environ, "DATABASE_URL": small_database_url()}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], env=env, check=True)
    subprocess.run([sys.executable, "-m", "bench.users.seed", str(SMALL)], env=env, check=True)
    return small_database_url()


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else BIG
    if "DATABASE_URL" not in os.environ:
        from bench.__main__ import _prepare_environment

        _prepare_environment()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vpnadmin.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    ensure_users(count)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
