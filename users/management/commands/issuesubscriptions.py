"""`manage.py issuesubscriptions [filters]`: subscription URLs for the users of a filter, as CSV.

For selections beyond what one page download holds (SUBSCRIPTION_EXPORT_MAX_ROWS). Only a
hash of each token is stored, so this is the one moment the URLs exist: the file is
created readable by its owner only, and written chunk by chunk (each chunk one
transaction and one audit entry) so a million users never sit in memory.
"""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import QueryDict

from users.csv_io import escape_cell
from users.forms import parse_filter
from users.models import VpnUser
from users.selectors import SearchRefused, selection_queryset
from users.subscriptions.services import subscriptions_issue

CHUNK = 10_000


class Command(BaseCommand):
    help = (
        "Issue subscription URLs for the VPN users matching the filters and write them as CSV "
        "(id, username, subscription_url). By default only users without one get a URL; --rotate "
        "gives every matching user a new one (their current URLs stop working)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", type=Path, help="file to create, mode 0600 (default: stdout)")
        parser.add_argument("--rotate", action="store_true", help="new URLs for users that have one too")
        parser.add_argument(
            "--base-url", default="", help="e.g. https://sub.example.com (default: SUBSCRIPTION_BASE_URL)"
        )
        parser.add_argument("--search", default="", help="search text, as on the list page")
        parser.add_argument("--username", default="", help="username, * as wildcard")
        parser.add_argument("--email", default="", help="e-mail, * as wildcard")
        parser.add_argument("--status", default="", help="active, disabled, limited, expired or on_hold")
        parser.add_argument("--protocol", default="", help="vless, shadowsocks or wireguard")
        parser.add_argument("--server", default="", help="server id, or 'none'")

    def handle(self, *args: Any, output: Path | None, rotate: bool, base_url: str, **options: Any) -> None:
        base = (base_url or settings.SUBSCRIPTION_BASE_URL).rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise CommandError("Say where clients fetch the URLs: --base-url https://… or SUBSCRIPTION_BASE_URL.")
        query = QueryDict(mutable=True)
        for name in ("username", "email", "status", "protocol", "server"):
            if options[name]:
                query[name] = options[name]
        if options["search"]:
            query["q"] = options["search"]
        flt, errors = parse_filter(query)
        if errors:
            raise CommandError("; ".join(errors))
        try:
            users = selection_queryset(flt)
        except SearchRefused as exc:
            raise CommandError(str(exc)) from None
        if not rotate:
            users = users.filter(subscription__isnull=True)
        if output and output.exists():
            raise CommandError(f"{output} exists: the URLs are secrets, give a new file name.")
        target: IO[str] = (
            os.fdopen(os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", newline="", encoding="utf-8")
            if output
            else sys.stdout
        )
        try:
            written = self._write(target, users, base, rotate=rotate, label=flt.describe())
        finally:
            if output:
                target.close()
        self.stderr.write(f"issued {written:,} subscription URLs")

    def _write(self, target: IO[str], users: Any, base: str, *, rotate: bool, label: str) -> int:
        writer = csv.writer(target)
        writer.writerow(["id", "username", "subscription_url"])
        written, after = 0, 0
        # Keyset chunks over the selection's primary keys: memory stays one chunk.
        ids = users.order_by("pk").values_list("pk", flat=True)
        while True:
            chunk = list(ids.filter(pk__gt=after)[:CHUNK])
            if not chunk:
                return written
            after = chunk[-1]
            issued = subscriptions_issue(
                actor=None, users=VpnUser.objects.filter(pk__in=chunk), only_missing=not rotate,
                selection=f"issuesubscriptions: {label}",
            )  # fmt: skip
            for item in issued:
                writer.writerow([item.user_id, escape_cell(item.username), f"{base}/sub/{item.token}/"])
            written += len(issued)
            if written and written % 100_000 < CHUNK:
                self.stderr.write(f"issued {written:,} subscription URLs")
