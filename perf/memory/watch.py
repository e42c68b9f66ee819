"""Watching processes from outside (the `profilememory` command): RSS and USS of given
pids or of a gunicorn master's workers, leak detection on each series, the store kept
up to date when it answers, and a report at the end.

Every fault is a message, never a crash: a pid that does not exist or is not ours is
refused up front, a process that ends is reported and dropped, a store that is down or
full is reported once and the watch goes on in memory.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
from django.db import DatabaseError, connection

from perf.memory.leaks import Finding, detect
from perf.memory.profiler import MB, ProfilerConfig, Snapshot, external_snapshot
from vpnadmin.errors import first_line

Emit = Callable[[str, str], None]  # (level: "info" | "warning" | "finding", text)


class WatchError(Exception):
    """Nothing can be watched: the message says why."""


@dataclass
class Watched:
    proc: psutil.Process
    label: str
    started_at: datetime
    series: deque[Snapshot]
    all_points: list[tuple[str, int, int | None]] = field(default_factory=list)
    store_id: int | None = None
    store_writes: bool = True
    finding: Finding | None = None
    ended: bool = False
    first_rss: int | None = None
    last_rss: int | None = None


def _owner_problem(proc: psutil.Process) -> str | None:
    """Why this process may not be watched, or None when it is ours."""
    try:
        uid = proc.uids().real
        if os.getuid() != 0 and uid != os.getuid():
            return f"it belongs to uid {uid}, and this command runs as uid {os.getuid()}"
        if os.getuid() == 0 and uid != 0 and uid != os.getuid():
            # root could read it, but a process of another account is not vpnadmin's to profile.
            return f"it belongs to uid {uid} ({_user_name(proc)}), not to this account (uid 0)"
        proc.memory_full_info()
    except psutil.AccessDenied:
        return "its memory cannot be read with this account's rights"
    return None


def _user_name(proc: psutil.Process) -> str:
    try:
        return proc.username()
    except (psutil.Error, KeyError):
        return "unknown user"


class Watcher:
    def __init__(
        self,
        *,
        pids: list[int],
        master: int | None,
        interval: float,
        config: ProfilerConfig,
        emit: Emit,
        use_store: bool = True,
    ) -> None:
        self.config = config
        self.interval = interval
        self.emit = emit
        self.use_store = use_store
        self.master: psutil.Process | None = None
        self.watched: dict[int, Watched] = {}
        self.messages: list[dict[str, str]] = []
        self.store_error: str | None = None
        self.rounds = 0
        self.started_at = datetime.now(tz=UTC)
        self.ended_at: datetime | None = None
        self._refused: list[str] = []
        for pid in pids:
            self._add(pid, initial=True)
        if master is not None:
            self._attach_master(master)
        if not self.watched:
            reasons = "; ".join(self._refused) or "no process given"
            raise WatchError(f"nothing to watch: {reasons}")

    # set-up -------------------------------------------------------------------------

    def _say(self, level: str, text: str) -> None:
        self.messages.append({"at": datetime.now(tz=UTC).isoformat(), "level": level, "text": text})
        self.emit(level, text)

    def _add(self, pid: int, *, initial: bool = False, note: str = "") -> None:
        if pid in self.watched:
            return
        try:
            proc = psutil.Process(pid)
            problem = _owner_problem(proc)
            if problem is None:
                started = datetime.fromtimestamp(proc.create_time(), tz=UTC)
                label = proc.name()[:200]  # never the command line: it can carry secrets
        except psutil.NoSuchProcess:
            problem = "no such process"
        except psutil.AccessDenied:
            problem = "its memory cannot be read with this account's rights"
        if problem is not None:
            text = f"pid {pid} is not watched: {problem}"
            self._refused.append(text)
            self._say("warning", text)
            return
        self.watched[pid] = Watched(proc=proc, label=label, started_at=started, series=deque(maxlen=self.config.window))
        if not initial or note:
            self._say("info", f"pid {pid} joins the watch{note}: {label}")

    def _attach_master(self, pid: int) -> None:
        try:
            master = psutil.Process(pid)
            problem = _owner_problem(master)
        except psutil.NoSuchProcess:
            problem = "no such process"
        if problem is not None:
            text = f"gunicorn master {pid} is not watched: {problem}"
            self._refused.append(text)
            self._say("warning", text)
            return
        self.master = master
        children = master.children()
        if not children:
            self._refused.append(f"gunicorn master {pid} has no worker processes")
            self._say("warning", f"gunicorn master {pid} has no worker processes yet")
        for child in children:
            self._add(child.pid, initial=True)

    # rounds -------------------------------------------------------------------------

    def _refresh_master(self) -> bool:
        """New workers join, gone ones are noticed at their next sample; False when the master is gone."""
        if self.master is None:
            return True
        try:
            children = self.master.children()
        except psutil.NoSuchProcess:
            self._say("warning", f"gunicorn master {self.master.pid} has exited; the watch ends")
            self.master = None
            return False
        for child in children:
            if child.pid not in self.watched:
                self._add(child.pid, note=" (a new worker)")
        return True

    def sample_round(self) -> None:
        self.rounds += 1
        for pid, item in list(self.watched.items()):
            if item.ended:
                continue
            try:
                if item.proc.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
                    raise psutil.NoSuchProcess(pid)
                snap = external_snapshot(item.proc)
            except psutil.NoSuchProcess:
                self._end(item, "ended between snapshots")
                continue
            except psutil.AccessDenied:
                self._end(item, "can no longer be read (permissions changed)")
                continue
            if snap.taken_at >= item.started_at + timedelta(seconds=self.config.warmup_s):
                item.series.append(snap)
            item.all_points.append((snap.taken_at.isoformat(), snap.rss, snap.uss))
            item.first_rss = item.first_rss if item.first_rss is not None else snap.rss
            item.last_rss = snap.rss
            self._judge(pid, item)
            self._store(item, snap)

    def _judge(self, pid: int, item: Watched) -> None:
        previous = item.finding
        finding = detect(item.series, self.config, sticky=previous is not None)
        item.finding = finding
        if finding is not None and (previous is None or previous.severity != finding.severity):
            self._say("finding", f"pid {pid}: {finding.severity.upper()} leak: {finding.title}")
            for advice in finding.recommendations[:2]:
                self.emit("info", f"    - {advice}")
        elif finding is None and previous is not None:
            self._say("info", f"pid {pid}: no longer growing on a clean trend; the finding is closed")

    def _end(self, item: Watched, why: str) -> None:
        item.ended = True
        last = f", last RSS {item.last_rss / MB:,.1f} MB" if item.last_rss else ""
        self._say("warning", f"pid {item.proc.pid} {why} after {len(item.all_points)} snapshot(s){last}")
        store_id = item.store_id
        if store_id is not None and self.use_store:
            from perf.memory.services import memory_process_end

            self._guard_store(lambda: memory_process_end(process_id=store_id))

    def _store(self, item: Watched, snap: Snapshot) -> None:
        if not self.use_store:
            return
        from perf.memory import services

        def write() -> None:
            if item.store_id is None:
                identity = (_host(), item.proc.pid, item.started_at, item.label)
                row = services.memory_process_register(role="watched", config=self.config, identity=identity)
                item.store_id = row.pk
                # A worker that samples itself already writes richer snapshots.
                item.store_writes = row.role == "watched"
            if item.store_writes:
                services.memory_snapshot_record(process_id=item.store_id, snapshot=snap, config=self.config)
                services.memory_finding_sync(process_id=item.store_id, finding=item.finding)

        self._guard_store(write)

    def _guard_store(self, step: Callable[[], None]) -> None:
        from perf.memory.services import SnapshotStoreFull

        try:
            step()
        except (DatabaseError, SnapshotStoreFull) as exc:
            if isinstance(exc, DatabaseError) and not connection.in_atomic_block:
                connection.close()  # made anew at the next write
            # Our own message is written for the operator; a driver's needs its type named.
            text = str(exc) if isinstance(exc, SnapshotStoreFull) else first_line(exc)
            kind = "full" if isinstance(exc, SnapshotStoreFull) else "unavailable"
            message = f"snapshot store {kind}: {text}; watching goes on in memory and the report is still written"
            if message != self.store_error:
                self.store_error = message
                self._say("warning", message)
        else:
            if self.store_error is not None:
                self.store_error = None
                self._say("info", "snapshot store answers again")

    def live(self) -> int:
        return sum(not item.ended for item in self.watched.values())

    def run(self, *, duration: float | None, stop: threading.Event) -> None:
        """Sample every interval until the duration is over, `stop` is set or nothing is left."""
        deadline = None if duration is None else time.monotonic() + duration
        while True:
            master_alive = self._refresh_master()
            self.sample_round()
            if not master_alive or (self.live() == 0 and self.master is None):
                if self.live() == 0:
                    self._say("warning", "every watched process has ended; the watch ends")
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            wait = self.interval if deadline is None else min(self.interval, deadline - now)
            if stop.wait(max(wait, 0)):
                break
            if deadline is not None and time.monotonic() >= deadline:
                self._refresh_master()
                self.sample_round()
                break
        self.ended_at = datetime.now(tz=UTC)

    def report(self) -> dict[str, Any]:
        ended = self.ended_at or datetime.now(tz=UTC)
        return {
            "started_at": self.started_at.isoformat(),
            "ended_at": ended.isoformat(),
            "duration_s": round((ended - self.started_at).total_seconds(), 3),
            "interval_s": self.interval,
            "rounds": self.rounds,
            "config": {
                "leak_threshold_mb_per_hour": self.config.leak_threshold_mb,
                "window": self.config.window,
                "min_snapshots": self.config.min_snapshots,
                "min_r2": self.config.min_r2,
            },
            "processes": [
                {
                    "pid": pid,
                    "command": item.label,
                    "started_at": item.started_at.isoformat(),
                    "ended": item.ended,
                    "snapshots": len(item.all_points),
                    "first_rss_mb": round(item.first_rss / MB, 2) if item.first_rss else None,
                    "last_rss_mb": round(item.last_rss / MB, 2) if item.last_rss else None,
                    "finding": item.finding.as_json() if item.finding else None,
                    "series": [{"at": at, "rss": rss, "uss": uss} for at, rss, uss in item.all_points],
                }
                for pid, item in self.watched.items()
            ],
            "messages": self.messages,
        }


def _host() -> str:
    import socket

    return socket.gethostname()[:255]
