"""Subscription bodies in the formats clients ask for.

- `links_text` / `base64_links`: one share link a line, base64 encoded for v2rayN and the
  clients that copied it (v2rayNG, NekoBox, Shadowrocket, Streisand, Hiddify);
- `singbox_config`: a complete sing-box client config (sing-box 1.11+ schema: a TUN and a
  local mixed inbound, one outbound or endpoint per profile, a selector in front);
- `clash_config`: a Clash.Meta/Mihomo config (proxies, one select group, MATCH rule).

With no profile (a disabled, expired or limited user) every format is still a valid
config for its client, but one that carries no server and refuses all traffic: the
client shows an empty profile instead of silently sending traffic outside the VPN.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

from users.delivery.links import share_link
from users.delivery.profiles import Profile, ShadowsocksProfile, VlessProfile, WireGuardProfile

SELECTOR_TAG = "proxy"
CLASH_GROUP = "Proxy"
LOCAL_MIXED_PORT = 2080
CLASH_MIXED_PORT = 7890


def links_text(profiles: Sequence[Profile]) -> str:
    return "".join(f"{share_link(profile)}\n" for profile in profiles)


def base64_links(profiles: Sequence[Profile]) -> str:
    return base64.b64encode(links_text(profiles).encode()).decode()


def _unique_names(profiles: Sequence[Profile]) -> list[str]:
    """Clients key proxies by name: a repeated name gets " 2", " 3"…"""
    seen: dict[str, int] = {}
    names = []
    for profile in profiles:
        count = seen.get(profile.name, 0) + 1
        seen[profile.name] = count
        names.append(profile.name if count == 1 else f"{profile.name} {count}")
    return names


# --- sing-box --------------------------------------------------------------------------


def _singbox_outbound(profile: Profile, tag: str) -> dict[str, Any]:
    host, port = profile.endpoint.host, profile.endpoint.port
    if isinstance(profile, VlessProfile):
        outbound: dict[str, Any] = {"type": "vless", "tag": tag, "server": host, "server_port": port}
        outbound["uuid"] = profile.uuid
        if profile.flow:
            outbound["flow"] = profile.flow
        if profile.security == "tls":
            outbound["tls"] = {"enabled": True, "server_name": profile.sni or host}
        return outbound
    if isinstance(profile, ShadowsocksProfile):
        return {
            "type": "shadowsocks",
            "tag": tag,
            "server": host,
            "server_port": port,
            "method": profile.method,
            "password": profile.password,
        }
    raise TypeError(f"not an outbound: {profile!r}")


def _singbox_endpoint(profile: WireGuardProfile, tag: str) -> dict[str, Any]:
    endpoint: dict[str, Any] = {
        "type": "wireguard",
        "tag": tag,
        "address": [profile.address],
        "private_key": profile.private_key,
        "peers": [
            {
                "address": profile.endpoint.host,
                "port": profile.endpoint.port,
                "public_key": profile.server_public_key,
                "allowed_ips": list(profile.allowed_ips),
                "persistent_keepalive_interval": profile.keepalive,
            }
        ],
    }
    if profile.mtu:
        endpoint["mtu"] = profile.mtu
    return endpoint


def singbox_config(profiles: Sequence[Profile]) -> dict[str, Any]:
    tags = _unique_names(profiles)
    outbounds: list[dict[str, Any]] = []
    endpoints: list[dict[str, Any]] = []
    for profile, tag in zip(profiles, tags, strict=True):
        if isinstance(profile, WireGuardProfile):
            endpoints.append(_singbox_endpoint(profile, tag))
        else:
            outbounds.append(_singbox_outbound(profile, tag))
    inbounds = [
        {
            "type": "tun",
            "tag": "tun-in",
            "address": ["172.19.0.1/30", "fdfe:dcba:9876::1/126"],
            "auto_route": True,
            "strict_route": True,
        },
        {"type": "mixed", "tag": "mixed-in", "listen": "127.0.0.1", "listen_port": LOCAL_MIXED_PORT},
    ]
    rules: list[dict[str, Any]] = [{"action": "sniff"}, {"protocol": "dns", "action": "hijack-dns"}]
    config: dict[str, Any] = {"log": {"level": "warn"}, "inbounds": inbounds}
    if tags:
        selector = {"type": "selector", "tag": SELECTOR_TAG, "outbounds": tags, "default": tags[0]}
        config["outbounds"] = [selector, *outbounds, {"type": "direct", "tag": "direct"}]
        final = SELECTOR_TAG
    else:
        # Nothing to dial: refuse everything rather than fall back to going direct.
        config["outbounds"] = [{"type": "direct", "tag": "direct"}]
        rules.append({"inbound": ["tun-in", "mixed-in"], "action": "reject"})
        final = "direct"
    if endpoints:
        config["endpoints"] = endpoints
    config["route"] = {"rules": rules, "final": final, "auto_detect_interface": True}
    return config


def singbox_json(profiles: Sequence[Profile]) -> str:
    return json.dumps(singbox_config(profiles), indent=2, ensure_ascii=False) + "\n"


# --- Clash.Meta / Mihomo ------------------------------------------------------------------


def _clash_proxy(profile: Profile, name: str) -> dict[str, Any]:
    base: dict[str, Any] = {"name": name}
    host, port = profile.endpoint.host, profile.endpoint.port
    if isinstance(profile, VlessProfile):
        base.update(type="vless", server=host, port=port, uuid=profile.uuid, network=profile.transport, udp=True)
        base["tls"] = profile.security == "tls"
        if profile.sni:
            base["servername"] = profile.sni
        if profile.flow:
            base["flow"] = profile.flow
        return base
    if isinstance(profile, ShadowsocksProfile):
        base.update(type="ss", server=host, port=port, cipher=profile.method, password=profile.password, udp=True)
        return base
    address = profile.address.split("/", 1)[0]
    base.update(type="wireguard", server=host, port=port)
    base["ipv6" if ":" in address else "ip"] = address
    base.update({"private-key": profile.private_key, "public-key": profile.server_public_key})
    base.update({"allowed-ips": list(profile.allowed_ips), "udp": True})
    if profile.dns:
        base["dns"] = list(profile.dns)
    if profile.mtu:
        base["mtu"] = profile.mtu
    return base


def clash_config(profiles: Sequence[Profile]) -> dict[str, Any]:
    names = _unique_names(profiles)
    config: dict[str, Any] = {
        "mixed-port": CLASH_MIXED_PORT,
        "allow-lan": False,
        "mode": "rule",
        "log-level": "warning",
        "proxies": [_clash_proxy(profile, name) for profile, name in zip(profiles, names, strict=True)],
    }
    if names:
        config["proxy-groups"] = [{"name": CLASH_GROUP, "type": "select", "proxies": names}]
        config["rules"] = [f"MATCH,{CLASH_GROUP}"]
    else:
        config["proxy-groups"] = []
        config["rules"] = ["MATCH,REJECT"]
    return config


_NEEDS_ESCAPE = re.compile(r"[^\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\u2028\u2029\ufeff]")


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A YAML double-quoted scalar: JSON's escapes are YAML's; characters YAML would
    # fold or refuse (controls, line separators, BOM) are escaped too.
    text = json.dumps(str(value), ensure_ascii=False)
    return _NEEDS_ESCAPE.sub(lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) <= 0xFFFF else m.group(), text)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines: list[str] = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml_lines(item, indent + 2)
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                inner = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {inner[0].lstrip()}")
                lines += inner[1:]
            elif isinstance(item, list):
                lines.append(f"{pad}- [{', '.join(_yaml_scalar(x) for x in item)}]")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
        return lines
    return [f"{pad}{_yaml_scalar(value)}"]


def clash_yaml(profiles: Sequence[Profile]) -> str:
    """The Clash config as block-style YAML; every string double-quoted so no name can break it."""
    return "\n".join(_yaml_lines(clash_config(profiles), 0)) + "\n"
