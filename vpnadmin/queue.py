"""The task queue's project-level glue: cron strings from intervals, stalled-job recovery,
and whether a worker is alive (for the dashboard and the health checks).

The queue is procrastinate on the app's own PostgreSQL; apps put their tasks in
`<app>/tasks.py` (discovered by procrastinate's Django app). Workers run
`manage.py procrastinate worker` (options in settings.PROCRASTINATE_WORKER_DEFAULTS).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone
from procrastinate import JobContext, exceptions
from procrastinate.contrib.django import app
from procrastinate.contrib.django.models import ProcrastinateWorker
from procrastinate.jobs import Status

from vpnadmin.errors import first_line

logger = logging.getLogger(__name__)


def every(seconds: float) -> str:
    """A procrastinate cron string for "every `seconds`" (a sixth column holds seconds).

    Below a minute the period is rounded to whole seconds; from a minute up, to whole
    minutes. Intervals that do not divide the minute or the hour restart at its top.
    """
    if seconds < 60:
        return f"* * * * * */{max(1, round(seconds))}"
    minutes = max(1, math.floor(seconds / 60))
    if minutes < 60:
        return f"*/{minutes} * * * *"
    return f"0 */{max(1, minutes // 60)} * * *"


def periodic_task(name: str, *, every_seconds: float, periodic_id: str) -> Callable[[Callable[..., Any]], Any]:
    """A task run once per `every_seconds` across all workers (0 turns it off).

    Its lock keeps two runs from overlapping (one that overruns its interval is not
    started twice); its queueing lock keeps missed ticks from piling up behind it.
    """

    def register(function: Callable[..., Any]) -> Any:
        task = app.task(name=name, queue="periodic", lock=name, queueing_lock=name)(function)
        if every_seconds > 0:
            app.periodic(cron=every(every_seconds), periodic_id=periodic_id)(task)
        return task

    return register


@app.periodic(cron=every(settings.QUEUE_STALLED_AFTER / 2), periodic_id="stalled")
@app.task(
    name="vpnadmin.retry_stalled_jobs",
    queue="periodic",
    pass_context=True,
    lock="vpnadmin.retry_stalled_jobs",
    queueing_lock="vpnadmin.retry_stalled_jobs",
)
async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """Put back in the queue the jobs of workers that stopped beating (kill -9, OOM, lost host).

    Their tasks resume where they stopped (batch jobs skip the servers with a result).
    """
    manager = context.app.job_manager
    stalled = await manager.get_stalled_jobs(seconds_since_heartbeat=settings.QUEUE_STALLED_AFTER)
    count = 0
    for job in stalled:
        try:
            await manager.retry_job(job)
        except exceptions.UniqueViolation:
            # A later run of the same periodic task already waits under its queueing lock:
            # this one is not needed; ending it frees the lock the waiting run needs.
            await manager.finish_job(job, status=Status.FAILED, delete_job=False)
            logger.warning("ended job %s (%s): its worker died and a later run waits", job.id, job.task_name)
            continue
        count += 1
        logger.warning("retrying job %s (%s): its worker stopped beating", job.id, job.task_name)
    return count


@dataclass(frozen=True)
class WorkerStatus:
    alive: int
    last_heartbeat: datetime | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.alive > 0


def worker_status() -> WorkerStatus:
    """How many queue workers beat within QUEUE_STALLED_AFTER seconds (procrastinate's
    heartbeat table): one indexed read, no write."""
    cutoff = timezone.now() - timedelta(seconds=settings.QUEUE_STALLED_AFTER)
    try:
        latest = ProcrastinateWorker.objects.order_by("-last_heartbeat").values_list("last_heartbeat", flat=True)
        beats = list(latest[:100])
    except DatabaseError as exc:
        return WorkerStatus(0, None, f"not checked: {first_line(exc)}")
    alive = sum(1 for beat in beats if beat >= cutoff)
    last = beats[0] if beats else None
    if alive:
        return WorkerStatus(alive, last, f"{alive} worker{'s' if alive != 1 else ''} alive")
    if last is None:
        return WorkerStatus(0, None, "no queue worker has run: start `manage.py procrastinate worker`")
    return WorkerStatus(0, last, f"no queue worker alive (last heartbeat {timezone.localtime(last):%Y-%m-%d %H:%M:%S})")


def worker_probe() -> str:
    """The health check's probe: raises when no worker is alive."""
    status = worker_status()
    if not status.ok:
        raise RuntimeError(status.detail)
    return status.detail
