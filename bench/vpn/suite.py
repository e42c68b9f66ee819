"""The VPN data plane on real servers: applies, batch convergence, traffic polls, pages while polling.

Rows (each beside a baseline measured in the same run):
- render + apply one VLESS server's config for 10,000 users (v2ray -test, swap, reload)
  vs writing the same file with json.dumps + one put_archive;
- a bulk action on 10,000 users over 10 servers: the applies it causes (count) vs the
  servers it touched, and its whole convergence through a real queue worker vs the
  slowest single apply of those servers;
- the write side of a traffic poll of 10,000 users on one server (deltas, one set-based
  write, the server's baseline) vs a raw COPY + UPDATE … FROM of the same deltas;
- the users list page at 1M users while polls write 10,000 users' traffic every second
  vs the same page with polling off.

Server containers listen on 127.0.0.1 (host network, on a host marked for it) and carry
the label vpnadmin.bench=vpn; they are removed at the end and at the start.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import docker
from django.conf import settings

from bench.harness import REPO, Row, gunicorn, http_get, interleaved_medians, login_session_cookie

BENCH_LABEL = ("vpnadmin.bench", "vpn")
USERS_ONE = 10_000
SERVERS = 10
USERS_EACH = 1_000
BASE_PORT = 46_000
HOST_NAME = "bench-vpn"
PAGE_REQUESTS = 10


def _remove_bench_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": "=".join(BENCH_LABEL)}):
        container.remove(force=True)


def _cleanup() -> None:
    from containers.models import DockerHost, VpnServer
    from users.models import VpnUser

    VpnUser.objects.filter(username__startswith="vpnbench").delete()
    VpnServer.objects.filter(host__name=HOST_NAME).delete()
    DockerHost.objects.filter(name=HOST_NAME).delete()


def _servers(count: int, users_each: int, first_port: int) -> list[Any]:
    """`count` running VLESS servers with `users_each` users each, through the panel's services."""
    from containers.models import DockerHost, VpnServer
    from containers.services import servers_create, servers_start_batch
    from users.services import users_create_batch

    host, _ = DockerHost.objects.get_or_create(
        name=HOST_NAME,
        defaults={"base_url": settings.DOCKER_HOST, "network_mode": "host", "allow_host_network": True},
    )
    servers = []
    for n in range(count):
        port = first_port + 10 * n
        server = servers_create(
            actor=None,
            host=host,
            name=f"bench-vpn-{port}",
            protocol="vless",
            image="vpnadmin-test/v2ray:latest",
            port=port,
            environment={"VPNADMIN_LISTEN": "127.0.0.1"},
            desired_state="running",
        )
        rows = [
            {"username": f"vpnbench{port}x{i:05d}", "protocol": "vless", "server_id": server.pk}
            for i in range(users_each)
        ]
        result = users_create_batch(actor=None, rows=rows)
        if not result.ok:
            raise RuntimeError(f"bench users: {result.errors[:3]}")
        servers.append(server)
    ids = [s.pk for s in servers]
    outcome = servers_start_batch(servers=VpnServer.objects.filter(pk__in=ids))
    if outcome.failed:
        raise RuntimeError(f"bench servers did not start: {outcome.results}")
    return list(VpnServer.objects.select_related("host").filter(pk__in=ids).order_by("pk"))


def _apply_count(server: Any) -> int:
    from containers.kinds.base import run

    code, output = run(server, ["cat", "/etc/vpn/applies.log"])
    return len(output.split()) if code == 0 else 0


# --- render + apply vs json.dumps + put_archive -------------------------------------------


def _bench_apply(server: Any, *, rounds: int = 5) -> list[Row]:
    """Cold: the worker holds no plaintext (every token opened, as after a restart or a key
    rotation). Steady: one user's credential got a new token since the last apply (one
    token opened, the other 9,999 from the worker's cache). Both beside the same baseline,
    measured in alternation. `ours` is what an apply does to the server: the read, the
    render, one put_archive and one exec that checks, reads the counters the reload is
    about to reset, swaps and reloads."""
    import statistics

    from containers.engine import client_for
    from containers.kinds import kind_for
    from containers.kinds.base import config_digest
    from containers.sync import CREDENTIALS, desired_users
    from users.models import VpnUser

    kind = kind_for(server)
    api = client_for(server.host)

    def ours() -> None:
        files = kind.render(server, desired_users(server))
        kind.apply(server, files, config_digest(files))

    users = desired_users(server)
    clients = [{"id": u.uuid, "email": f"u{u.pk}", "level": 0} for u in users]
    first = users[0].pk

    def baseline() -> None:
        data = json.dumps({"inbounds": [{"settings": {"clients": clients}}]}).encode()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo("config.json.plain")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        api.put_archive(server.container_id, "/etc/vpn", buffer.getvalue())

    def timed(fn: Any) -> float:
        started = time.perf_counter()
        fn()
        return time.perf_counter() - started

    def serving() -> None:
        # Each apply restarts the core; a real one finds it serving again (applies of one
        # server are at least the debounce apart), so every measurement starts from there.
        for _ in range(200):
            if not kind.health(server):
                return
            time.sleep(0.05)
        raise RuntimeError("the core did not come back")

    samples: dict[str, list[float]] = {"baseline": [], "cold": [], "steady": []}
    ours()
    baseline()
    for _ in range(rounds):
        serving()
        samples["baseline"].append(timed(baseline))
        CREDENTIALS.clear()
        serving()
        samples["cold"].append(timed(ours))
        # The same UUID encrypted again: a new token, as any write of the credential makes.
        VpnUser.objects.filter(pk=first).update(credential_uuid=users[0].uuid)
        serving()
        samples["steady"].append(timed(ours))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    label = f"render + apply one VLESS server, {len(users):,} users (v2ray -test, swap, reload)"
    return [
        Row.compare(
            f"{label}, cold: no credential cached, {len(users):,} tokens opened",
            medians["cold"],
            "json.dumps of the same clients + one put_archive",
            medians["baseline"],
            "<= 3",
        ),
        Row.compare(
            f"{label}, steady: one user's credential changed since the last apply, 1 token opened",
            medians["steady"],
            "json.dumps of the same clients + one put_archive",
            medians["baseline"],
            "<= 3",
        ),
    ]


