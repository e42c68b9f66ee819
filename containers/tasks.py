"""Queue tasks of the containers app (run by `manage.py procrastinate worker`).

- `run_batch_job`: one BatchJob, resumable (containers.jobs).
- `collect_stats`: a stats pass over every running server, every CONTAINERS_STATS_INTERVAL.
- `sync_servers`: reconcile the database with the engines, every CONTAINERS_SYNC_INTERVAL.

Periodic tasks are deferred once per tick across all workers (procrastinate keeps one
row per task and tick), and each carries a `lock` (never two runs at once) and a
`queueing_lock` (at most one waiting): a pass that overruns its interval delays the next
one instead of running beside it, and missed ticks do not pile up.

Add a task: a function here with `@app.task(name="containers.<verb>", queue=...)`,
calling a service; nothing else to register.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from procrastinate import JobContext, RetryStrategy
from procrastinate.contrib.django import app
from procrastinate.exceptions import AlreadyEnqueued, JobAborted
from procrastinate.job_context import AbortReason

from containers import jobs, sync
from containers.collector import collect_stats_once
from vpnadmin.errors import first_line
from vpnadmin.queue import periodic_task

logger = logging.getLogger(__name__)

# A failing attempt (database restarting, a bug) is retried this many times, then the
# job is closed as crashed with the reason.
BATCH_JOB_RETRIES = 3


@app.task(
    name="containers.run_batch_job",
    queue="containers",
    pass_context=True,
    retry=RetryStrategy(max_attempts=BATCH_JOB_RETRIES, wait=5),
)
def run_batch_job(context: JobContext, job_id: int) -> None:
    try:
        # A stopping worker (SIGTERM, past QUEUE_SHUTDOWN_TIMEOUT) asks its jobs to abort: the
        # batch stops between servers and its retry resumes on another worker.
        jobs.job_run(job_id, should_stop=context.should_abort)
    except jobs.JobStopped as exc:
        if context.abort_reason() != AbortReason.SHUTDOWN or context.job.attempts >= BATCH_JOB_RETRIES:
            # Cancelled by hand, or no attempt left: nothing will resume it.
            jobs.job_crashed(job_id, f"stopped before the end: {exc}")
        raise JobAborted(str(exc)) from exc
    except Exception as exc:
        if context.job.attempts >= BATCH_JOB_RETRIES:
            jobs.job_crashed(job_id, first_line(exc, limit=255))
        raise


@periodic_task("containers.collect_stats", every_seconds=settings.CONTAINERS_STATS_INTERVAL, periodic_id="stats")
def collect_stats(timestamp: int) -> str:
    report = collect_stats_once()
    return f"{report.sampled} sampled, {report.not_running} not running, {report.failed} failed"


@periodic_task("containers.sync_servers", every_seconds=settings.CONTAINERS_SYNC_INTERVAL, periodic_id="sync")
def sync_servers(timestamp: int) -> str:
    # What runs changes behind the app's back (a container removed or started by hand).
    from containers.services import servers_sync

    reports = servers_sync()
    return ", ".join(f"{r.host}: {'ok' if r.reachable else r.error}" for r in reports) or "no hosts"


# --- the VPN data plane (containers/sync.py) -----------------------------------------------


@app.task(
    name="containers.apply_server",
    queue="vpn",
    retry=RetryStrategy(
        max_attempts=settings.VPN_APPLY_RETRIES, exponential_wait=2, retry_exceptions={sync.EngineUnavailable}
    ),
)
def apply_server(server_id: int) -> str:
    outcome = sync.servers_apply(server_id=server_id)
    return f"{outcome.state}{' (changed)' if outcome.changed else ''}: {outcome.message}"


def defer_server_applies(*, server_ids: Iterable[int]) -> int:
    """One apply per server: a request while one is already waiting joins it (queueing lock),
    and two never run at once on one server (lock). Returns how many were deferred."""
    deferred = 0
    for pk in server_ids:
        key = f"containers.apply_server:{pk}"
        try:
            # A savepoint: the queueing lock refuses by a unique violation, which would
            # otherwise abort a caller's open transaction along with this one insert.
            with transaction.atomic():
                apply_server.configure(
                    lock=key,
                    queueing_lock=key,
                    schedule_at=timezone.now() + timedelta(seconds=settings.VPN_APPLY_DEBOUNCE),
                ).defer(server_id=pk)
        except AlreadyEnqueued:
            continue  # the waiting apply reads the users as they are when it runs
        deferred += 1
    return deferred


@periodic_task("containers.poll_traffic", every_seconds=settings.VPN_POLL_INTERVAL, periodic_id="vpn-poll")
def poll_traffic(timestamp: int) -> str:
    result = sync.servers_poll_traffic()
    failed = f", {len(result.errors)} failed" if result.errors else ""
    return f"{result.servers} servers, {result.users} users, {result.bytes} bytes{failed}"


@periodic_task("containers.converge_servers", every_seconds=settings.VPN_CONVERGE_INTERVAL, periodic_id="vpn-converge")
def converge_servers(timestamp: int) -> str:
    # Servers left pending: an engine that was down, a container that started since.
    return f"{defer_server_applies(server_ids=sync.servers_needing_apply())} applies deferred"


@periodic_task("containers.reset_traffic", every_seconds=settings.VPN_RESET_INTERVAL, periodic_id="vpn-reset")
def reset_traffic(timestamp: int) -> str:
    return f"{sync.users_reset_periodic()} users started a new period"
