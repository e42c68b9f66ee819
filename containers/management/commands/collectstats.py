from __future__ import annotations

import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from containers.collector import StatsCollector


class Command(BaseCommand):
    help = (
        "Sample every running VPN server container (CPU %, memory, network and block I/O, pids) and keep the "
        "latest sample in the cache for the live panels. Runs until stopped; `make run` starts it beside gunicorn."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval", type=float, default=settings.CONTAINERS_STATS_INTERVAL, help="Seconds between passes."
        )
        parser.add_argument("--once", action="store_true", help="Take one pass and exit.")
        parser.add_argument(
            "--sync-every", type=int, default=6, help="Reconcile with the engines every N passes (default 6)."
        )

    def handle(self, *args: Any, interval: float, once: bool, sync_every: int, **options: Any) -> None:
        stop = threading.Event()
        if not once:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
        collector = StatsCollector(sync_every=sync_every)
        self.stdout.write(f"Collecting container stats every {interval:g} s.")
        while not stop.is_set():
            started = time.monotonic()
            try:
                if collector.passes:
                    close_old_connections()  # long-running: drop a connection the server closed meanwhile
                report = collector.collect_once()
            except Exception as exc:  # a pass that fails (database restarting) is retried next time
                self.stderr.write(f"pass failed: {type(exc).__name__}: {exc}")
            else:
                if once or options["verbosity"] > 1 or report.failed:
                    self.stdout.write(
                        f"{report.sampled} sampled, {report.not_running} not running, {report.failed} failed "
                        f"in {(time.monotonic() - started) * 1000:.0f} ms"
                    )
            if once:
                break
            stop.wait(max(interval - (time.monotonic() - started), 0.1))
        self.stdout.write("Stopped.")