# --- a bulk action over 10 servers, through a real worker ---------------------------------


def _worker() -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "VPN_POLL_INTERVAL": "0",
        "VPN_CONVERGE_INTERVAL": "0",
        "VPN_RESET_INTERVAL": "0",
        "CONTAINERS_STATS_INTERVAL": "0",
        "CONTAINERS_SYNC_INTERVAL": "0",
    }
    log = (REPO / "var" / "bench" / "vpn-worker.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "procrastinate", "worker"], cwd=REPO, env=env, stdout=log, stderr=log
    )
    log.close()
    time.sleep(3)
    return process


def _wait_converged(ids: list[int], *, timeout: float = 300) -> float:
    from containers.models import ApplyState, VpnServer

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if not VpnServer.objects.filter(pk__in=ids).exclude(apply_state=ApplyState.APPLIED).exists():
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError("the servers did not converge")


def _wait_no_apply_jobs(ids: list[int], *, timeout: float = 120) -> None:
    from django.db import connection

    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'containers.apply_server'"
                " AND status IN ('todo', 'doing') AND (args->>'server_id')::bigint = ANY(%s)",
                [ids],
            )
            if cursor.fetchone()[0] == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the setup's applies were not drained")


def _log_size() -> int:
    return (REPO / "var" / "bench" / "vpn-worker.log").stat().st_size


_JOB_END = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Job containers\.apply_server\[\d+\]\(server_id=(\d+)\)"
    r" ended with status: \w+, lasted ([\d.]+) s",
    re.MULTILINE,
)


def _worker_overlap(offset: int, ids: list[int]) -> tuple[int, int]:
    """How many of these servers' applies the bench's worker ran, and how many at most at once
    (from its log: each job's end time and duration)."""
    import datetime

    text = (REPO / "var" / "bench" / "vpn-worker.log").read_bytes()[offset:].decode(errors="replace")
    spans = []
    for stamp, server_id, lasted in _JOB_END.findall(text):
        if int(server_id) in ids:
            end = datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # naive: only differences used
            spans.append((end - float(lasted), end))
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return len(spans), peak


def _bench_bulk(servers: list[Any]) -> list[Row]:
    from containers.sync import servers_apply
    from users.models import VpnUser
    from users.services import users_set_active

    ids = [s.pk for s in servers]
    users = VpnUser.objects.filter(server_id__in=ids)
    # Every server serves its users before the measurement starts.
    for server in servers:
        servers_apply(server_id=server.pk)
    # The slowest single apply: each server alone, its set changed by one user.
    singles = []
    for server in servers:
        one = VpnUser.objects.filter(server=server).order_by("pk")[:1]
        users_set_active(actor=None, users=VpnUser.objects.filter(pk__in=one), active=False)
        started = time.perf_counter()
        servers_apply(server_id=server.pk)
        singles.append(time.perf_counter() - started)
        users_set_active(actor=None, users=VpnUser.objects.filter(server=server), active=True)
        servers_apply(server_id=server.pk)
    before = sum(_apply_count(s) for s in servers)

    settings.VPN_APPLY_DEBOUNCE = 0.0  # the convergence below is the applies themselves
    worker = _worker()
    try:
        # The setup's own writes left debounced applies waiting (no worker ran then): the
        # worker drains them first (each a "same config" check), then the bulk action.
        _wait_no_apply_jobs(ids)
        mark = _log_size()
        started = time.perf_counter()
        # Returns after commit, when every touched server is pending and its apply deferred.
        users_set_active(actor=None, users=users, active=False)
        _wait_converged(ids)
        converged = time.perf_counter() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    applies = sum(_apply_count(s) for s in servers) - before
    ran, overlap = _worker_overlap(mark, ids)
    users_set_active(actor=None, users=users, active=True)
    return [
        Row.compare(
            f"applies caused by one bulk action on {users.count():,} users over {SERVERS} servers (count)",
            float(applies),
            f"servers touched ({SERVERS}); one apply per user would be {users.count():,}",
            float(SERVERS),
            "<= 1",
        ),
        Row.compare(
            f"whole convergence of that bulk action through one queue worker ({settings.QUEUE_CONCURRENCY} at once;"
            f" its log: {ran} applies, at most {overlap} overlapping)",
            converged,
            "the slowest single apply of those servers",
            max(singles),
            "<= 2",
        ),
    ]


