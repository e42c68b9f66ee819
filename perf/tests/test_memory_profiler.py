"""The profiler's snapshots, its typed config, its store (bounded) and the worker sampler."""

from __future__ import annotations

import gc
import os
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from perf.memory import services as memory_services
from perf.memory.leaks import Finding
from perf.memory.profiler import MemoryProfiler, ProfilerConfig, Snapshot
from perf.memory.sampler import Sampler
from perf.models import MemoryFinding, MemoryProcess, MemorySnapshot

pytestmark = pytest.mark.django_db


def test_a_snapshot_holds_rss_uss_gc_figures_and_the_most_common_types() -> None:
    profiler = MemoryProfiler(ProfilerConfig(types_every=2, top_types=5, warmup_s=0))
    first = profiler.snapshot()
    second = profiler.snapshot()
    assert first.pid == os.getpid()
    assert first.rss > 10 * 1024 * 1024
    assert first.uss is not None and 0 < first.uss <= first.rss
    assert len(first.gc_counts) == 3 and len(first.gc_collections) == 3
    assert first.types is not None and len(first.types) == 5
    assert "dict" in first.types or "function" in first.types
    assert first.object_total is not None and first.object_total > 1000
    assert second.types is None  # counted every 2nd snapshot: the heap walk is not free
    assert first.heap_current is None  # no tracemalloc outside a window
    assert list(profiler.series) == [first, second]


def test_snapshots_of_a_process_still_starting_stay_out_of_the_trend() -> None:
    young = MemoryProfiler(ProfilerConfig(warmup_s=10**9))
    young.snapshot()
    assert list(young.series) == []


def test_opening_the_tracemalloc_window_starts_a_new_trend() -> None:
    profiler = MemoryProfiler(ProfilerConfig(warmup_s=0, types_every=100))
    profiler.snapshot()
    profiler.tracemalloc_start()
    try:
        assert list(profiler.series) == []  # tracemalloc's own memory is not a leak
        assert profiler.snapshot().heap_current is not None
    finally:
        profiler.tracemalloc_stop()
    assert list(profiler.series) == []


def test_uss_is_read_every_nth_snapshot_when_configured() -> None:
    profiler = MemoryProfiler(ProfilerConfig(uss_every=3, types_every=100))
    snaps = [profiler.snapshot() for _ in range(4)]
    assert [s.uss is not None for s in snaps] == [True, False, False, True]


def test_the_config_refuses_bad_values_with_the_key_named() -> None:
    with pytest.raises(ImproperlyConfigured, match="interval_s"):
        ProfilerConfig.from_mapping({"interval_s": 0})
    with pytest.raises(ImproperlyConfigured, match="interval_s"):
        ProfilerConfig.from_mapping({"interval_s": "soon"})
    with pytest.raises(ImproperlyConfigured, match="unknown keys: nonsense"):
        ProfilerConfig.from_mapping({"nonsense": 1})
    with pytest.raises(ImproperlyConfigured, match="sampler"):
        ProfilerConfig.from_mapping({"sampler": "yes"})
    with pytest.raises(ImproperlyConfigured, match="window"):
        ProfilerConfig.from_mapping({"window": 4, "min_snapshots": 8})
    with pytest.raises(ImproperlyConfigured, match="max_snapshots"):
        ProfilerConfig.from_mapping({"max_snapshots": 10, "window": 30})
    assert ProfilerConfig.from_mapping({"interval_s": "2.5"}).interval_s == 2.5


def test_garbage_collection_reports_what_it_freed() -> None:
    gc.collect()
    for _ in range(500):
        cycle: list[object] = []
        cycle.append(cycle)
    del cycle
    result = MemoryProfiler().collect_garbage()
    assert result["unreachable"] >= 500
    assert result["objects_before"] >= result["objects_after"]
    assert result["pid"] == os.getpid()


def _record(process_id: int, config: ProfilerConfig, count: int) -> None:
    profiler = MemoryProfiler(config)
    for _ in range(count):
        memory_services.memory_snapshot_record(process_id=process_id, snapshot=profiler.snapshot(), config=config)


def test_the_store_keeps_at_most_max_snapshots_per_process() -> None:
    config = ProfilerConfig(max_snapshots=10, window=8)
    process = memory_services.memory_process_register(role="worker", config=config)
    _record(process.pk, config, 4)
    first_four = list(MemorySnapshot.objects.filter(process=process).values_list("pk", flat=True))
    _record(process.pk, config, 10)
    kept = MemorySnapshot.objects.filter(process=process)
    assert kept.count() == 10
    assert not kept.filter(pk__in=first_four).exists()  # the oldest went first


