"""WireGuard end to end: the peer set a real wireguard-go server reports follows the users table.

The server container has no network of its own (network_mode none: its wg0 lives in the
container's namespace, reached with docker exec). The handshake test joins a namespace
the test creates to the container's namespace with a veth pair made inside those two
namespaces only: no tunnel interface or address ever touches the machine's own.
"""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import contextlib
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from django.conf import settings

from containers.models import ApplyState, DockerHost, VpnServer
from containers.sync import servers_apply, servers_poll_traffic
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    apply_count,
    exec_in,
    start_server,
    tun_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch, users_delete, users_set_active

pytestmark = pytest.mark.django_db(transaction=True)


def _make_users(server: VpnServer, count: int, prefix: str = "w") -> list[VpnUser]:
    rows = [{"username": f"{prefix}{i:05d}", "protocol": "wireguard", "server_id": server.pk} for i in range(count)]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors[:3]
    return list(VpnUser.objects.filter(pk__in=result.ids).order_by("pk"))


def _peers(server: VpnServer) -> set[tuple[str, str]]:
    lines = exec_in(server, "wg", "show", "wg0", "dump").splitlines()[1:]
    return {(fields[0], fields[3]) for fields in (line.split("\t") for line in lines)}


def _served(server: VpnServer) -> set[tuple[str, str]]:
    rows = VpnUser.objects.filter(server=server, is_active=True).values_list("wg_public_key", "wg_address")
    return {(key, f"{address}/32") for key, address in rows}


def _converge(server: VpnServer) -> None:
    outcome = servers_apply(server_id=server.pk)
    server.refresh_from_db()
    assert outcome.state == ApplyState.APPLIED, outcome.message


def test_the_peer_set_wireguard_reports_equals_the_active_users_after_every_batch(
    tun_host: DockerHost, start_server: Callable[..., VpnServer]
) -> None:
    server = start_server(tun_host, "wireguard")
    users = _make_users(server, 6)
    _converge(server)
    wait_ready(server)
    assert server.wg_public_key and server.wg_subnet == "10.8.0.0/24"
    assert _peers(server) == _served(server)
    addresses = [u.wg_address for u in VpnUser.objects.filter(server=server)]
    assert len(set(addresses)) == 6 and "10.8.0.1" not in addresses

    users_set_active(actor=None, users=VpnUser.objects.filter(pk__in=[users[0].pk, users[1].pk]), active=False)
    _converge(server)
    assert _peers(server) == _served(server)
    assert len(_peers(server)) == 4

    freed = VpnUser.objects.get(pk=users[2].pk).wg_address
    users_delete(actor=None, users=VpnUser.objects.filter(pk=users[2].pk))
    _converge(server)
    assert _peers(server) == _served(server)
    (newcomer,) = _make_users(server, 1, prefix="n")
    _converge(server)
    newcomer.refresh_from_db()
    assert newcomer.wg_address == freed
    assert _peers(server) == _served(server)
    assert apply_count(server) == 4


def test_the_same_peer_set_applied_again_changes_nothing_on_the_server(
    tun_host: DockerHost, start_server: Callable[..., VpnServer]
) -> None:
    server = start_server(tun_host, "wireguard")
    _make_users(server, 3)
    _converge(server)
    _converge(server)
    assert apply_count(server) == 1


# --- a real handshake, inside namespaces the test makes -------------------------------


