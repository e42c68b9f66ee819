"""Container batches on the real local engine: the service against docker-py used directly,
and the same batch through the task queue against the same batch run in-process.

Every container the suite creates carries the label vpnadmin.bench=containers and is
removed at the end (and at the start, should an earlier run have been killed).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import docker
from django.conf import settings

from bench.harness import REPO, Row, gunicorn, http_get, interleaved_medians, login_session_cookie

COUNT = 20
CONCURRENCY = 10
BENCH_LABEL = ("vpnadmin.bench", "containers")
IMAGE = "vpnadmin-test/busybox:latest"
# Stops at once on SIGTERM (sh as PID 1 needs the trap), like a real VPN daemon.
COMMAND = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"
PANEL_REQUESTS = 30


def _remove_bench_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": "=".join(BENCH_LABEL)}):
        container.remove(force=True)


@contextmanager
def queue_worker() -> Iterator[subprocess.Popen[bytes]]:
    """`manage.py procrastinate worker` on the bench database, as production runs it, with the
    periodic passes off (they would run beside the batches being timed)."""
    from procrastinate.contrib.django.models import ProcrastinateWorker

    before = ProcrastinateWorker.objects.order_by("-id").values_list("id", flat=True).first() or 0
    env = {
        **os.environ,
        "DOCKER_EXTRA_LABELS": "=".join(BENCH_LABEL),
        "CONTAINERS_STATS_INTERVAL": "0",
        "CONTAINERS_SYNC_INTERVAL": "0",
        "VPN_POLL_INTERVAL": "0",
        "VPN_CONVERGE_INTERVAL": "0",
        "VPN_RESET_INTERVAL": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "procrastinate", "worker"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not ProcrastinateWorker.objects.filter(id__gt=before).exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(
                f"the queue worker did not start: {process.stderr.read().decode()[-2000:] if process.stderr else ''}"
            )
        time.sleep(0.05)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run() -> list[Row]:
    from containers.engine import DOCKER_API_VERSION
    from containers.jobs import job_submit
    from containers.models import BatchJob, DockerHost, VpnServer
    from containers.services import servers_batch_now, servers_create_batch, servers_start_batch, servers_stats_batch
    from containers.stats import build_panel, store_panel

    settings.DOCKER_EXTRA_LABELS = dict([BENCH_LABEL])
    client = docker.DockerClient(base_url=settings.DOCKER_HOST, version=DOCKER_API_VERSION, timeout=60)
    api = client.api
    _remove_bench_containers(client)
    VpnServer.objects.filter(host__name="bench-local").delete()
    host, _ = DockerHost.objects.update_or_create(
        name="bench-local",
        defaults={"base_url": settings.DOCKER_HOST, "network_mode": "none", "max_concurrent": CONCURRENCY},
    )
    servers = VpnServer.objects.bulk_create(
        VpnServer(host=host, name=f"bench-vpn-{n}", protocol="vless", image=IMAGE, port=40000 + n, command=COMMAND)
        for n in range(COUNT)
    )
    queryset = VpnServer.objects.filter(host=host)
    rows: list[Row] = []
    try:
        created = servers_create_batch(servers=queryset)
        if created.failed:
            raise RuntimeError(f"could not create the bench containers: {created.results}")
        ids = list(queryset.values_list("container_id", flat=True))

        # --- start 20 stopped containers ----------------------------------------------------
        def stop_all() -> None:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(lambda cid: api.stop(cid, timeout=5), ids))

        def service_start() -> None:
            outcome = servers_start_batch(servers=queryset)
            assert outcome.done == COUNT, outcome.results

        def sequential_start() -> None:
            for cid in ids:
                api.start(cid)

        def pooled_start() -> None:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(api.start, ids))

        starts: dict[str, list[float]] = {"service": [], "sequential": [], "pool": []}
        variants = {"service": service_start, "sequential": sequential_start, "pool": pooled_start}
        for round_number in range(4):  # the first round warms up
            for name, fn in variants.items():
                stop_all()
                seconds = _timed(fn)
                if round_number:
                    starts[name].append(seconds)
        start = {name: statistics.median(values) for name, values in starts.items()}
        rows.append(
            Row.compare(
                f"start {COUNT} stopped containers (service, {CONCURRENCY} at once)",
                start["service"],
                "sequential docker-py loop (api.start per container)",
                start["sequential"],
                "<= 0.5",
            )
        )
        rows.append(
            Row.compare(
                f"start {COUNT} stopped containers (service, {CONCURRENCY} at once)",
                start["service"],
                f"bare ThreadPoolExecutor({CONCURRENCY}) over docker-py api.start",
                start["pool"],
                "<= 1.2",
            )
        )

        # --- the same batch through the queue ------------------------------------------------
        def in_process_start() -> None:
            outcome = servers_batch_now(action="start", servers=queryset)
            assert outcome.done == COUNT, outcome.results

        def queued_start() -> None:
            # From the request's point of view to the last result: record the job and defer
            # its task (one transaction), the worker picks it up on NOTIFY, runs it and
            # records each server; the caller sees the job finished.
            job = job_submit(action="start", server_ids=server_ids, actor=None)
            deadline = time.monotonic() + 120
            while True:
                status, done = BatchJob.objects.filter(pk=job.pk).values_list("status", "done").get()
                if status != "queued" and status != "running":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job.pk} still {status} after 120 s")
                time.sleep(0.01)
            assert (status, done) == ("finished", COUNT), (status, done)

        server_ids = list(queryset.values_list("pk", flat=True))
        batches: dict[str, list[float]] = {"queue": [], "in-process": []}
        with queue_worker():
            for round_number in range(5):  # the first round warms up
                for name, fn in {"queue": queued_start, "in-process": in_process_start}.items():
                    stop_all()
                    seconds = _timed(fn)
                    if round_number:
                        batches[name].append(seconds)
        rows.append(
            Row.compare(
                f"start {COUNT} stopped containers as a queue job (submit to last result)",
                statistics.median(batches["queue"]),
                "the same batch run in-process (servers_batch_now, as a request did)",
                statistics.median(batches["in-process"]),
                "<= 1.2",
            )
        )

        # --- stats ----------------------------------------------------------------------------
        medians = interleaved_medians(
            {
                "service": lambda: servers_stats_batch(servers=queryset),
                "one": lambda: api.stats(ids[0], stream=False),
            },
            rounds=3,
        )
        rows.append(
            Row.compare(
                f"stats (CPU %, memory, I/O) for {COUNT} running containers via the service",
                medians["service"],
                "one container's docker-py stats(stream=False) call",
                medians["one"],
                "<= 1.5",
            )
        )

        # --- the live stats panel -----------------------------------------------------------
        samples = {r.server_id: r.stats for r in servers_stats_batch(servers=queryset, store=False)}
        assert all(samples.values()), samples

        def store_panel_of(count: int) -> None:
            # What the collector stores after a pass over `count` running servers.
            entries = [(s.pk, s.name, host.pk, host.name, samples[s.pk]) for s in servers[:count]]
            store_panel(build_panel(entries), timeout=900)

        cookies = login_session_cookie()
        headers = {"HX-Request": "true"}
        panel: dict[str, list[float]] = {"20": [], "1": []}
        with gunicorn() as app:
            url = app.url + "/containers/stats/"
            http_get(url, cookies=cookies, headers=headers)  # warm up the worker
            for _ in range(5):
                for case in ("20", "1"):
                    store_panel_of(int(case))
                    body = http_get(url, cookies=cookies, headers=headers)
                    shown = body.count(b"data-stats-server=")
                    assert shown == min(int(case), 10), (case, shown)
                    panel[case].append(
                        statistics.median(
                            _timed(lambda: http_get(url, cookies=cookies, headers=headers))
                            for _ in range(PANEL_REQUESTS)
                        )
                    )
        rows.append(
            Row.compare(
                f"live stats panel, {COUNT} running containers (request to gunicorn)",
                statistics.median(panel["20"]),
                "the same panel with 1 running container",
                statistics.median(panel["1"]),
                "<= 1.5",
            )
        )
    finally:
        _remove_bench_containers(client)
        VpnServer.objects.filter(host=host).delete()
        client.close()
    return rows
