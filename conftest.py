"""The test harness every app extends: a fixed cast of people, the real Redis, the real
Docker engine and a real Chromium driving the app under gunicorn.

Nothing here stands in for a service. When a part is missing the fixture fails with a
message saying how to start it (`make test` starts them all).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.test import Client

from perf.cache import tagged_cache

REPO = Path(__file__).resolve().parent
RUN_ID = os.environ["VPNADMIN_TEST_RUN_ID"]
TEST_IMAGE = "vpnadmin-test/busybox:latest"
TEST_LABEL = "vpnadmin.test-run"
PASSWORD = "correct horse battery staple 42"


# --- the cast ------------------------------------------------------------------------


def _make_user(username: str, *, staff: bool, superuser: bool = False, perms: tuple[str, ...] = ()) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=staff, is_superuser=superuser)
    for codename in perms:
        app_label, code = codename.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=code))
    return user


@pytest.fixture
def owner(db: None) -> User:
    """A superuser: may do everything."""
    return _make_user("owner", staff=True, superuser=True)


@pytest.fixture
def make_operator(db: None) -> Callable[..., User]:
    """A staff member with exactly the permissions given (`app_label.codename`)."""

    def make(*perms: str, username: str = "operator") -> User:
        return _make_user(username, staff=True, perms=perms)

    return make


@pytest.fixture
def stranger(db: None) -> User:
    """Logged in, but holds no permission at all."""
    return _make_user("stranger", staff=False)


@pytest.fixture
def owner_client(owner: User) -> Client:
    client = Client()
    client.force_login(owner)
    return client


@pytest.fixture
def stranger_client(stranger: User) -> Client:
    client = Client()
    client.force_login(stranger)
    return client


@pytest.fixture
def csrf_client(owner: User) -> Client:
    """A logged-in client that enforces CSRF like a browser session does."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    return client


@pytest.fixture(autouse=True)
def _fresh_health_answers() -> None:
    """Kept engine answers belong to one test (health-check threads close their own connections)."""
    from vpnadmin import health

    health.reset()


# --- Redis ---------------------------------------------------------------------------


def _delete_own_keys() -> None:
    # Only keys under this run's prefix (perf.cache's clear()): other keys on the machine stay.
    cache.clear()


@pytest.fixture(autouse=True)
def _isolated_cache() -> Iterator[None]:
    """Each test starts with none of this run's keys; nothing else in Redis is touched."""
    _delete_own_keys()
    yield


@pytest.fixture(scope="session", autouse=True)
def _remove_run_keys_at_end() -> Iterator[None]:
    yield
    _delete_own_keys()


@pytest.fixture
def redis_client() -> Any:
    """The raw redis-py client behind the cache, for tests that look at Redis itself."""
    return tagged_cache().client.get_client(write=True)


# --- Docker --------------------------------------------------------------------------


def docker_client_for(base_url: str) -> docker.DockerClient:
    from containers.engine import DOCKER_API_VERSION

    return docker.DockerClient(base_url=base_url, version=DOCKER_API_VERSION, timeout=60)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The real local Docker engine; containers made through `docker_sandbox` are removed."""
    client = docker_client_for(settings.DOCKER_HOST)
    try:
        client.ping()
    except Exception as exc:
        pytest.fail(f"No Docker engine answers at {settings.DOCKER_HOST} ({exc}); `make test` starts one.")
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"Test image {TEST_IMAGE} is missing; `make test` builds it (scripts/build-test-image.sh).")
    yield client
    _remove_labelled_containers(client)
    client.close()


def _remove_labelled_containers(client: docker.DockerClient) -> None:
    for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
        container.remove(force=True)


@dataclass
class DockerSandbox:
    """Creates containers from the test image, labelled so they are always cleaned up."""

    client: docker.DockerClient
    image: str = TEST_IMAGE
    labels: dict[str, str] | None = None

    def run(self, name: str, command: str = "sleep 3600", **kwargs: Any) -> Any:
        labels = {TEST_LABEL: RUN_ID, **(self.labels or {}), **kwargs.pop("labels", {})}
        return self.client.containers.run(
            self.image, command, name=name, labels=labels, detach=True, network_mode="none", **kwargs
        )

    def create(self, name: str, command: str = "sleep 3600", **kwargs: Any) -> Any:
        labels = {TEST_LABEL: RUN_ID, **(self.labels or {}), **kwargs.pop("labels", {})}
        return self.client.containers.create(
            self.image, command, name=name, labels=labels, network_mode="none", **kwargs
        )


@pytest.fixture
def docker_sandbox(docker_client: docker.DockerClient) -> Iterator[DockerSandbox]:
    yield DockerSandbox(docker_client)
    _remove_labelled_containers(docker_client)


def unique_name(prefix: str) -> str:
    """A container name no other run on this engine uses."""
    return f"{prefix}-{RUN_ID}-{time.monotonic_ns() % 10**8}"


# --- the app under gunicorn, and a real Chromium --------------------------------------


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for a process the tests start: this run's, less the test-only ORM switch."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(overrides)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveApp:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def live_app(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """vpnadmin served by gunicorn against the test database, as in production."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    env = child_env(
        DATABASE_URL=_test_database_url(),
        BIND="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",
        GUNICORN_MAX_REQUESTS="0",
        GUNICORN_ACCESSLOG="",
        DJANGO_SETTINGS_MODULE="vpnadmin.settings",
    )
    log = log_path.open("wb")
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
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
    yield LiveApp(url=url, process=process, log_path=log_path)
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