# --- the poll's write side vs raw COPY + UPDATE --------------------------------------------


def _bench_poll(server: Any) -> list[Row]:
    from django.db import connection, transaction

    from containers.kinds import kind_for
    from containers.kinds.base import UserEntry
    from containers.sync import servers_record_readings
    from users.models import VpnUser

    kind = kind_for(server)
    pks = list(VpnUser.objects.filter(server=server).order_by("pk").values_list("pk", flat=True))
    keys = [kind.user_key(UserEntry(pk, "", "", "", "", None)) for pk in pks]
    state = {"tick": 0}

    def ours() -> None:
        # What the engine would answer: every user's counters grew by 1,000 + 1,000 bytes.
        state["tick"] += 1
        tick = state["tick"]
        reading = dict.fromkeys(keys, (1000 * tick, 1000 * tick))
        servers_record_readings(readings=[(server, reading)])

    def baseline() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE _bench_traffic (id bigint, amount bigint) ON COMMIT DROP")
            with cursor.connection.cursor() as raw, raw.copy("COPY _bench_traffic (id, amount) FROM STDIN") as copy:
                for pk in pks:
                    copy.write_row((pk, 2000))
            cursor.execute(
                "UPDATE users_vpnuser AS u SET used_traffic = u.used_traffic + t.amount"
                " FROM _bench_traffic AS t WHERE u.id = t.id"
            )

    medians = interleaved_medians({"ours": ours, "baseline": baseline}, rounds=7)
    VpnUser.objects.filter(pk__in=pks).update(used_traffic=0)
    return [
        Row.compare(
            f"traffic poll write of {len(pks):,} users on one server (deltas, one write, baseline, audit)",
            medians["ours"],
            "raw COPY + UPDATE … FROM of the same deltas",
            medians["baseline"],
            "<= 3",
        )
    ]


# --- the users list at 1M while polling -----------------------------------------------------


def _bench_page_while_polling(server: Any) -> list[Row]:
    polling = threading.Event()
    stop = threading.Event()

    def poller() -> None:
        import django.db

        from containers.sync import servers_record_readings
        from users.models import VpnUser

        pks = list(VpnUser.objects.filter(server=server).values_list("pk", flat=True))
        keys = [f"u{pk}" for pk in pks]  # the VLESS kind's counter keys
        tick = 0
        while not stop.is_set():
            if polling.is_set():
                tick += 1
                servers_record_readings(readings=[(server, dict.fromkeys(keys, (500 * tick, 500 * tick)))])
                stop.wait(1.0)
            else:
                stop.wait(0.05)
        django.db.connection.close()

    thread = threading.Thread(target=poller, daemon=True)
    thread.start()
    cookie = login_session_cookie()
    try:
        with gunicorn(env={"DATABASE_URL": os.environ["DATABASE_URL"]}) as web:
            url = web.url + "/users/"

            def pages() -> None:
                for _ in range(PAGE_REQUESTS):
                    http_get(url, cookies=cookie)

            def with_polling() -> None:
                polling.set()
                try:
                    pages()
                finally:
                    polling.clear()

            medians = interleaved_medians({"on": with_polling, "off": pages}, rounds=7)
    finally:
        stop.set()
        thread.join(timeout=30)
    return [
        Row.compare(
            "users list page at 1M users while polls write 10,000 users' traffic each second",
            medians["on"] / PAGE_REQUESTS,
            "the same page with polling off",
            medians["off"] / PAGE_REQUESTS,
            "<= 1.2",
        )
    ]


def run() -> list[Row]:
    from containers.engine import DOCKER_API_VERSION

    settings.DOCKER_EXTRA_LABELS = dict([BENCH_LABEL])
    client = docker.DockerClient(base_url=settings.DOCKER_HOST, version=DOCKER_API_VERSION, timeout=60)
    _remove_bench_containers(client)
    _cleanup()
    Path(REPO / "var" / "bench").mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    pages = os.environ.get("VPN_BENCH_PAGES", "1") != "0"
    if pages:
        from bench.users.seed import BIG, ensure_users

        # Seeded first: seeding removes rows that are not its own (these suites share a database).
        ensure_users(BIG)
    try:
        (big,) = _servers(1, USERS_ONE, BASE_PORT)
        rows += _bench_apply(big)
        rows += _bench_poll(big)
        fleet = _servers(SERVERS, USERS_EACH, BASE_PORT + 100)
        rows += _bench_bulk(fleet)
        if pages:
            rows += _bench_page_while_polling(big)
    finally:
        _remove_bench_containers(client)
        _cleanup()
        client.close()
    return rows
