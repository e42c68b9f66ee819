"""The memory profiler's store: processes, their snapshots, open leak findings, and the
operator's switches (the tracemalloc window, a garbage collection request).

Bounded: PROFILER['max_snapshots'] per process (older ones are pruned on write) and
PROFILER['max_processes'] processes (the longest-gone ones make room first).
"""

from __future__ import annotations

from datetime import datetime

from django.core import checks
from django.db import models
from django.db.models import Q
from django.utils import timezone


class MemoryProcess(models.Model):
    """A process being measured. A pid alone is reused by the kernel; with its start time it is not."""

    ROLE_CHOICES = [("worker", "gunicorn worker"), ("watched", "watched by profilememory")]

    host = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(help_text="When the process started (from the kernel).")
    role = models.CharField(max_length=16, choices=ROLE_CHOICES, default="worker")
    label = models.CharField(max_length=200, blank=True, help_text="The process name (never its command line).")
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now, db_index=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Seen gone by the profiler.")
    last_gc = models.JSONField(null=True, blank=True, help_text="What the last requested collection freed.")

    class Meta:
        ordering = ["-last_seen_at"]
        verbose_name_plural = "memory processes"
        constraints = [models.UniqueConstraint(fields=["host", "pid", "started_at"], name="perf_memproc_identity")]

    def __str__(self) -> str:
        return f"{self.host} pid {self.pid} ({self.role})"


class MemorySnapshot(models.Model):
    """One process's memory at one moment; sizes in bytes, None when not measured."""

    process = models.ForeignKey(MemoryProcess, on_delete=models.CASCADE, related_name="snapshots")
    taken_at = models.DateTimeField()
    rss = models.BigIntegerField()
    uss = models.BigIntegerField(null=True, blank=True)
    heap_current = models.BigIntegerField(null=True, blank=True, help_text="Traced by tracemalloc.")
    heap_peak = models.BigIntegerField(null=True, blank=True)
    gc = models.JSONField(default=dict, blank=True, help_text="counts, collections, collected per generation")
    object_total = models.BigIntegerField(null=True, blank=True)
    types = models.JSONField(null=True, blank=True, help_text="Object counts of the most common types.")
    sites = models.JSONField(null=True, blank=True, help_text="Top tracemalloc allocation sites.")
    site_growth = models.JSONField(null=True, blank=True, help_text="Growth since the window opened.")

    class Meta:
        ordering = ["process", "taken_at"]
        indexes = [models.Index(fields=["process", "-taken_at"], name="perf_memsnap_proc_time")]
        permissions = [("control_profiler", "Can open the tracemalloc window and request garbage collection")]

    def __str__(self) -> str:
        return f"{self.process} at {self.taken_at:%H:%M:%S}: {self.rss / 1048576:.1f} MB"


class MemoryFinding(models.Model):
    """A leak finding: open while the trend holds, closed when it stops or the process ends."""

    SEVERITY_CHOICES = [("low", "low"), ("medium", "medium"), ("high", "high"), ("critical", "critical")]
    SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3, "critical": 4}

    process = models.ForeignKey(MemoryProcess, on_delete=models.CASCADE, related_name="findings")
    severity = models.CharField(max_length=10, choices=SEVERITY_CHOICES)
    rank = models.PositiveSmallIntegerField(help_text="1 low … 4 critical, for ordering.")
    title = models.CharField(max_length=300)
    slope_mb_per_hour = models.FloatField()
    r2 = models.FloatField()
    evidence = models.JSONField(default=dict)
    recommendations = models.JSONField(default=list)
    opened_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["-rank", "-updated_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["process"], condition=Q(closed_at__isnull=True), name="perf_memfinding_one_open"
            )
        ]

    def __str__(self) -> str:
        return f"{self.severity}: {self.title}"


class ProfilerControl(models.Model):
    """The one row of switches every worker polls."""

    tracemalloc_until = models.DateTimeField(null=True, blank=True)
    frames = models.PositiveSmallIntegerField(default=1)
    opened_by = models.CharField(max_length=150, blank=True)
    gc_requested_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "profiler control"

    def __str__(self) -> str:
        return "tracemalloc window open" if self.tracemalloc_open else "tracemalloc window closed"

    @property
    def tracemalloc_open(self) -> bool:
        return self.tracemalloc_until is not None and self.tracemalloc_until > timezone.now()

    @property
    def minutes_left(self) -> float:
        if not self.tracemalloc_open:
            return 0.0
        until: datetime = self.tracemalloc_until  # type: ignore[assignment]
        return round((until - timezone.now()).total_seconds() / 60, 1)


@checks.register()
def check_profiler_settings(app_configs: object = None, **kwargs: object) -> list[checks.CheckMessage]:
    """A bad PROFILER value stops `manage.py check` (and `make test`), not a request later."""
    from django.core.exceptions import ImproperlyConfigured

    from perf.memory.profiler import ProfilerConfig

    try:
        ProfilerConfig.from_settings()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="See the memory profiler section of README.md.", id="perf.E001")]
    return []