# --- a queue worker ----------------------------------------------------------------

_QUEUE_TABLES = "procrastinate_jobs, procrastinate_events, procrastinate_periodic_defers, procrastinate_workers"


@dataclass
class QueueWorker:
    """`manage.py procrastinate worker` processes against the test database, as in production.

    Tests that need one take `queue_worker` and mark themselves
    `django_db(transaction=True)` (a worker sees only committed rows). The worker beats
    every second and counts as dead after 4 s, so the stalled-job recovery retries a
    killed worker's jobs within seconds. Periodic stats and sync passes are off unless a
    test starts a worker with them (`start(CONTAINERS_STATS_INTERVAL="1")`).
    """

    log_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    _started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(_test_database_url(), autocommit=True)

    def start(self, **env: str) -> subprocess.Popen[bytes]:
        """Start a worker (another one when one runs) and wait until it has registered."""
        with self._connect() as conn:
            before = conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_workers").fetchone()[0]
        log = (self.log_dir / f"worker-{len(self._started) + 1}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "procrastinate", "worker"],
            cwd=REPO,
            env={**self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self._started.append(process)
        self.process = process
        deadline = time.monotonic() + 30
        with self._connect() as conn:
            while not conn.execute("SELECT 1 FROM procrastinate_workers WHERE id > %s", [before]).fetchone():
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    pytest.fail(f"the queue worker did not start:\n{self.log()[-3000:]}")
                time.sleep(0.1)
        return process

    def kill(self) -> None:
        """kill -9 the current worker: no shutdown, its jobs stay "doing" until recovered."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        for process in self._started:
            if process.poll() is None:
                process.terminate()
        for process in self._started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def queue_worker(transactional_db: None, tmp_path: Path) -> Iterator[QueueWorker]:
    """A real queue worker on the test database, stopped (and the queue emptied) at the end."""
    log_dir = tmp_path / "queue-worker"
    log_dir.mkdir()
    env = child_env(
        DATABASE_URL=_test_database_url(),
        DJANGO_SETTINGS_MODULE="vpnadmin.settings",
        QUEUE_HEARTBEAT_INTERVAL="1",
        QUEUE_STALLED_AFTER="4",
        QUEUE_SHUTDOWN_TIMEOUT="10",
        CONTAINERS_STATS_INTERVAL="0",
        CONTAINERS_SYNC_INTERVAL="0",
    )
    worker = QueueWorker(log_dir=log_dir, env=env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
        print("\n".join(line for line in worker.log().splitlines() if "retry_stalled_jobs" not in line)[-6000:])
        # Queue rows are not Django-managed tables, so the test's flush leaves them: empty them here.
        with worker._connect() as conn:
            conn.execute(f"TRUNCATE {_QUEUE_TABLES}")


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (its own download cannot be had)."""
    # Playwright's sync API runs an event loop in this thread; Django's ORM guard would
    # refuse every query the tests make for set-up. The queries are plain sync calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()
    playwright.stop()


@pytest.fixture
def page(browser: Any, live_app: LiveApp) -> Iterator[Any]:
    context = browser.new_context(base_url=live_app.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def logged_in_page(page: Any, owner: User) -> Any:
    """A browser page logged in as the owner through the real login form."""
    page.goto("/login/")
    page.fill("#id_username", owner.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    return page


# --- services that hang or are gone ------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hanging service."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    """A TCP port nobody listens on: a stopped service."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
