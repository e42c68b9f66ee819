"""The worker sampler runs no thread: the end of a request samples when one is due."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings

from perf.memory.profiler import ProfilerConfig
from perf.memory.sampler import Sampler, start_worker_sampler, stop_worker_sampler, worker_sampler
from perf.models import MemoryProcess, MemorySnapshot


@pytest.fixture
def started_sampler() -> Iterator[Sampler]:
    with override_settings(PROFILER={"interval_s": 3600, "types_every": 1}):
        sampler = start_worker_sampler()
    assert sampler is not None
    yield sampler
    stop_worker_sampler()


def test_the_sampler_starts_no_thread_and_samples_at_the_end_of_a_request(owner_client: Client) -> None:
    threads_before = {thread.ident for thread in threading.enumerate()}
    with override_settings(PROFILER={"interval_s": 3600, "types_every": 1}):
        sampler = start_worker_sampler()
    try:
        assert sampler is not None and worker_sampler() is sampler
        assert {thread.ident for thread in threading.enumerate()} == threads_before
        assert not MemorySnapshot.objects.exists()
        assert owner_client.get("/perf/").status_code == 200
        assert MemorySnapshot.objects.filter(process_id=sampler.process_id).count() == 1
        # The next sample is an hour away: more requests do not sample again.
        owner_client.get("/perf/")
        owner_client.get("/perf/")
        assert MemorySnapshot.objects.count() == 1
        assert {thread.ident for thread in threading.enumerate()} == threads_before
    finally:
        stop_worker_sampler()
    assert worker_sampler() is None
    assert sampler.process_id is not None
    assert MemoryProcess.objects.get(pk=sampler.process_id).ended_at is not None
    # Stopped: requests no longer sample.
    owner_client.get("/perf/")
    assert MemorySnapshot.objects.count() == 1


@pytest.mark.django_db
def test_a_sample_is_due_once_per_interval_and_the_controls_once_per_poll() -> None:
    sampler = Sampler(ProfilerConfig(interval_s=30, control_poll_s=5))
    sampler.run_due(1000.0)
    assert MemorySnapshot.objects.count() == 1
    sampler.run_due(1010.0)
    sampler.run_due(1029.9)
    assert MemorySnapshot.objects.count() == 1
    sampler.run_due(1030.0)
    assert MemorySnapshot.objects.count() == 2
    assert sampler._next_poll == pytest.approx(1034.9)  # polled at 1029.9, 5 s before the next


@pytest.mark.django_db
def test_a_request_finishing_while_another_thread_samples_does_not_wait(started_sampler: Sampler) -> None:
    with started_sampler._busy:
        started_sampler.on_request_finished()
    assert not MemorySnapshot.objects.exists()


def test_a_turned_off_sampler_is_not_hooked_to_requests(owner_client: Client) -> None:
    with override_settings(PROFILER={"sampler": False}):
        assert start_worker_sampler() is None
    owner_client.get("/perf/")
    assert worker_sampler() is None
    assert not MemorySnapshot.objects.exists()
