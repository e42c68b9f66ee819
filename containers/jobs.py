"""Batch jobs: a BatchJob row the pages read, run by a queue worker, resumable.

The request records the job and defers its queue task in the same transaction (the
task exists only if the job does). A worker then runs the servers that have no result
yet, writing each server's result, its new state and the job's counts in one small
transaction as the item lands. A worker killed half-way (kill -9, OOM, deploy) leaves a
job whose next attempt — procrastinate's retry, or the stalled-job recovery in
vpnadmin.queue — runs only the rest; the job is closed, with its one audit entry, in
the transaction that marks it finished, so a batch is audited exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.contrib.auth.models import AnonymousUser, User
from django.db import IntegrityError, transaction
from django.db.models import Count, F
from django.db.models.functions import Coalesce
from django.utils import timezone

from containers import runner
from containers.actions import Target
from containers.models import BatchJob, BatchJobResult, JobStatus, Outcome, VpnServer
from perf.cache import invalidate_on_commit
from vpnadmin.audit import audit_record

logger = logging.getLogger(__name__)


class JobStopped(Exception):
    """The worker is stopping: the job ran part of its servers and resumes on its next attempt."""


_COUNTER: dict[str, str] = {Outcome.DONE: "done", Outcome.UNCHANGED: "unchanged", Outcome.FAILED: "failed"}


def job_submit(*, action: str, server_ids: list[int], actor: User | AnonymousUser | None) -> BatchJob:
    """Record a job and queue it; the queue row commits with the job row or not at all."""
    from containers.tasks import run_batch_job

    with transaction.atomic():
        job = BatchJob.objects.create(
            action=action,
            created_by=actor if isinstance(actor, User) else None,
            server_ids=server_ids,
            total=len(server_ids),
        )
        # procrastinate's Django connector defers on this connection, inside this transaction.
        run_batch_job.configure(lock=f"containers.batch-job:{job.pk}").defer(job_id=job.pk)
    return job


def _record_item(job: BatchJob, target: Target, item: runner.Item) -> None:
    """One server's result, its new state and the job's counts, together."""
    result = item.result
    if item.skipped:
        return
    try:
        with transaction.atomic():
            BatchJobResult.objects.create(
                job_id=job.pk,
                server_id=result.server_id,
                server_name=result.server_name,
                host_name=result.host_name,
                outcome=result.outcome,
                message=result.message[:255],
            )
            runner.write_server(job.action, target, item)
            counter = _COUNTER[result.outcome]
            BatchJob.objects.filter(pk=job.pk).update(**{counter: F(counter) + 1}, heartbeat_at=timezone.now())
            invalidate_on_commit([f"server:{result.server_id}", "servers"])
    except IntegrityError:
        # Recorded already by an earlier attempt that died after its commit (keep that one),
        # or the server was deleted meanwhile (the job counts it as failed when it closes).
        logger.info("batch job %s: result for server %s not recorded twice", job.pk, result.server_id)


def job_run(job_id: int, *, should_stop: Callable[[], bool] | None = None) -> BatchJob | None:
    """Run what is left of one job: the servers with no result yet. Safe to call again.

    When `should_stop()` turns true (the worker is shutting down), the servers already
    under way finish and are recorded, the rest wait, and JobStopped is raised.
    """
    job = BatchJob.objects.select_related("created_by").filter(pk=job_id).first()
    if job is None or not job.is_active:
        return job
    now = timezone.now()
    BatchJob.objects.filter(pk=job_id).update(
        status=JobStatus.RUNNING, started_at=Coalesce(F("started_at"), now), heartbeat_at=now
    )
    recorded = BatchJobResult.objects.filter(job_id=job_id, server__isnull=False).values_list("server_id", flat=True)
    remaining = VpnServer.objects.filter(pk__in=job.server_ids).exclude(pk__in=list(recorded))
    targets = runner.targets_of(remaining)
    finished, down = runner.run(
        targets,
        runner.action_work(job.action),
        per_host_limit=lambda host: host.max_concurrent,
        on_item=lambda target, item: _record_item(job, target, item),
        should_stop=should_stop,
    )
    with transaction.atomic():
        runner.record_hosts({t.host.pk: t.host for t in targets}.values(), down)
        skipped = sum(1 for _, item in finished if item.skipped)
        if skipped:
            raise JobStopped(f"{skipped} servers left for the next attempt")
        _finish(job_id)
    return BatchJob.objects.filter(pk=job_id).first()


def _finish(job_id: int, *, crashed: str = "") -> None:
    """Close the job and write its one audit entry, once, however many attempts ran.

    Runs in the caller's transaction, holding the job's row: of two attempts closing the
    same job (a retry racing a slow original), the second finds it closed.
    """
    job = BatchJob.objects.select_for_update(of=("self",)).select_related("created_by").get(pk=job_id)
    if not job.is_active:
        return
    counts = dict(
        BatchJobResult.objects.filter(job_id=job_id).values_list("outcome").annotate(n=Count("id")).order_by()
    )
    done, unchanged = counts.get(Outcome.DONE, 0), counts.get(Outcome.UNCHANGED, 0)
    failed = counts.get(Outcome.FAILED, 0)
    if crashed:
        status, error = JobStatus.CRASHED, crashed
    else:
        # Servers deleted before their turn have no result; they count as failed.
        missing = max(job.total - done - unchanged - failed, 0)
        failed += missing
        status, error = JobStatus.FINISHED, f"{missing} servers were deleted before the job ran" if missing else ""
    BatchJob.objects.filter(pk=job_id).update(
        status=status, finished_at=timezone.now(), done=done, unchanged=unchanged, failed=failed, error=error[:255]
    )
    audit_record(
        actor=job.created_by,
        action=f"servers_{job.action}",
        target="containers.VpnServer",
        count=job.total,
        object_ids=list(job.server_ids),
        detail={"done": done, "unchanged": unchanged, "failed": failed, "job": job.pk, "status": status},
    )


def job_crashed(job_id: int, reason: str) -> None:
    """The last attempt failed: close the job as crashed, with what it did so far audited."""
    with transaction.atomic():
        _finish(job_id, crashed=reason)
