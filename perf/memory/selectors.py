"""Reads of the memory profiler's store, for the page, /metrics, /healthz and the command."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Count

from perf.memory.profiler import MB, ProfilerConfig
from perf.models import MemoryFinding, MemoryProcess, MemorySnapshot, ProfilerControl

CHART_POINTS = 120


def profiler_control() -> ProfilerControl:
    """The switches; an unsaved default row before an operator has touched them."""
    return ProfilerControl.objects.filter(pk=1).first() or ProfilerControl(pk=1)


@dataclass
class ProcessReport:
    process: MemoryProcess
    alive: bool
    snapshots: list[MemorySnapshot]
    stored: int
    finding: MemoryFinding | None
    latest: MemorySnapshot | None = None
    growing_types: list[dict[str, Any]] = field(default_factory=list)

    @property
    def latest_rss_mb(self) -> float | None:
        return self.latest.rss / MB if self.latest else None

    @property
    def latest_uss_mb(self) -> float | None:
        return self.latest.uss / MB if self.latest and self.latest.uss is not None else None

    @property
    def top_types(self) -> list[tuple[str, int]]:
        for snap in reversed(self.snapshots):
            if snap.types:
                # jsonb keeps keys in its own order: sort by count again.
                return sorted(snap.types.items(), key=lambda item: item[1], reverse=True)[:8]
        return []

    @property
    def top_sites(self) -> list[dict[str, Any]]:
        for snap in reversed(self.snapshots):
            if snap.site_growth:
                return snap.site_growth[:8]
            if snap.sites:
                return snap.sites[:8]
        return []

    @property
    def gc_collections(self) -> list[int]:
        return list(self.latest.gc.get("collections", [])) if self.latest else []


def memory_report(*, config: ProfilerConfig, stale_before: datetime, limit: int = 12) -> list[ProcessReport]:
    """The most recently seen processes, each with its last snapshots (oldest first) and open finding."""
    from perf.memory.leaks import growing_types
    from perf.memory.profiler import Snapshot

    processes = list(MemoryProcess.objects.annotate(stored=Count("snapshots")).order_by("-last_seen_at")[:limit])
    findings = {f.process_id: f for f in MemoryFinding.objects.filter(process__in=processes, closed_at__isnull=True)}
    reports = []
    for process in processes:
        snaps = list(MemorySnapshot.objects.filter(process=process).order_by("-taken_at")[:CHART_POINTS])[::-1]
        window = [
            Snapshot(taken_at=s.taken_at, pid=process.pid, rss=s.rss, types=s.types)
            for s in snaps[-config.window :]
            if s.types
        ]
        reports.append(
            ProcessReport(
                process=process,
                alive=process.ended_at is None and process.last_seen_at >= stale_before,
                snapshots=snaps,
                stored=process.stored,
                finding=findings.get(process.pk),
                latest=snaps[-1] if snaps else None,
                growing_types=growing_types(window),
            )
        )
    return reports


def open_findings(*, stale_before: datetime) -> list[MemoryFinding]:
    """Open findings of processes still being measured, the most severe first."""
    return list(
        MemoryFinding.objects.filter(
            closed_at__isnull=True, process__ended_at__isnull=True, process__last_seen_at__gte=stale_before
        ).select_related("process")
    )


def store_usage() -> dict[str, int]:
    return {"processes": MemoryProcess.objects.count(), "snapshots": MemorySnapshot.objects.count()}
