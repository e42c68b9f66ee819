"""Batches and periodic passes run by real queue workers (`manage.py procrastinate worker`).

Faults are the real thing: a worker killed with SIGKILL half-way through a batch, the
gunicorn workers that took the request killed, a stats pass slower than its interval.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
import requests
from django.contrib.auth.models import User
from django.test import Client

from conftest import LiveApp, QueueWorker, _test_database_url
from containers.models import BatchJob, BatchJobResult, DockerHost, JobStatus, VpnServer
from containers.services import servers_run_batch
from vpnadmin.models import AuditEntry
from vpnadmin.queue import worker_status

from .conftest import wait_for_job

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def _every_server_has_one_result(job: BatchJob, servers: list[VpnServer]) -> None:
    rows = list(BatchJobResult.objects.filter(job=job).values_list("server_id", flat=True))
    assert sorted(rows) == sorted(s.pk for s in servers)


def test_a_large_batch_runs_as_a_queue_job_with_progress_and_one_audit_entry(
    queue_worker: QueueWorker, local_host: DockerHost, make_server: Callable[..., VpnServer], owner: User
) -> None:
    servers = [make_server(local_host) for _ in range(7)]
    outcome = servers_run_batch(action="start", servers=VpnServer.objects.all(), actor=owner)
    assert outcome.job is not None
    job = wait_for_job(outcome.job.pk)
    assert (job.status, job.total, job.done, job.failed, job.remaining) == (JobStatus.FINISHED, 7, 7, 0, 0)
    _every_server_has_one_result(job, servers)
    assert set(VpnServer.objects.values_list("observed_state", flat=True)) == {"running"}
    entry = AuditEntry.objects.get(action="servers_start")
    assert entry.actor == owner
    assert entry.detail["done"] == 7


def test_a_batch_a_host_would_take_in_several_waves_goes_to_the_queue(
    queue_worker: QueueWorker, make_server: Callable[..., VpnServer]
) -> None:
    from django.conf import settings

    narrow = DockerHost.objects.create(
        name="narrow", base_url=settings.DOCKER_HOST, network_mode="none", max_concurrent=1
    )
    make_server(narrow)
    make_server(narrow)
    outcome = servers_run_batch(action="create", servers=VpnServer.objects.all())
    assert outcome.job is not None
    assert wait_for_job(outcome.job.pk).done == 2


def test_a_large_batch_from_the_page_shows_a_job_whose_progress_page_lists_every_result(
    queue_worker: QueueWorker, owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    servers = [make_server(local_host) for _ in range(7)]
    response = owner_client.post(
        "/containers/batch/", {"action": "create", "server": [s.pk for s in servers]}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "<progress" in page and "create of 7 servers" in page.lower()
    assert 'data-worker="down"' not in page  # a worker is alive
    job = wait_for_job(BatchJob.objects.get().pk)
    text = owner_client.get(f"/containers/jobs/{job.pk}/", headers={"HX-Request": "true"}).content.decode()
    assert 'data-job-status="finished"' in text
    assert "hx-get" not in text  # polling stops once the job is over
    assert all(f'data-result="{s.name}"' in text for s in servers)


def _wait_for_results(job_id: int, at_least: int, seconds: float = 120) -> int:
    deadline = time.monotonic() + seconds
    while (count := BatchJobResult.objects.filter(job_id=job_id).count()) < at_least:
        assert time.monotonic() < deadline, f"only {count} results"
        time.sleep(0.05)
    return count


def test_a_job_whose_queue_worker_is_killed_mid_batch_is_finished_by_another_with_one_result_each(
    queue_worker: QueueWorker, make_server: Callable[..., VpnServer], owner: User
) -> None:
    from django.conf import settings

    # One engine call at a time: the batch takes long enough to be killed half-way.
    slow = DockerHost.objects.create(name="slow", base_url=settings.DOCKER_HOST, network_mode="none", max_concurrent=1)
    servers = [make_server(slow) for _ in range(24)]
    outcome = servers_run_batch(action="start", servers=VpnServer.objects.all(), actor=owner)
    assert outcome.job is not None
    at_kill = _wait_for_results(outcome.job.pk, at_least=3)
    queue_worker.kill()
    assert at_kill < len(servers), "the batch ended before the worker could be killed"
    assert BatchJob.objects.get(pk=outcome.job.pk).status == JobStatus.RUNNING

    queue_worker.start()  # its stalled-job recovery finds the dead worker's job and retries it
    job = wait_for_job(outcome.job.pk)
    assert job.status == JobStatus.FINISHED
    _every_server_has_one_result(job, servers)
    assert job.done + job.unchanged == len(servers) and job.failed == 0
    assert set(VpnServer.objects.values_list("observed_state", flat=True)) == {"running"}
    assert AuditEntry.objects.filter(action="servers_start").count() == 1


def test_a_worker_stopped_mid_batch_finishes_its_servers_under_way_and_another_resumes_the_rest(
    queue_worker: QueueWorker, make_server: Callable[..., VpnServer], owner: User
) -> None:
    from django.conf import settings

    slow = DockerHost.objects.create(name="slow", base_url=settings.DOCKER_HOST, network_mode="none", max_concurrent=1)
    servers = [make_server(slow) for _ in range(24)]
    queue_worker.stop()
    queue_worker.start(QUEUE_SHUTDOWN_TIMEOUT="0")  # a deploy that does not wait for the batch
    outcome = servers_run_batch(action="start", servers=VpnServer.objects.all(), actor=owner)
    assert outcome.job is not None
    _wait_for_results(outcome.job.pk, at_least=3)
    queue_worker.stop()  # SIGTERM: the server under way is finished and recorded, the rest wait
    stopped_with = BatchJobResult.objects.filter(job_id=outcome.job.pk).count()
    assert stopped_with < len(servers), "the batch ended before the worker was stopped"

    queue_worker.start()  # picks up the retry procrastinate scheduled for the aborted job
    job = wait_for_job(outcome.job.pk)
    assert job.status == JobStatus.FINISHED
    _every_server_has_one_result(job, servers)
    assert (job.done, job.unchanged, job.failed) == (len(servers), 0, 0)  # nothing was done twice
    assert AuditEntry.objects.filter(action="servers_start").count() == 1


def _gunicorn_workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def test_a_job_survives_the_web_workers_that_took_the_request_being_killed(
    queue_worker: QueueWorker, live_app: LiveApp, owner: User, make_server: Callable[..., VpnServer]
) -> None:
    from django.conf import settings

    slow = DockerHost.objects.create(name="slow", base_url=settings.DOCKER_HOST, network_mode="none", max_concurrent=1)
    servers = [make_server(slow) for _ in range(12)]
    client = Client()
    client.force_login(owner)
    session = requests.Session()
    session.cookies.set(settings.SESSION_COOKIE_NAME, client.cookies[settings.SESSION_COOKIE_NAME].value)
    session.get(f"{live_app.url}/containers/", timeout=30).raise_for_status()  # sets the CSRF cookie
    response = session.post(
        f"{live_app.url}/containers/batch/",
        data={"action": "start", "server": [s.pk for s in servers]},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "HX-Request": "true"},
        timeout=30,
    )
    assert response.status_code == 200 and "<progress" in response.text
    job_id = BatchJob.objects.get().pk

    # A recycle, a HUP or the OOM killer: every web worker dies at once, without cleanup.
    for pid in _gunicorn_workers(live_app.process.pid):
        os.kill(pid, signal.SIGKILL)

    job = wait_for_job(job_id)
    assert job.status == JobStatus.FINISHED and job.done == len(servers)
    _every_server_has_one_result(job, servers)
    assert AuditEntry.objects.filter(action="servers_start").count() == 1


def test_worker_status_sees_a_live_worker_and_none_once_it_stopped(queue_worker: QueueWorker) -> None:
    status = worker_status()
    assert status.ok and status.alive == 1
    queue_worker.stop()
    status = worker_status()
    assert not status.ok and "no queue worker" in status.detail


def _runs(task_name: str) -> list[tuple[int, float, float]]:
    """(tick, started, ended) of every finished run of a task, from procrastinate's own events."""
    with psycopg.connect(_test_database_url(), autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT job.id, (job.args->>'timestamp')::bigint,
                   extract(epoch FROM min(e.at) FILTER (WHERE e.type = 'started')),
                   extract(epoch FROM max(e.at) FILTER (WHERE e.type IN ('succeeded', 'failed')))
              FROM procrastinate_jobs job JOIN procrastinate_events e ON e.job_id = job.id
             WHERE job.task_name = %s
             GROUP BY job.id
            """,
            [task_name],
        ).fetchall()
    return sorted((tick, float(start), float(end)) for _id, tick, start, end in rows if start and end)


def test_a_stats_pass_slower_than_its_interval_never_runs_twice_at_once_even_with_two_workers(
    queue_worker: QueueWorker, make_server: Callable[..., VpnServer], silent_engine_socket: str
) -> None:
    # A running server on an engine that never answers: each pass waits out the 3 s ping
    # deadline, three times the 1 s interval. Two workers defer and run the passes.
    hung = DockerHost.objects.create(name="hung", base_url=silent_engine_socket, network_mode="none")
    make_server(hung, observed_state="running")
    queue_worker.stop()
    env = {"CONTAINERS_STATS_INTERVAL": "1", "HEALTH_CHECK_TIMEOUT": "3", "PROCRASTINATE_WORKER_DELETE_JOBS": "never"}
    queue_worker.start(**env)
    queue_worker.start(**env)
    deadline = time.monotonic() + 120
    while len(_runs("containers.collect_stats")) < 3:
        assert time.monotonic() < deadline, queue_worker.log()[-3000:]
        time.sleep(0.5)
    queue_worker.stop()
    runs = _runs("containers.collect_stats")
    ticks = [tick for tick, _, _ in runs]
    assert len(ticks) == len(set(ticks))  # each tick deferred once across both workers
    for (_, _, ended), (_, started, _) in itertools.pairwise(runs):
        assert started >= ended  # the lock: a pass starts only once the previous one ended
    with psycopg.connect(_test_database_url(), autocommit=True) as conn:
        waiting = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'containers.collect_stats' AND status = 'todo'"
        ).fetchone()[0]  # type: ignore[index]  # count(*) always answers one row
    assert waiting <= 1  # the queueing lock: missed ticks do not pile up


def _worker_row(client: Client) -> str:
    page = client.get("/").content.decode()
    start = page.index('data-component="worker"')
    return page[start : page.index("</tr>", start)]


def test_the_dashboard_shows_the_worker_part_down_while_no_worker_runs(owner_client: Client) -> None:
    row = _worker_row(owner_client)
    assert "badge-down" in row and "no queue worker" in row and "(optional)" in row


def test_the_dashboard_shows_the_worker_part_up_while_one_runs(queue_worker: QueueWorker, owner_client: Client) -> None:
    row = _worker_row(owner_client)
    assert "badge-up" in row and "1 worker alive" in row


def _collect_stats_jobs(status: str) -> int:
    with psycopg.connect(_test_database_url(), autocommit=True) as conn:
        return int(
            conn.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'containers.collect_stats' AND status = %s",
                [status],
            ).fetchone()[0]  # type: ignore[index]  # count(*) always answers one row
        )


def test_stats_passes_go_on_after_a_worker_is_killed_in_the_middle_of_one(
    queue_worker: QueueWorker, make_server: Callable[..., VpnServer], silent_engine_socket: str
) -> None:
    # The killed pass holds the task's lock while the next tick already waits under the
    # queueing lock: recovery must end the dead pass (retrying it would collide with the
    # waiting one), or no pass would ever run again.
    hung = DockerHost.objects.create(name="hung", base_url=silent_engine_socket, network_mode="none")
    make_server(hung, observed_state="running")
    queue_worker.stop()
    env = {"CONTAINERS_STATS_INTERVAL": "1", "HEALTH_CHECK_TIMEOUT": "3", "PROCRASTINATE_WORKER_DELETE_JOBS": "never"}
    queue_worker.start(**env)
    deadline = time.monotonic() + 60
    while not (_collect_stats_jobs("doing") and _collect_stats_jobs("todo")):
        assert time.monotonic() < deadline, queue_worker.log()[-3000:]
        time.sleep(0.1)
    queue_worker.kill()
    finished_before = len(_runs("containers.collect_stats"))

    queue_worker.start(**env)
    deadline = time.monotonic() + 120
    while len(_runs("containers.collect_stats")) < finished_before + 2:
        assert time.monotonic() < deadline, queue_worker.log()[-3000:]
        time.sleep(0.5)
    with psycopg.connect(_test_database_url(), autocommit=True) as conn:
        failed_recoveries = conn.execute(
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE task_name = 'vpnadmin.retry_stalled_jobs' AND status = 'failed'"
        ).fetchone()[0]  # type: ignore[index]  # count(*) always answers one row
    assert failed_recoveries == 0
