"""`manage.py warmcache`: preload the hot reads into the cache, with progress."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from perf.cache.services import cache_warm


class Command(BaseCommand):
    help = (
        "Preload the hot reads (user stats, first list pages, ...) into the cache by running every "
        "warmer in settings.CACHE_WARMERS (dotted paths of fn(progress) -> entries). A warmer that "
        "cannot be imported or fails is reported and the others still run; the command then exits "
        "with status 1."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        warmers = list(settings.CACHE_WARMERS)
        if not warmers:
            self.stdout.write("No warmers configured (settings.CACHE_WARMERS is empty); nothing to do.")
            return
        self.stdout.write(f"Warming the cache with {len(warmers)} warmer(s)...")
        report = cache_warm(actor=None, progress=lambda message: self.stdout.write(f"  {message}"))
        if report.failed:
            raise CommandError(report.summary)
        self.stdout.write(self.style.SUCCESS(report.summary))
