"""The WireGuard client file, as wg-quick and every WireGuard app import it."""

from __future__ import annotations

import re

from users.delivery.profiles import WireGuardProfile

# What wg-quick and the apps accept as an interface name: the file name without ".conf".
_UNSAFE = re.compile(r"[^A-Za-z0-9_=+.-]+")


def wireguard_conf(profile: WireGuardProfile) -> str:
    """`[Interface]` (private key, address, DNS) and one `[Peer]` (the server)."""
    lines = [
        "[Interface]",
        f"PrivateKey = {profile.private_key}",
        f"Address = {profile.address}",
    ]
    if profile.dns:
        lines.append(f"DNS = {', '.join(profile.dns)}")
    if profile.mtu:
        lines.append(f"MTU = {profile.mtu}")
    lines += [
        "",
        "[Peer]",
        f"PublicKey = {profile.server_public_key}",
        f"Endpoint = {profile.endpoint.netloc}",
        f"AllowedIPs = {', '.join(profile.allowed_ips)}",
    ]
    if profile.keepalive:
        lines.append(f"PersistentKeepalive = {profile.keepalive}")
    return "\n".join(lines) + "\n"


def conf_filename(name: str) -> str:
    """A file name wg-quick accepts as an interface name (at most 15 characters before .conf)."""
    stem = _UNSAFE.sub("-", name).strip("-.") or "wg"
    return f"{stem[:15]}.conf"
