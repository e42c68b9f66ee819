"""`manage.py rotatekeys`: every stored secret re-encrypted under the newest key."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from vpnadmin.crypto import DecryptionError, keyring, secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (user credentials, server keys and environments) under the newest key "
        "of VPNADMIN_ENCRYPTION_KEYS and recompute the blind indexes, in short batches with progress. Safe while "
        "the panel serves. Rotate by putting a new key first, restarting, running this, then removing the old key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction (default 1000)")

    def handle(self, *args: Any, batch_size: int, **options: Any) -> None:
        if not 1 <= batch_size <= 50_000:
            raise CommandError(f"--batch-size must be between 1 and 50,000, got {batch_size}")
        ring = keyring()
        self.stdout.write(f"Re-encrypting under key {ring.fingerprints[0]} ({ring.describe()}).")
        started = time.monotonic()
        try:
            counts = secrets_rotate(batch_size=batch_size, progress=self.stdout.write)
        except DecryptionError as exc:
            raise CommandError(str(exc)) from None
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Rewrote {sum(counts.values()):,} secrets in {elapsed:.1f}s under {ring.fingerprints[0]}."
            )
        )
