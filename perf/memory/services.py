"""Writes of the memory profiler: processes, snapshots, findings and the operator's switches."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from perf.cache import invalidate_on_commit
from perf.memory.leaks import Finding
from perf.memory.profiler import ProfilerConfig, Snapshot, process_identity
from perf.models import MemoryFinding, MemoryProcess, MemorySnapshot, ProfilerControl
from vpnadmin.audit import audit_record

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_WINDOW_MINUTES = 240
MAX_FRAMES = 25


class SnapshotStoreFull(Exception):
    """Every slot of the bounded store is held by a process that is still measured."""


def stale_before(config: ProfilerConfig) -> datetime:
    """Processes not seen since then are gone (or no longer sampled)."""
    return timezone.now() - timedelta(seconds=max(3 * config.interval_s, 120))


def memory_process_register(
    *, role: str, config: ProfilerConfig, pid: int | None = None, identity: tuple[str, int, datetime, str] | None = None
) -> MemoryProcess:
    """The store's row for a process (this one by default), making room in the bounded store."""
    host, pid, started_at, label = identity or process_identity(pid)
    now = timezone.now()
    with transaction.atomic():
        existing = MemoryProcess.objects.filter(host=host, pid=pid, started_at=started_at).first()
        if existing is not None:
            MemoryProcess.objects.filter(pk=existing.pk).update(last_seen_at=now, ended_at=None)
            return existing
        _make_room(config)
        try:
            with transaction.atomic():
                return MemoryProcess.objects.create(
                    host=host,
                    pid=pid,
                    started_at=started_at,
                    role=role,
                    label=label,
                    first_seen_at=now,
                    last_seen_at=now,
                )
        except IntegrityError:  # another thread registered it a moment ago
            return MemoryProcess.objects.get(host=host, pid=pid, started_at=started_at)


def _make_room(config: ProfilerConfig) -> None:
    held = MemoryProcess.objects.count()
    if held < config.max_processes:
        return
    excess = held - config.max_processes + 1
    gone = list(
        MemoryProcess.objects.filter(Q(ended_at__isnull=False) | Q(last_seen_at__lt=stale_before(config)))
        .order_by("last_seen_at")
        .values_list("pk", flat=True)[:excess]
    )
    MemoryProcess.objects.filter(pk__in=gone).delete()
    if len(gone) < excess:
        raise SnapshotStoreFull(
            f"the snapshot store is full: {held} processes are measured now and PROFILER['max_processes'] "
            f"is {config.max_processes}; raise it or watch fewer processes"
        )


def memory_snapshot_record(*, process_id: int, snapshot: Snapshot, config: ProfilerConfig) -> MemorySnapshot:
    """Store one snapshot and keep at most `max_snapshots` of this process's."""
    with transaction.atomic():
        row = MemorySnapshot.objects.create(
            process_id=process_id,
            taken_at=snapshot.taken_at,
            rss=snapshot.rss,
            uss=snapshot.uss,
            heap_current=snapshot.heap_current,
            heap_peak=snapshot.heap_peak,
            gc={
                "counts": snapshot.gc_counts,
                "collections": snapshot.gc_collections,
                "collected": snapshot.gc_collected,
            },
            object_total=snapshot.object_total,
            types=snapshot.types,
            sites=snapshot.sites,
            site_growth=snapshot.site_growth,
        )
        MemoryProcess.objects.filter(pk=process_id).update(last_seen_at=timezone.now(), ended_at=None)
        oldest_kept = (
            MemorySnapshot.objects.filter(process_id=process_id)
            .order_by("-taken_at", "-pk")
            .values_list("taken_at", flat=True)[config.max_snapshots - 1 : config.max_snapshots]
        )
        cutoff = list(oldest_kept)
        if cutoff:
            MemorySnapshot.objects.filter(process_id=process_id, taken_at__lt=cutoff[0]).delete()
    return row


