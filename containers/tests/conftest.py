"""Fixtures for the containers tests: the two real engines as hosts, and cleanup."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
import requests
from django.conf import settings

from conftest import REPO, RUN_ID, TEST_IMAGE, TEST_LABEL, docker_client_for
from containers.engine import close_clients
from containers.models import BatchJob, DockerHost, VpnServer

SECOND_SOCKET = "unix:///var/run/vpnadmin-docker2.sock"
SECOND_PIDFILE = Path("/var/run/vpnadmin-docker2.pid")
# A container that runs until stopped and stops at once on SIGTERM (as PID 1, sh needs the trap).
RUNS = "sh -c 'trap \"exit 0\" TERM; sleep 3600 & wait'"


def _remove_run_containers(base_url: str) -> None:
    client = docker_client_for(base_url)
    # An engine a test stopped has nothing to remove.
    with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
        for container in client.containers.list(all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}):
            container.remove(force=True)
    client.close()


@pytest.fixture(autouse=True)
def _remove_test_containers() -> Iterator[None]:
    """Containers the services create carry this run's label (DOCKER_EXTRA_LABELS): remove them."""
    yield
    for base_url in (settings.DOCKER_HOST, SECOND_SOCKET):
        _remove_run_containers(base_url)


@pytest.fixture
def local_host(db: None) -> DockerHost:
    return DockerHost.objects.create(name="local", base_url=settings.DOCKER_HOST, network_mode="none")


@pytest.fixture
def second_host(db: None) -> DockerHost:
    return DockerHost.objects.create(name="second", base_url=SECOND_SOCKET, network_mode="none")


@pytest.fixture
def make_server(db: None) -> Callable[..., VpnServer]:
    counter = iter(range(20000, 40000))

    def make(host: DockerHost, *, command: str = RUNS, **fields: object) -> VpnServer:
        port = next(counter)
        defaults: dict[str, object] = {
            "name": f"vpn-{RUN_ID}-{host.name}-{port}",
            "protocol": "vless",
            "image": TEST_IMAGE,
            "port": port,
            "command": command,
        }
        defaults.update(fields)
        return VpnServer.objects.create(host=host, **defaults)

    return make


def _engine_answers(base_url: str) -> bool:
    client = docker_client_for(base_url)
    try:
        client.api.timeout = 2
        client.ping()
        return True
    except Exception:
        return False
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stopped_second_engine() -> Iterator[None]:
    """The second engine killed for this test, started again as scripts/prepare-test-machine.sh does."""
    pid = int(SECOND_PIDFILE.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _engine_answers(SECOND_SOCKET), "the second engine did not stop"
    close_clients()
    try:
        yield
    finally:
        subprocess.run(["bash", "scripts/prepare-test-machine.sh"], cwd=REPO, check=True, capture_output=True)
        close_clients()


@pytest.fixture
def silent_engine_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung engine."""
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(64)
        yield f"unix://{path}"


def wait_for_job(job_id: int, *, seconds: float = 120) -> BatchJob:
    """The job once a queue worker has closed it (a generous bound: this waits, it does not time)."""
    deadline = time.monotonic() + seconds
    while True:
        job = BatchJob.objects.get(pk=job_id)
        if not job.is_active:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status} ({job.processed} of {job.total})"
        time.sleep(0.2)
