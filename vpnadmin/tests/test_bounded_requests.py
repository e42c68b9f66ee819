"""Every request is bounded: statement timeouts per role, exports with a time limit, and
slow clients that cannot take the web workers' threads away from everyone else."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client, override_settings

from conftest import REPO, LiveApp, _free_port, child_env

ROLE_PROBE = """
import django
django.setup()
from django.db import connection, OperationalError
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    print(cursor.fetchone()[0])
    try:
        cursor.execute("SELECT pg_sleep(2)")
        print("finished")
    except OperationalError as exc:
        print("cancelled" if "statement timeout" in str(exc) else f"other: {exc}")
"""


def _probe(**env: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", ROLE_PROBE],
        cwd=REPO,
        env=child_env(
            DJANGO_SETTINGS_MODULE="vpnadmin.settings",
            DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres",
            **env,
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.split()


def test_a_web_worker_connection_cancels_a_statement_past_the_web_timeout() -> None:
    assert _probe(VPNADMIN_ROLE="web", DATABASE_STATEMENT_TIMEOUT_MS="300") == ["300ms", "cancelled"]


def test_queue_workers_and_commands_get_the_longer_timeout() -> None:
    assert _probe(DATABASE_WORKER_STATEMENT_TIMEOUT_MS="5000") == ["5s", "finished"]


def test_gunicorn_marks_its_workers_as_the_web_role() -> None:
    config = (Path(REPO) / "vpnadmin" / "gunicorn.conf.py").read_text()
    assert 'os.environ.setdefault("VPNADMIN_ROLE", "web")' in config


@pytest.mark.django_db
def test_an_export_stops_at_its_time_limit_and_says_so(owner_client: Client) -> None:
    with override_settings(EXPORT_TIME_LIMIT=0):
        response = owner_client.get("/users/export.csv")
        body = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    assert response.status_code == 200
    assert body.rstrip().splitlines()[-1].startswith("# export stopped after 0 s")


@pytest.mark.django_db
def test_an_export_within_its_time_limit_is_complete(owner_client: Client) -> None:
    body = b"".join(owner_client.get("/users/export.csv").streaming_content).decode()  # type: ignore[attr-defined]
    assert "export stopped" not in body


# --- slow clients ------------------------------------------------------------------------


class SlowClients:
    """Connections that send a request a byte at a time (headers, or a promised body)."""

    def __init__(self, host: str, port: int, count: int) -> None:
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.dropped = 0
        self.threads = []
        for n in range(count):
            sock = socket.create_connection((host, port), timeout=5)
            self.sockets.append(sock)
            slow_body = n % 2 == 1
            thread = threading.Thread(target=self._trickle, args=(sock, slow_body), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _trickle(self, sock: socket.socket, slow_body: bool) -> None:
        if slow_body:
            sock.sendall(
                b"POST /login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 100000\r\n\r\nusername="
            )
        else:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not self.stop.wait(0.5):
            try:
                sock.sendall(b"a" if slow_body else b"X-Slow: a\r\n"[:1])
            except OSError:
                self.dropped += 1  # the server gave up on this client
                return

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def _dashboard(url: str, session: str) -> int:
    request = urllib.request.Request(f"{url}/", headers={"Cookie": f"sessionid={session}"})  # noqa: S310 - our own loopback server
    with urllib.request.urlopen(request, timeout=90) as response:  # noqa: S310 - our own loopback server
        return int(response.status)


@pytest.mark.django_db(transaction=True)
def test_eight_slow_clients_cannot_stop_a_ninth_from_loading_the_dashboard(live_app: LiveApp, owner: User) -> None:
    client = Client()
    client.force_login(owner)
    session = client.cookies["sessionid"].value
    port = int(live_app.url.rsplit(":", 1)[1])
    slow = SlowClients("127.0.0.1", port, 8)
    try:
        time.sleep(1)  # every slow client has begun its request and holds whatever it can
        assert _dashboard(live_app.url, session) == 200
    finally:
        slow.close()


@pytest.fixture
def one_worker_with_two_threads(tmp_path: Path) -> Iterator[str]:
    """gunicorn with the shipped config but one worker of two threads and a 2 s read deadline."""
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    env = child_env(
        BIND="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="1",
        GUNICORN_THREADS="2",
        GUNICORN_REQUEST_READ_TIMEOUT="2",
        GUNICORN_MAX_REQUESTS="0",
        GUNICORN_ACCESSLOG="",
        MEMORY_SAMPLER="0",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prometheus"),
        DJANGO_SETTINGS_MODULE="vpnadmin.settings",
    )
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "vpnadmin/gunicorn.conf.py"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/login/", timeout=2)  # noqa: S310 - our own loopback server
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    try:
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.django_db
def test_slow_clients_are_cut_off_at_the_read_deadline_so_two_threads_still_serve_a_ninth(
    one_worker_with_two_threads: str,
) -> None:
    url = one_worker_with_two_threads
    port = int(url.rsplit(":", 1)[1])
    slow = SlowClients("127.0.0.1", port, 8)
    try:
        time.sleep(1)
        # Two threads, eight clients trickling: without a read deadline this waits for ever.
        with urllib.request.urlopen(f"{url}/login/", timeout=90) as response:  # noqa: S310
            assert response.status == 200
        deadline = time.monotonic() + 30
        while slow.dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert slow.dropped > 0  # the server closed on clients that never finished
    finally:
        slow.close()
