"""The light sampler in every gunicorn worker, driven by the worker's own requests.

No thread of its own: a web worker runs nothing in the background (gunicorn recycles
workers, and anything running beside the requests dies with them). Instead, when a
response has been sent (Django's `request_finished`), the sampler looks at the clock:

- at most once per `control_poll_s` it follows the operator's switches in the store
  (the tracemalloc window, a requested garbage collection, its own row being gone);
- at most once per `interval_s` (MEMORY_SAMPLE_INTERVAL) it takes a snapshot (RSS and
  USS, gc counts; object counts every `types_every`th sample), records it and runs
  leak detection.

Between those moments a request pays two clock comparisons. Only one thread of a worker
samples at a time (the others do not wait for it). A worker that serves no request is
not sampled (it does not grow either); `profilememory` watches from outside.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.core.signals import request_finished

from perf.memory.profiler import MemoryProfiler, ProfilerConfig
from vpnadmin.errors import first_line

logger = logging.getLogger(__name__)


class Sampler:
    """Snapshot, record, detect and follow the control flags, when a finished request finds it due.

    Every failure of the store is logged once per outage and skipped: the worker serving
    requests must never notice the profiler.
    """

    def __init__(self, config: ProfilerConfig, *, role: str = "worker") -> None:
        self.config = config
        self.role = role
        self.profiler = MemoryProfiler(config)
        self._busy = threading.Lock()
        self._next_sample = 0.0  # monotonic; 0: the first finished request samples
        self._next_poll = 0.0
        self._store_error: str | None = None
        self._handled_gc_request: datetime = datetime.now(tz=UTC)
        self.process_id: int | None = None
        self._finding_open = False
        self._sample_now = False

    def on_request_finished(self, **kwargs: Any) -> None:
        """A response is done: sample and poll if due, else return at once."""
        now = time.monotonic()
        if now < self._next_poll and now < self._next_sample and not self._sample_now:
            return
        if not self._busy.acquire(blocking=False):
            return  # another thread of this worker is sampling
        try:
            self.run_due(now)
        finally:
            self._busy.release()

    def run_due(self, now: float) -> None:
        """Follow the controls and take a sample, each only when its interval has passed."""
        if now >= self._next_poll:
            self._next_poll = now + self.config.control_poll_s
            self._guarded(self.follow_controls)
        if self._sample_now or now >= self._next_sample:
            self._sample_now = False
            self._next_sample = now + self.config.interval_s
            self._guarded(self.sample_once)
        self._release_connection()

    def close(self) -> None:
        """Stop tracing; waits for a sample under way in another thread to finish first."""
        with self._busy:
            self.profiler.tracemalloc_stop()

    @staticmethod
    def _release_connection() -> None:
        # Django closed this thread's connection when the response ended (CONN_MAX_AGE
        # decides); the sample may have opened another: treat it the same way.
        from django.db import connection

        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()

    def _guarded(self, step: Callable[[], None]) -> None:
        from django.db import DatabaseError, connection

        from perf.memory.services import SnapshotStoreFull

        try:
            step()
        except (DatabaseError, SnapshotStoreFull) as exc:
            # A connection that failed is dropped and made anew next time.
            if isinstance(exc, DatabaseError) and not connection.in_atomic_block:
                connection.close()
            kind = "full" if isinstance(exc, SnapshotStoreFull) else "unavailable"
            message = first_line(exc, limit=1000)
            if message != self._store_error:
                logger.warning("memory sampler (pid %s): snapshot store %s: %s", os.getpid(), kind, message)
                self._store_error = message
            self.process_id = None
        except Exception:
            logger.exception("memory sampler (pid %s): sample failed", os.getpid())
        else:
            if self._store_error is not None:
                logger.info("memory sampler (pid %s): snapshot store answers again", os.getpid())
                self._store_error = None

    def sample_once(self) -> None:
        from perf.memory import services
        from perf.memory.leaks import detect
        from perf.memory.metrics import record_worker_memory

        snap = self.profiler.snapshot()
        record_worker_memory(snap)
        if self.process_id is None:
            self.process_id = services.memory_process_register(role=self.role, config=self.config).pk
        services.memory_snapshot_record(process_id=self.process_id, snapshot=snap, config=self.config)
        finding = detect(list(self.profiler.series), self.config, sticky=self._finding_open)
        services.memory_finding_sync(process_id=self.process_id, finding=finding)
        self._finding_open = finding is not None

    def follow_controls(self) -> None:
        from perf.memory import selectors, services
        from perf.models import MemoryProcess

        if self.process_id is not None and not MemoryProcess.objects.filter(pk=self.process_id).exists():
            # Its row was removed (an operator, a wiped store): register again at once.
            self.process_id = None
            self._sample_now = True
            return
        control = selectors.profiler_control()
        window_open = control.tracemalloc_open
        if window_open and not self.profiler.tracing:
            self.profiler.tracemalloc_start(control.frames)
            logger.info("memory sampler (pid %s): tracemalloc window opened", os.getpid())
        elif not window_open and self.profiler.owns_tracing and not self.config.tracemalloc:
            self.profiler.tracemalloc_stop()
            logger.info("memory sampler (pid %s): tracemalloc window closed", os.getpid())
        requested = control.gc_requested_at
        # Requests made before this worker started are not its to answer.
        if requested is not None and self.process_id is not None and requested > self._handled_gc_request:
            self._handled_gc_request = requested
            result = self.profiler.collect_garbage()
            services.memory_gc_result_record(process_id=self.process_id, result=result)


_sampler: Sampler | None = None
_DISPATCH_UID = "perf.memory.sampler"


def _on_request_finished(sender: Any, **kwargs: Any) -> None:
    sampler = _sampler
    if sampler is not None:
        sampler.on_request_finished()


def start_worker_sampler(role: str = "worker") -> Sampler | None:
    """Sample this process from now on, at the end of its requests (gunicorn's
    post_worker_init); None when PROFILER['sampler'] is off."""
    global _sampler
    config = ProfilerConfig.from_settings()
    if not config.sampler:
        return None
    if _sampler is None:
        _sampler = Sampler(config, role=role)
        request_finished.connect(_on_request_finished, dispatch_uid=_DISPATCH_UID)
    return _sampler


def worker_sampler() -> Sampler | None:
    return _sampler


def stop_worker_sampler() -> None:
    """The worker is exiting: stop sampling and mark its process ended (gunicorn's worker_exit)."""
    global _sampler
    sampler, _sampler = _sampler, None
    request_finished.disconnect(dispatch_uid=_DISPATCH_UID)
    if sampler is None:
        return
    sampler.close()
    if sampler.process_id is not None:
        from django.db import DatabaseError

        from perf.memory.services import memory_process_end

        try:
            memory_process_end(process_id=sampler.process_id)
        except DatabaseError as exc:
            logger.warning("memory sampler (pid %s): could not mark the process ended: %s", os.getpid(), exc)