def memory_finding_sync(*, process_id: int, finding: Finding | None) -> MemoryFinding | None:
    """Open, update or close the process's finding to match the latest detection."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            MemoryFinding.objects.select_for_update().filter(process_id=process_id, closed_at__isnull=True).first()
        )
        if (current is None) != (finding is None) or (current and finding and current.severity != finding.severity):
            # Opened, closed or re-graded: /healthz's cached memory verdict is out of date.
            invalidate_on_commit(["memory"])
        if finding is None:
            if current is not None:
                current.closed_at = now
                current.save(update_fields=["closed_at"])
            return None
        values = {
            "severity": finding.severity,
            "rank": MemoryFinding.SEVERITY_RANK[finding.severity],
            "title": finding.title[:300],
            "slope_mb_per_hour": finding.slope_mb_per_hour,
            "r2": finding.r2,
            "evidence": finding.evidence,
            "recommendations": finding.recommendations,
            "updated_at": now,
        }
        if current is None:
            return MemoryFinding.objects.create(process_id=process_id, opened_at=now, **values)
        for name, value in values.items():
            setattr(current, name, value)
        current.save(update_fields=list(values))
        return current


def memory_process_end(*, process_id: int) -> None:
    """The process is gone: close its finding, keep its history until the store needs room."""
    now = timezone.now()
    with transaction.atomic():
        MemoryProcess.objects.filter(pk=process_id, ended_at__isnull=True).update(ended_at=now)
        if MemoryFinding.objects.filter(process_id=process_id, closed_at__isnull=True).update(closed_at=now):
            invalidate_on_commit(["memory"])


def _control_for_update() -> ProfilerControl:
    control, _ = ProfilerControl.objects.select_for_update().get_or_create(pk=1)
    return control


def memory_tracemalloc_window_open(*, actor: User | None, minutes: int, frames: int = 1) -> ProfilerControl:
    """Every worker starts tracemalloc at its next poll and stops it after `minutes`."""
    if not 1 <= minutes <= MAX_WINDOW_MINUTES:
        raise ValueError(f"the window lasts 1 to {MAX_WINDOW_MINUTES} minutes, got {minutes}")
    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be 1 to {MAX_FRAMES}, got {frames}")
    with transaction.atomic():
        control = _control_for_update()
        control.tracemalloc_until = timezone.now() + timedelta(minutes=minutes)
        control.frames = frames
        control.opened_by = actor.get_username() if actor is not None else "system"
        control.updated_at = timezone.now()
        control.save()
        audit_record(
            actor=actor,
            action="memory_tracemalloc_open",
            target="perf.ProfilerControl",
            count=1,
            detail={"minutes": minutes, "frames": frames},
        )
    return control


def memory_tracemalloc_window_close(*, actor: User | None) -> ProfilerControl:
    with transaction.atomic():
        control = _control_for_update()
        was_open = control.tracemalloc_open
        control.tracemalloc_until = None
        control.updated_at = timezone.now()
        control.save()
        audit_record(
            actor=actor,
            action="memory_tracemalloc_close",
            target="perf.ProfilerControl",
            count=1 if was_open else 0,
        )
    return control


def memory_garbage_collect(*, actor: User | None) -> dict[str, Any]:
    """Collect in this process now and ask every sampled worker to collect at its next poll."""
    from perf.memory.profiler import MemoryProfiler
    from perf.memory.sampler import worker_sampler

    sampler = worker_sampler()
    profiler = sampler.profiler if sampler is not None else MemoryProfiler()
    result = profiler.collect_garbage()
    with transaction.atomic():
        control = _control_for_update()
        control.gc_requested_at = timezone.now()
        control.updated_at = timezone.now()
        control.save(update_fields=["gc_requested_at", "updated_at"])
        audit_record(
            actor=actor,
            action="memory_gc_collect",
            target="perf.ProfilerControl",
            count=1,
            detail={"pid": result["pid"], "unreachable": result["unreachable"]},
        )
    return result


def memory_gc_result_record(*, process_id: int, result: dict[str, Any]) -> None:
    MemoryProcess.objects.filter(pk=process_id).update(last_gc=result)
