"""`manage.py importusers FILE`: a CSV of users, all or nothing, with progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from users.csv_io import parse_users_csv
from users.schema import IMPORT_COLUMNS
from users.services import users_create_batch, validate_new_users

SHOWN_ERRORS = 50


class Command(BaseCommand):
    help = (
        "Import VPN users from a UTF-8 CSV file (header: username, protocol, and optionally "
        f"{', '.join(c for c in IMPORT_COLUMNS if c not in ('username', 'protocol'))}; server by name, or "
        "host/name). Every bad row is reported by line and nothing is written unless all rows are good "
        "(or --write-good-rows)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="the CSV file")
        parser.add_argument("--dry-run", action="store_true", help="check every row, write nothing")
        parser.add_argument("--write-good-rows", action="store_true", help="write the good rows even if some are bad")
        parser.add_argument("--max-rows", type=int, default=5_000_000, help="refuse files with more rows")

    def handle(self, *args: Any, file: Path, dry_run: bool, write_good_rows: bool, max_rows: int, **opts: Any) -> None:
        if not file.is_file():
            raise CommandError(f"{file} is not a file")
        started = time.monotonic()
        with file.open("rb") as handle:
            parsed = parse_users_csv(handle, max_rows=max_rows, progress=self.stdout.write)
        self.stdout.write(f"read {len(parsed.rows):,} rows in {time.monotonic() - started:.1f} s")
        if parsed.fatal:
            raise CommandError("; ".join(f"{e.field} {e.message}" for e in parsed.errors))
        if dry_run or (parsed.errors and not write_good_rows):
            _, row_errors = validate_new_users(parsed.rows, positions=parsed.lines)
            errors = sorted(parsed.errors + row_errors, key=lambda e: e.position)
            written = 0
        else:
            result = users_create_batch(
                actor=None,
                rows=parsed.rows,
                positions=parsed.lines,
                write_good_rows=write_good_rows,
                progress=self.stdout.write,
            )
            errors = sorted(parsed.errors + result.errors, key=lambda e: e.position)
            written = result.written
        for error in errors[:SHOWN_ERRORS]:
            where = f"line {error.position}" if error.position else "file"
            self.stderr.write(f"{where}: {error.field} {error.message}")
        if len(errors) > SHOWN_ERRORS:
            self.stderr.write(f"... and {len(errors) - SHOWN_ERRORS:,} more problems")
        if errors and not written:
            raise CommandError(f"{len(errors):,} problems; nothing was written")
        if dry_run:
            self.stdout.write(self.style.SUCCESS(f"All {len(parsed.rows):,} rows are good (dry run: nothing written)."))
            return
        self.stdout.write(
            self.style.SUCCESS(f"Imported {written:,} users in {time.monotonic() - started:.1f} s")
            + (f" ({len(errors):,} bad rows skipped)" if errors else "")
        )
