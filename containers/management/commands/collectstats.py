from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from containers.collector import collect_stats_once


class Command(BaseCommand):
    help = (
        "Take one stats pass now: sample every running VPN server container (CPU %, memory, network and "
        "block I/O, pids) and keep the samples and the live panel in the cache. The queue worker runs the "
        "same pass every CONTAINERS_STATS_INTERVAL seconds (containers.collect_stats); this is for a look "
        "right now, or a cron job on a machine without a worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Kept so that scripts written for the old looping command still work.
        parser.add_argument("--once", action="store_true", help="Accepted for compatibility: always one pass.")

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        report = collect_stats_once()
        self.stdout.write(
            f"{report.sampled} sampled, {report.not_running} not running, {report.failed} failed "
            f"in {(time.monotonic() - started) * 1000:.0f} ms"
        )
