"""`manage.py profilememory`: watch worker processes' memory, print findings as they appear."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from perf.memory.profiler import ProfilerConfig
from perf.memory.watch import Watcher, WatchError


def _positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 seconds or more, got {text}")
    return value


def _pid(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a process id") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a process id is a positive integer, got {text}")
    return value


class Command(BaseCommand):
    help = (
        "Watch the memory of processes (by --pid, or every worker of --gunicorn-master): RSS and USS "
        "every --interval seconds, for --duration seconds or until stopped (Ctrl-C). Prints leak findings "
        "with their evidence as they appear, keeps the memory store up to date for /perf/memory/, and "
        "writes a JSON report with --output."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--pid", type=_pid, action="append", default=[], help="a process to watch (repeatable)")
        parser.add_argument("--gunicorn-master", type=_pid, help="watch every worker of this gunicorn master")
        parser.add_argument("--duration", type=_positive_float, help="seconds to watch; until stopped if left out")
        parser.add_argument("--interval", type=_positive_float, default=10.0, help="seconds between snapshots")
        parser.add_argument(
            "--warmup",
            type=_seconds,
            help="leave each process's first SECONDS out of the trend (start-up growth); "
            "PROFILER['warmup_s'] by default",
        )
        parser.add_argument("--output", help="write the report as JSON to this file")
        parser.add_argument(
            "--no-store", action="store_true", help="do not write snapshots and findings to the memory store"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        pids: list[int] = options["pid"]
        master: int | None = options["gunicorn_master"]
        if not pids and master is None:
            raise CommandError("give at least one --pid or a --gunicorn-master to watch")
        if os.getpid() in pids:
            raise CommandError(f"--pid {os.getpid()} is this command itself")
        output = Path(options["output"]) if options["output"] else None
        if output is not None:
            self._check_writable(output)
        config = ProfilerConfig.from_settings()
        if options["warmup"] is not None:
            config = replace(config, warmup_s=options["warmup"])

        def emit(level: str, text: str) -> None:
            if level == "warning":
                self.stderr.write(self.style.WARNING(text))
            elif level == "finding":
                self.stdout.write(self.style.ERROR(text))
            elif options["verbosity"] >= 1:
                self.stdout.write(text)

        try:
            watcher = Watcher(
                pids=pids,
                master=master,
                interval=options["interval"],
                config=config,
                emit=emit,
                use_store=not options["no_store"],
            )
        except WatchError as exc:
            raise CommandError(str(exc)) from None
        duration = options["duration"]
        names = ", ".join(str(pid) for pid in watcher.watched)
        self.stdout.write(
            f"Watching pid {names} every {options['interval']:g} s "
            + (f"for {duration:g} s." if duration else "until stopped (Ctrl-C).")
        )
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            watcher.run(duration=duration, stop=stop)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        finally:
            signal.signal(signal.SIGTERM, previous)
        report = watcher.report()
        self._summary(report)
        if output is not None:
            output.write_text(json.dumps(report, indent=2) + "\n")
            self.stdout.write(self.style.SUCCESS(f"Report written to {output}"))

    def _check_writable(self, output: Path) -> None:
        parent = output.parent if str(output.parent) else Path(".")
        if output.is_dir():
            raise CommandError(f"--output {output} is a directory; give a file name")
        if not parent.is_dir():
            raise CommandError(f"--output {output}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise CommandError(f"--output {output}: the folder {parent} is not writable")

    def _summary(self, report: dict[str, Any]) -> None:
        self.stdout.write(f"{report['rounds']} round(s) in {report['duration_s']:g} s:")
        for proc in report["processes"]:
            finding = proc["finding"]
            verdict = (
                f"{finding['severity']} leak, {finding['slope_mb_per_hour']:,.1f} MB/h" if finding else "no finding"
            )
            state = " (ended)" if proc["ended"] else ""
            self.stdout.write(
                f"  pid {proc['pid']}{state}: {proc['snapshots']} snapshots, RSS {proc['first_rss_mb']} → "
                f"{proc['last_rss_mb']} MB, {verdict}"
            )
