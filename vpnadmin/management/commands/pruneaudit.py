"""Retention for the audit trail: delete entries older than a number of days."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from vpnadmin.audit import audit_prune


class Command(BaseCommand):
    help = (
        "Delete audit entries older than --older-than DAYS, in batches (the only way entries are ever "
        "deleted); the pruning itself is recorded as one entry."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=int, required=True, metavar="DAYS", help="keep the last DAYS days")
        parser.add_argument("--batch-size", type=int, default=10_000)

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["older_than"]
        if days < 1:
            raise CommandError("--older-than must be at least 1 day")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")

        def progress(done: int) -> None:
            self.stdout.write(f"deleted {done} entries so far")

        total = audit_prune(older_than_days=days, batch_size=options["batch_size"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"Deleted {total} audit entries older than {days} days."))
