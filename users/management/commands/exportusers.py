"""`manage.py exportusers [filters]`: the users matching a filter as CSV, streamed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import QueryDict

from users.csv_io import csv_lines
from users.forms import parse_filter
from users.selectors import SearchRefused, export_rows, filtered_users

PROGRESS_EVERY = 100_000


class Command(BaseCommand):
    help = (
        "Write the VPN users matching the filters as CSV (no credentials; formula-like cells are "
        "escaped) to --output or stdout, streaming from a server-side cursor; progress goes to stderr."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, help="file to write (default: stdout)")
        parser.add_argument("--search", default="", help="search text, as on the list page")
        parser.add_argument("--username", default="", help="username, * as wildcard")
        parser.add_argument("--email", default="", help="e-mail, * as wildcard")
        parser.add_argument("--status", default="", help="active, disabled, limited, expired or on_hold")
        parser.add_argument("--protocol", default="", help="vless, shadowsocks or wireguard")
        parser.add_argument("--server", default="", help="server id, or 'none'")

    def handle(self, *args: Any, output: Path | None, search: str, **options: Any) -> None:
        query = QueryDict(mutable=True)
        for name in ("username", "email", "status", "protocol", "server"):
            if options[name]:
                query[name] = options[name]
        if search:
            query["q"] = search
        flt, errors = parse_filter(query)
        if errors:
            raise CommandError("; ".join(errors))
        try:
            filtered_users(flt)  # refuse a filter that cannot be answered before opening the output
            rows = export_rows(flt)
            lines = csv_lines(rows)
            target = output.open("w", newline="", encoding="utf-8") if output else sys.stdout
            written = -1  # the header line
            try:
                for line in lines:
                    target.write(line)
                    written += 1
                    if written and written % PROGRESS_EVERY == 0:
                        self.stderr.write(f"exported {written:,} users")
            finally:
                if output:
                    target.close()
        except SearchRefused as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(f"exported {max(written, 0):,} users" + (f" to {output}" if output else ""))