def _ip(*argv: str, netns: str | None = None) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@contextlib.contextmanager
def _client_namespace(server: VpnServer, user: VpnUser, tmp_path: Path) -> Iterator[str]:
    """A namespace joined to the server container's by a veth pair, with a WireGuard client as `user`."""
    tag = uuid.uuid4().hex[:6]
    netns, iface = f"h5wg-{tag}", f"wgc{tag}"
    client = docker.APIClient(base_url=settings.DOCKER_HOST, version="1.41")
    pid = client.inspect_container(server.container_id)["State"]["Pid"]
    _ip("ip", "netns", "add", netns)
    process: subprocess.Popen[bytes] | None = None
    try:
        _ip("ip", "link", "set", "lo", "up", netns=netns)
        # Both ends are made inside the two namespaces: the machine's own never sees them.
        _ip("ip", "link", "add", f"vc{tag}", "type", "veth", "peer", "name", "vs0", "netns", str(pid), netns=netns)
        _ip("ip", "address", "add", "192.0.2.1/30", "dev", f"vc{tag}", netns=netns)
        _ip("ip", "link", "set", f"vc{tag}", "up", netns=netns)
        exec_in(server, "ip", "address", "add", "192.0.2.2/30", "dev", "vs0")
        exec_in(server, "ip", "link", "set", "vs0", "up")
        with (tmp_path / f"{iface}.log").open("wb") as log:
            process = subprocess.Popen(
                ["ip", "netns", "exec", netns, "wireguard-go", "-f", iface], stdout=log, stderr=subprocess.STDOUT
            )
        for _ in range(50):
            if Path(f"/var/run/wireguard/{iface}.sock").exists():
                break
            time.sleep(0.1)
        key = tmp_path / "client.key"
        key.write_text(user.wg_private_key + "\n")
        _ip("wg", "set", iface, "private-key", str(key), "peer", server.wg_public_key,
            "endpoint", f"192.0.2.2:{server.port}", "allowed-ips", "10.8.0.1/32", netns=netns)  # fmt: skip
        _ip("ip", "address", "add", f"{user.wg_address}/24", "dev", iface, netns=netns)
        _ip("ip", "link", "set", iface, "up", netns=netns)
        yield iface
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", netns], check=False)


def _client_counted(netns: str, iface: str) -> int:
    """Bytes the client's own WireGuard interface counted, both ways (`wg show … transfer`)."""
    output = _ip("wg", "show", iface, "transfer", netns=netns)
    return sum(int(rx) + int(tx) for _, rx, tx in (line.split("\t") for line in output.splitlines()))


def _fetch(netns: str, size: int) -> int:
    argv = ["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}"]
    done = subprocess.run(
        # Paced: wireguard-go in a busy 2-core namespace drops bursts, and the server counts what it sent.
        [*argv, "--limit-rate", "4M", "--max-time", "10", f"http://10.8.0.1:8080/blob{size}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(done.stdout or 0)


def test_a_wireguard_user_fetches_through_the_tunnel_its_bytes_are_counted_and_adding_users_keeps_it_connected(
    tun_host: DockerHost, start_server: Callable[..., VpnServer], tmp_path: Path
) -> None:
    server = start_server(tun_host, "wireguard")
    (user,) = _make_users(server, 1)
    _converge(server)
    wait_ready(server)
    user.refresh_from_db()
    size = 1_000_000
    # The page the client fetches is served inside the server's own namespace, on its tunnel address.
    exec_in(server, "sh", "-c", f"mkdir -p /www && head -c {size} /dev/urandom > /www/blob{size}")
    exec_in(server, "httpd", "-p", "10.8.0.1:8080", "-h", "/www")

    with _client_namespace(server, user, tmp_path) as iface:
        netns = f"h5wg-{iface[3:]}"
        assert _fetch(netns, size) == size
        handshake_before = _handshake(server, user)
        assert handshake_before > 0

        _make_users(server, 5, prefix="x")
        _converge(server)
        # Same session: syncconf left this peer alone (no new handshake needed to keep going).
        assert _fetch(netns, size) == size
        assert _handshake(server, user) == handshake_before
        counted = _client_counted(netns, iface)

    servers_poll_traffic()
    user.refresh_from_db()
    # Both ends count the tunnel's packets (the fetches plus IP/TCP/WireGuard overhead).
    assert counted > 2 * size
    assert abs(user.used_traffic - counted) <= counted * 0.05, (user.used_traffic, counted)
    assert user.last_online_at is not None


def _handshake(server: VpnServer, user: VpnUser) -> int:
    for line in exec_in(server, "wg", "show", "wg0", "dump").splitlines()[1:]:
        fields = line.split("\t")
        if fields[0] == user.wg_public_key:
            return int(fields[4])
    return 0