def test_a_process_registers_once_by_pid_and_start_time() -> None:
    config = ProfilerConfig()
    first = memory_services.memory_process_register(role="worker", config=config)
    again = memory_services.memory_process_register(role="worker", config=config)
    assert first.pk == again.pk
    assert first.pid == os.getpid()


def test_a_full_store_makes_room_from_gone_processes_and_otherwise_says_it_is_full() -> None:
    config = ProfilerConfig(max_processes=2)
    now = timezone.now()
    gone = MemoryProcess.objects.create(
        host="h", pid=11, started_at=now, last_seen_at=now - timedelta(hours=2), ended_at=now - timedelta(hours=2)
    )
    MemoryProcess.objects.create(host="h", pid=12, started_at=now, last_seen_at=now)
    mine = memory_services.memory_process_register(role="worker", config=config)
    assert not MemoryProcess.objects.filter(pk=gone.pk).exists()  # the gone one made room
    assert MemoryProcess.objects.count() == 2
    MemoryProcess.objects.filter(pk=mine.pk).delete()
    MemoryProcess.objects.create(host="h", pid=13, started_at=now, last_seen_at=now)
    with pytest.raises(memory_services.SnapshotStoreFull, match=r"store is full: 2 processes .*max_processes"):
        memory_services.memory_process_register(role="worker", config=config)


def test_a_finding_opens_updates_and_closes_with_the_detection() -> None:
    config = ProfilerConfig()
    process = memory_services.memory_process_register(role="worker", config=config)
    finding = Finding(severity="medium", title="RSS grows", slope_mb_per_hour=50, r2=0.9)
    opened = memory_services.memory_finding_sync(process_id=process.pk, finding=finding)
    finding.severity = "critical"
    updated = memory_services.memory_finding_sync(process_id=process.pk, finding=finding)
    assert opened is not None and updated is not None and opened.pk == updated.pk
    assert MemoryFinding.objects.get(pk=opened.pk).severity == "critical"
    memory_services.memory_finding_sync(process_id=process.pk, finding=None)
    assert MemoryFinding.objects.get(pk=opened.pk).closed_at is not None


def test_the_sampler_records_snapshots_and_follows_the_tracemalloc_window(owner: User) -> None:
    sampler = Sampler(ProfilerConfig(types_every=1))
    sampler.sample_once()
    sampler.sample_once()
    assert sampler.process_id is not None
    row = MemoryProcess.objects.get(pk=sampler.process_id)
    assert row.pid == os.getpid() and row.role == "worker"
    assert row.snapshots.count() == 2
    assert row.snapshots.earliest("taken_at").types

    memory_services.memory_tracemalloc_window_open(actor=owner, minutes=5)
    sampler.follow_controls()
    try:
        assert sampler.profiler.tracing
        sampler.sample_once()
        latest = row.snapshots.latest("taken_at")
        assert latest.heap_current is not None and latest.sites
    finally:
        memory_services.memory_tracemalloc_window_close(actor=owner)
        sampler.follow_controls()
    assert not sampler.profiler.tracing


def test_a_requested_collection_runs_in_the_sampled_worker_and_is_recorded(owner: User) -> None:
    sampler = Sampler(ProfilerConfig())
    sampler.sample_once()
    result = memory_services.memory_garbage_collect(actor=owner)
    assert result["pid"] == os.getpid()
    sampler.follow_controls()
    assert sampler.process_id is not None
    row = MemoryProcess.objects.get(pk=sampler.process_id)
    assert row.last_gc is not None and "unreachable" in row.last_gc


def test_snapshots_serialise_to_json() -> None:
    snap = MemoryProfiler().snapshot()
    data = snap.as_json()
    assert isinstance(data["taken_at"], str) and data["rss"] == snap.rss
    assert isinstance(snap, Snapshot)


def test_a_worker_sampler_with_its_store_down_logs_once_and_keeps_sampling() -> None:
    import socket
    import subprocess
    import sys

    from conftest import REPO, child_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    script = (
        "import django; django.setup()\n"
        "from perf.memory.profiler import ProfilerConfig\n"
        "from perf.memory.sampler import Sampler\n"
        "sampler = Sampler(ProfilerConfig(warmup_s=0))\n"
        "for _ in range(3):\n"
        "    sampler._guarded(sampler.sample_once)\n"
        "print('snapshots kept in memory:', len(sampler.profiler.series))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=child_env(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{closed}/nowhere", DJANGO_SETTINGS_MODULE="vpnadmin.settings"
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("snapshot store unavailable: OperationalError") == 1
    assert "Traceback" not in result.stderr
    assert "snapshots kept in memory: 3" in result.stdout


def test_manage_py_check_names_a_bad_profiler_setting() -> None:
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError
    from django.test import override_settings

    with override_settings(PROFILER={"interval_s": 0}), pytest.raises(SystemCheckError, match="interval_s"):
        call_command("check")
