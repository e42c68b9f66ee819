"""Fixtures for the VPN data-plane tests: real server containers, real clients, a local origin.

Server containers of VLESS and Shadowsocks listen on 127.0.0.1 ports through the host
network (the test host is marked for it); WireGuard servers run with no network at all
(network_mode none, their interface in the container's own namespace, reached by docker
exec). Clients are Debian's own: v2ray as a VLESS client, ss-local. Every byte stays on
127.0.0.1. Loaded by containers/tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from conftest import RUN_ID
from containers.kinds import kind_for
from containers.models import DockerHost, ObservedState, VpnServer
from containers.services import servers_create, servers_start_batch

IMAGES = {
    "vless": "vpnadmin-test/v2ray:latest",
    "shadowsocks": "vpnadmin-test/shadowsocks:latest",
    "wireguard": "vpnadmin-test/wireguard:latest",
}


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_block(size: int) -> int:
    """The first of `size` consecutive loopback ports nobody holds now (TCP and UDP)."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        base = rng.randrange(42000, 60000 - size)
        if all(_port_free(p) for p in range(base, base + size)):
            return base
    raise RuntimeError("no free block of loopback ports")


# --- the origin the clients fetch from ----------------------------------------------------


class _Blob(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        size = int(self.path.rsplit("/", 1)[-1] or 0)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        chunk = os.urandom(min(size, 65536)) if size else b""
        left = size
        while left > 0:
            part = chunk[: min(left, len(chunk))]
            self.wfile.write(part)
            left -= len(part)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def origin() -> Iterator[str]:
    """An HTTP server on 127.0.0.1: GET /bytes/N answers N random bytes."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Blob)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def fetch(socks_port: int, url: str, *, timeout: float = 8) -> int:
    """Bytes a client fetched through the SOCKS port (0 when the server refused it)."""
    argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", str(timeout)]
    done = subprocess.run(
        [*argv, "--socks5-hostname", f"127.0.0.1:{socks_port}", url],
        capture_output=True,
        text=True,
        check=False,
    )
    code, _, size = done.stdout.partition(" ")
    return int(size or 0) if code == "200" else 0


def fetch_until(socks_port: int, url: str, *, ok: bool, attempts: int = 40) -> int:
    """Fetch until it works (ok) or until it is refused (not ok); the last result."""
    got = 0
    for _ in range(attempts):
        got = fetch(socks_port, url, timeout=4)
        if bool(got) == ok:
            return got
        time.sleep(0.25)
    return got


# --- clients ---------------------------------------------------------------------------


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(100):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"client exited: {log.read_text()[-500:]}")
        time.sleep(0.05)
    raise RuntimeError(f"client never listened on {port}: {log.read_text()[-500:]}")


@contextlib.contextmanager
def _client(argv: list[str], port: int, log: Path) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def vless_client(tmp_path: Path) -> Callable[..., contextlib.AbstractContextManager[int]]:
    """v2ray as a VLESS client: a SOCKS port on 127.0.0.1 relaying through the server as `uuid`."""

    def start(server_port: int, uuid: str) -> contextlib.AbstractContextManager[int]:
        port = free_port_block(1)
        config = {
            "log": {"loglevel": "warning"},
            "inbounds": [{"listen": "127.0.0.1", "port": port, "protocol": "socks", "settings": {"udp": False}}],
            "outbounds": [
                {
                    "protocol": "vless",
                    "settings": {
                        "vnext": [
                            {"address": "127.0.0.1", "port": server_port, "users": [{"id": uuid, "encryption": "none"}]}
                        ]
                    },
                    "streamSettings": {"network": "tcp"},
                }
            ],
        }
        path = tmp_path / f"client-{port}.json"
        path.write_text(json.dumps(config))
        return _client(["v2ray", "-config", str(path)], port, tmp_path / f"client-{port}.log")

    return start


@pytest.fixture
def ss_client(tmp_path: Path) -> Callable[..., contextlib.AbstractContextManager[int]]:
    """ss-local: a SOCKS port on 127.0.0.1 relaying through the user's port with its password."""

    def start(server_port: int, password: str, method: str = "chacha20-ietf-poly1305") -> Any:
        port = free_port_block(1)
        argv = ["ss-local", "-s", "127.0.0.1", "-p", str(server_port), "-k", password, "-m", method]
        argv += ["-b", "127.0.0.1", "-l", str(port)]
        return _client(argv, port, tmp_path / f"ss-local-{port}.log")

    return start


# --- hosts and servers -----------------------------------------------------------------


@pytest.fixture
def vpn_host(db: None) -> DockerHost:
    """The local engine, marked for host networking: servers listen on 127.0.0.1 ports."""
    return DockerHost.objects.create(
        name="vpn-local", base_url=settings.DOCKER_HOST, network_mode="host", allow_host_network=True
    )


@pytest.fixture
def tun_host(db: None) -> DockerHost:
    """The same engine, no network: WireGuard servers keep their interface in their own namespace."""
    return DockerHost.objects.create(name="tun-local", base_url=settings.DOCKER_HOST, network_mode="none")


def wait_ready(server: VpnServer, *, attempts: int = 100) -> None:
    """Until the core answers through the engine (a first config may still be on its way)."""
    kind = kind_for(server)
    message = ""
    for _ in range(attempts):
        message = kind.health(server)
        if not message:
            return
        time.sleep(0.1)
    raise AssertionError(f"server {server.name} never became healthy: {message}")


@pytest.fixture
def start_server(db: None) -> Callable[..., VpnServer]:
    """A server of `protocol` created and started through the panel's own services."""

    def start(host: DockerHost, protocol: str, *, users_ports: int = 1, **fields: Any) -> VpnServer:
        port = free_port_block(1 + users_ports)
        kind = kind_for(protocol)
        options: dict[str, Any] = {}
        if kind.cap_add:
            options["cap_add"] = list(kind.cap_add)
        if kind.devices:
            options["devices"] = [f"{d}:{d}" for d in kind.devices]
        server = servers_create(
            actor=None,
            host=host,
            name=f"vpn-{RUN_ID}-{protocol[:2]}-{port}",
            protocol=protocol,
            image=IMAGES[protocol],
            port=port,
            environment={"VPNADMIN_LISTEN": "127.0.0.1"},
            options=options,
            desired_state="running",
        )
        if fields:  # data-plane fields (subnet, public host) are set by an operator afterwards
            VpnServer.objects.filter(pk=server.pk).update(**fields)
        outcome = servers_start_batch(servers=VpnServer.objects.filter(pk=server.pk))
        assert outcome.failed == 0, outcome.summary
        server.refresh_from_db()
        assert server.observed_state == ObservedState.RUNNING
        return server

    return start


def exec_in(server: VpnServer, *argv: str) -> str:
    from containers.kinds.base import run

    code, output = run(server, list(argv))
    assert code == 0, output
    return output


def apply_count(server: VpnServer) -> int:
    """Changes the server actually took (one line each in its apply log)."""
    from containers.kinds.base import run

    code, output = run(server, ["cat", "/etc/vpn/applies.log"])
    return len(output.split()) if code == 0 else 0
