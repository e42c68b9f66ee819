"""Talking to Docker engines.

docker-py's `from_env()` calls the daemon at construction and its default timeout (60 s)
is above gunicorn's worker timeout, so clients here are built lazily, with an explicit
API version and a short timeout, and every failure becomes a short message.

One low-level client per host, shared by the threads of a batch: its urllib3 pool is
thread-safe and sized to the host's concurrency (docker-py keeps 10 connections
otherwise, and an 11th concurrent call would wait for a free one).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import docker
import requests
from django.conf import settings
from docker.errors import DockerException
from docker.transport import unixconn

try:  # needs paramiko (requirements.txt); without it docker-py refuses ssh:// itself
    from docker.transport import sshconn
except ImportError:  # pragma: no cover - a partial install
    sshconn = None

if TYPE_CHECKING:
    from containers.models import DockerHost


class _ClosingUnixHTTPConnection(unixconn.UnixHTTPConnection):
    """docker-py's unix connection leaves its socket open when the connect fails (engine
    down), which surfaces later as a ResourceWarning anywhere; close it at once."""

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_socket)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


# The pool builds connections through this module-level name.
unixconn.UnixHTTPConnection = _ClosingUnixHTTPConnection  # type: ignore[misc]


if sshconn is not None:

    class _BoundedSSHSocket(sshconn.SSHSocket):
        """docker-py's ssh transport shells out to `ssh` and reads its stdout with no timeout:
        an unreachable host or a password prompt would hold a thread for minutes. Run ssh in
        batch mode (keys only, never a prompt) with a connect timeout and keep-alives, so a
        host that does not answer ends the ssh process and the call fails instead."""

        def connect(self, **kwargs: object) -> None:
            seconds = str(max(1, math.ceil(settings.DOCKER_TIMEOUT / 2)))
            args = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={seconds}"]
            args += ["-o", f"ServerAliveInterval={seconds}", "-o", "ServerAliveCountMax=2"]
            if self.user:
                args += ["-l", self.user]
            if self.port:
                args += ["-p", self.port]
            args += ["--", self.host, "docker system dial-stdio"]
            env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")}
            self.proc = subprocess.Popen(
                args,
                env=env,
                stdout=subprocess.PIPE,
                stdin=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # ssh's own messages would land in the server log
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
            )

        def close(self) -> None:
            # docker-py's close leaves the ssh process unreaped and the unused socket its
            # class opens: end both. Its stdout belongs to the HTTP response reading it.
            proc, self.proc = self.proc, None
            if proc is not None:
                with contextlib.suppress(OSError, ValueError):
                    proc.stdin.close()
                proc.terminate()
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            socket.socket.close(self)

    sshconn.SSHSocket = _BoundedSSHSocket  # type: ignore[misc]

# Debian 12's engine (20.10) speaks 1.41; pinning it avoids a version round trip.
DOCKER_API_VERSION = "1.41"
# Stats reads mostly wait inside the engine (it samples for about a second), so they
# run wider than writes; the pool holds enough connections for either.
STATS_CONCURRENCY = 32
MAX_MESSAGE = 240
_LONG_ID = re.compile(r"\b[0-9a-f]{64}\b")


def describe_engine_error(exc: BaseException) -> str:
    """One short line for an engine failure, whatever layer raised it."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        message = "engine did not answer in time"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        message = "engine unreachable (connection refused or socket missing)"
    elif isinstance(exc, docker.errors.APIError):
        message = f"engine error: {exc.explanation or exc.status_code}"
    elif isinstance(exc, DockerException):
        message = f"engine error: {exc}"
    else:
        message = f"{type(exc).__name__}: {exc}"
    # Container ids as `docker ps` shows them; when still too long, keep the head and the
    # tail (the runtime's chain of wrappers sits in the middle, the cause at the end).
    message = _LONG_ID.sub(lambda m: m.group(0)[:12], message)
    if len(message) <= MAX_MESSAGE:
        return message
    return message[:80] + " … " + message[-(MAX_MESSAGE - 83) :]


def is_unreachable(exc: BaseException) -> bool:
    """The engine itself cannot be reached: every further call to it would fail the same way."""
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return False  # it answered the connect: one slow call, not a dead engine
    return isinstance(exc, requests.exceptions.ConnectionError | ConnectionError)


@dataclass(frozen=True)
class EngineAddress:
    """Everything that decides how to reach one engine; a change makes a new client."""

    base_url: str
    tls_ca_cert: str = ""
    tls_client_cert: str = ""
    tls_client_key: str = ""
    pool_size: int = 10

    @classmethod
    def of(cls, host: DockerHost) -> EngineAddress:
        return cls(
            base_url=host.base_url,
            tls_ca_cert=host.tls_ca_cert,
            tls_client_cert=host.tls_client_cert,
            tls_client_key=host.tls_client_key,
            pool_size=max(host.max_concurrent, STATS_CONCURRENCY),
        )


_clients: dict[EngineAddress, docker.APIClient] = {}
_clients_lock = threading.Lock()


def _build_client(address: EngineAddress, timeout: float) -> docker.APIClient:
    tls: docker.tls.TLSConfig | bool = False
    if address.tls_client_cert:
        tls = docker.tls.TLSConfig(
            client_cert=(address.tls_client_cert, address.tls_client_key),
            ca_cert=address.tls_ca_cert or None,
            verify=address.tls_ca_cert or True,
        )
    return docker.APIClient(
        base_url=address.base_url,
        version=DOCKER_API_VERSION,
        timeout=timeout,
        tls=tls,
        max_pool_size=address.pool_size,
        # ssh:// shells out to the system's ssh client (no paramiko needed).
        use_ssh_client=address.base_url.startswith("ssh://"),
    )


def client_for(host: DockerHost) -> docker.APIClient:
    """The shared client of one host, built on first use (never contacts the engine here)."""
    return client_for_address(EngineAddress.of(host))


def client_for_address(address: EngineAddress) -> docker.APIClient:
    """The shared client of one engine address (TLS and ssh settings included)."""
    with _clients_lock:
        client = _clients.get(address)
        if client is None:
            client = _build_client(address, settings.DOCKER_TIMEOUT)
            _clients[address] = client
        return client


def close_clients() -> None:
    """Drop every pooled client (tests, after a host's address changed)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()


def ping_host(host: DockerHost, *, timeout: float | None = None) -> str:
    """The engine version of one host; raises on failure."""
    return ping_address(EngineAddress.of(host), timeout=timeout)


def ping_address(address: EngineAddress, *, timeout: float | None = None) -> str:
    """The engine version at one address, from the ping's headers; raises on failure."""
    if timeout is None:
        timeout = settings.HEALTH_CHECK_TIMEOUT
    client = client_for_address(address)
    response = client._get(client._url("/_ping"), timeout=timeout)
    client._raise_for_status(response)
    server = response.headers.get("Server", "")
    return server.split("/", 1)[-1].split(" ", 1)[0] if "/" in server else response.headers.get("Api-Version", "?")
