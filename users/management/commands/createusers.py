"""`manage.py createusers --count N`: many users fast, for demos and load tests."""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from users.models import Protocol
from users.services import users_create_batch

BATCH = 50_000
MAX_COUNT = 10_000_000


class Command(BaseCommand):
    help = (
        "Create COUNT VPN users named <prefix><number> with generated credentials, in batches "
        f"of {BATCH:,} (each one transaction through COPY on PostgreSQL), printing progress."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, required=True, help="how many users to create")
        parser.add_argument(
            "--protocol",
            choices=[*Protocol.values, "mixed"],
            default="mixed",
            help="one protocol for all, or mixed (round robin; the default)",
        )
        parser.add_argument(
            "--prefix", default="", help="username prefix (default: demo-<random>-); 3-24 of a-z 0-9 _ . -"
        )
        parser.add_argument("--data-limit", default="", help="data limit per user, e.g. 50GB (default: unlimited)")

    def handle(self, *args: Any, count: int, protocol: str, prefix: str, data_limit: str, **options: Any) -> None:
        if not 1 <= count <= MAX_COUNT:
            raise CommandError(f"--count must be between 1 and {MAX_COUNT:,}, got {count}")
        prefix = prefix or f"demo-{secrets.token_hex(3)}-"
        if len(prefix) + len(str(count - 1)) > 32:
            raise CommandError("--prefix is too long: usernames may have at most 32 characters")
        protocols = Protocol.values if protocol == "mixed" else [protocol]
        width = len(str(count - 1))
        started = time.monotonic()
        created = 0
        for start in range(0, count, BATCH):
            rows = [
                {
                    "username": f"{prefix}{i:0{width}d}",
                    "protocol": protocols[i % len(protocols)],
                    "data_limit": data_limit,
                }
                for i in range(start, min(start + BATCH, count))
            ]
            result = users_create_batch(actor=None, rows=rows)
            if not result.ok:
                shown = "; ".join(str(error) for error in result.errors[:5])
                raise CommandError(
                    f"batch starting at {start:,} was refused ({len(result.errors):,} problems: {shown}); "
                    f"{created:,} users were created before it"
                )
            created += result.written
            rate = created / max(time.monotonic() - started, 1e-6)
            self.stdout.write(f"created {created:,} of {count:,} users ({rate:,.0f}/s)")
        self.stdout.write(self.style.SUCCESS(f"Created {created:,} users named {prefix}*."))
