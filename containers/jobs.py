"""Background batch jobs: a database row with progress counts, run in a thread of the web worker.

The thread has its own database connection (Django's are per thread) and closes it at
the end; each finished server updates its row, its result and the job's counts, so the
page polling the job sees progress as it happens.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F, Q
from django.utils import timezone

from containers.models import BatchJob, BatchJobResult, JobStatus, Outcome, VpnServer

logger = logging.getLogger(__name__)

_threads: dict[int, threading.Thread] = {}
_threads_lock = threading.Lock()

_COUNTER = {Outcome.DONE: "done", Outcome.UNCHANGED: "unchanged", Outcome.FAILED: "failed"}


def job_submit(*, action: str, server_ids: list[int], actor: Any | None) -> BatchJob:
    """Record a job and start it once the row is committed."""
    with transaction.atomic():
        job = BatchJob.objects.create(
            action=action,
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
            server_ids=server_ids,
            total=len(server_ids),
        )
        transaction.on_commit(lambda: _start_thread(job.pk))
    return job


def _start_thread(job_id: int) -> None:
    thread = threading.Thread(target=job_run, args=(job_id,), name=f"batch-job-{job_id}", daemon=True)
    with _threads_lock:
        _threads[job_id] = thread
    thread.start()


def jobs_join(timeout: float = 120.0) -> None:
    """Wait for every job thread of this process (tests, commands, shutdown)."""
    with _threads_lock:
        threads = list(_threads.values())
    for thread in threads:
        thread.join(timeout)
    with _threads_lock:
        for job_id, thread in list(_threads.items()):
            if not thread.is_alive():
                _threads.pop(job_id, None)


def job_run(job_id: int) -> None:
    """Run one job to its end in this thread."""
    from containers.services import servers_batch_now

    try:
        job = BatchJob.objects.select_related("created_by").get(pk=job_id)
        now = timezone.now()
        BatchJob.objects.filter(pk=job_id).update(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now)
        servers = VpnServer.objects.filter(pk__in=job.server_ids).select_related("host")
        found = servers.count()

        def on_item(target: Any, item: Any) -> None:
            from containers.services import _write_server

            result = item.result
            with transaction.atomic():
                _write_server(job.action, target, item)
                BatchJobResult.objects.create(
                    job_id=job_id,
                    server_id=result.server_id,
                    server_name=result.server_name,
                    host_name=result.host_name,
                    outcome=result.outcome,
                    message=result.message[:255],
                )
                counter = _COUNTER[result.outcome]
                BatchJob.objects.filter(pk=job_id).update(**{counter: F(counter) + 1}, heartbeat_at=timezone.now())

        servers_batch_now(action=job.action, servers=servers, actor=job.created_by, on_item=on_item)
        missing = job.total - found
        BatchJob.objects.filter(pk=job_id).update(
            status=JobStatus.FINISHED,
            finished_at=timezone.now(),
            failed=F("failed") + missing,
            error=f"{missing} servers were deleted before the job ran" if missing else "",
        )
    except Exception as exc:
        logger.exception("batch job %s crashed", job_id)
        BatchJob.objects.filter(pk=job_id).update(
            status=JobStatus.CRASHED, finished_at=timezone.now(), error=f"{type(exc).__name__}: {exc}"[:255]
        )
    finally:
        connections.close_all()


def jobs_expire_abandoned() -> int:
    """Mark as crashed the jobs whose thread died with its worker (restart, kill, deploy).

    A live job beats on every finished server; the longest item is a few engine calls,
    each bounded by DOCKER_TIMEOUT, so a silence of JOB_STALE_AFTER means no thread is left.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.CONTAINERS_JOB_STALE_AFTER)
    return BatchJob.objects.filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff),
        status__in=[JobStatus.QUEUED, JobStatus.RUNNING],
    ).update(
        status=JobStatus.CRASHED,
        finished_at=timezone.now(),
        error="the worker running this job stopped (restarted or killed); the remaining servers were not processed",
    )
