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
from collections.abc import Callable, Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import docker
import requests
from django.conf import settings
from docker.errors import DockerException
from docker.transport import unixconn

try:  # needs paramiko (requirements.txt); without it docker-py refuses ssh:// itself
    from docker.transport import sshconn
except ImportError:  # pragma: no cover - a partial install
    sshconn = None  # type: ignore[assignment]  # checked below before use

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
        """docker-py's ssh transport shells out to `ssh` and reads its stdout pipe with no
        timeout: a host that accepts the connection and then stalls (a wedged sshd, a
        middlebox, a hung `docker system dial-stdio`) would hold a thread for ever.

        Here ssh talks through one end of a socket pair and docker-py reads the other end,
        a real socket: the client's timeout is a read deadline on every call, as for the
        unix and TLS transports. ssh itself runs in batch mode (keys only, never a prompt)
        with a connect timeout and keep-alives (which cover the connection once it is up).
        """

        _channel: socket.socket | None = None
        _deadline: float | None = None

        def connect(self, *args: Any, **kwargs: Any) -> None:
            seconds = str(max(1, math.ceil(settings.DOCKER_TIMEOUT / 2)))
            argv = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={seconds}"]
            argv += ["-o", f"ServerAliveInterval={seconds}", "-o", "ServerAliveCountMax=2"]
            if self.user:
                argv += ["-l", self.user]
            if self.port:
                argv += ["-p", self.port]
            argv += ["--", self.host, "docker system dial-stdio"]
            env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")}
            ours, theirs = socket.socketpair()
            try:
                self.proc = subprocess.Popen(
                    argv,
                    env=env,
                    stdin=theirs.fileno(),
                    stdout=theirs.fileno(),
                    stderr=subprocess.DEVNULL,  # ssh's own messages would land in the server log
                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                )
            except BaseException:
                ours.close()
                raise
            finally:
                theirs.close()  # the child holds its copy
            ours.settimeout(self._deadline)
            self._channel = ours

        def _open(self) -> socket.socket:
            if self._channel is None:
                raise OSError("ssh engine connection is not open")
            return self._channel

        # urllib3 sets the call's timeout before each request and each read.
        def settimeout(self, value: float | None) -> None:
            self._deadline = value
            if self._channel is not None:
                self._channel.settimeout(value)

        def gettimeout(self) -> float | None:
            return self._deadline

        def fileno(self) -> int:
            # urllib3 polls it to tell a dropped connection (ssh exited) from a live one.
            return self._channel.fileno() if self._channel is not None else -1

        def sendall(self, data: Any, *args: Any) -> None:
            self._open().sendall(data)

        def send(self, data: Any, *args: Any) -> int:
            return self._open().send(data)

        def recv(self, n: int, *args: Any) -> bytes:
            return self._open().recv(n)

        def recv_into(self, buffer: Any, *args: Any) -> int:
            return self._open().recv_into(buffer)

        def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            # http.client reads the response through this file: the socket's timeout applies.
            if self._channel is None:
                self.connect()
            channel: Any = self._open()  # the mode is http.client's own ("rb")
            return channel.makefile(mode)

        def close(self) -> None:
            # End ssh (it would otherwise linger unreaped) and both sockets.
            channel, self._channel = self._channel, None
            proc = self.proc
            self.proc = None
            if channel is not None:
                with contextlib.suppress(OSError):
                    channel.shutdown(socket.SHUT_RDWR)
                channel.close()
            if proc is not None:
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
        timeout=timeout,  # type: ignore[arg-type]  # docker-py takes seconds as a float; its stubs say int
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
    # docker-py's ping() takes no per-call timeout: its request helpers do (private, stable since 2.x).
    client: Any = client_for_address(address)
    response = client._get(client._url("/_ping"), timeout=timeout)
    client._raise_for_status(response)
    server = response.headers.get("Server", "")
    return server.split("/", 1)[-1].split(" ", 1)[0] if "/" in server else response.headers.get("Api-Version", "?")


# --- asking every host at once ---------------------------------------------------------

H = TypeVar("H", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True)
class HostAnswer(Generic[T]):
    """What one host answered: a value, or the one-line reason it did not."""

    value: T | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def fan_out(hosts: Iterable[H], fn: Callable[[H], T], timeout: float | None = None) -> dict[H, HostAnswer[T]]:
    """Call `fn(host)` for every host at once; each host's answer, in the order given.

    A failure is that host's answer (an engine being down is a state, not an error).
    With `timeout`, the caller waits at most that long in all, whatever the number of
    hosts: a host still silent then is answered "no answer within N s" and its thread is
    left to end on its own socket deadline (every engine call has one). Without it, the
    caller waits for every call, each bounded by the client's DOCKER_TIMEOUT.
    """
    host_list = list(dict.fromkeys(hosts))
    if not host_list:
        return {}
    pool = ThreadPoolExecutor(max_workers=len(host_list), thread_name_prefix="fan-out")
    try:
        futures = {host: pool.submit(fn, host) for host in host_list}
        wait(futures.values(), timeout=timeout)
    finally:
        # Never wait here for a straggler: the deadline above is the caller's whole wait.
        pool.shutdown(wait=timeout is None, cancel_futures=True)
    answers: dict[H, HostAnswer[T]] = {}
    for host, future in futures.items():
        if not future.done():
            answers[host] = HostAnswer(error=f"no answer within {timeout:g} s")
            continue
        try:
            answers[host] = HostAnswer(value=future.result())
        except Exception as exc:  # each host's failure is its own answer
            answers[host] = HostAnswer(error=describe_engine_error(exc))
    return answers
