"""Share links as clients import them (v2rayN/v2rayNG, Hiddify, NekoBox, sing-box apps).

- VLESS: the XTLS share-link form, `vless://UUID@host:port?encryption=none&security=…&type=…#name`;
- Shadowsocks: SIP002, `ss://base64url(method:password)@host:port#name` (no padding);
- WireGuard: the `wireguard://privatekey@host:port?publickey=…&address=…#name` form of
  v2rayN and sing-box clients (the `.conf` in `wireguard.py` is the canonical file).

The name travels in the fragment, percent-encoded in full: spaces, `#`, `&`, emoji and
anything else stay inside the fragment and never break the link.
"""

from __future__ import annotations

import base64
from urllib.parse import quote, urlencode

from users.delivery.profiles import Profile, ShadowsocksProfile, VlessProfile, WireGuardProfile


def fragment(name: str) -> str:
    """The display name as a URL fragment: every reserved or non-ASCII character encoded."""
    return quote(name, safe="")


def vless_link(profile: VlessProfile) -> str:
    params = {"encryption": "none", "security": profile.security, "type": profile.transport}
    if profile.transport == "tcp":
        params["headerType"] = "none"
    if profile.flow:
        params["flow"] = profile.flow
    if profile.sni:
        params["sni"] = profile.sni
    query = urlencode(params, quote_via=quote)
    return f"vless://{quote(profile.uuid, safe='')}@{profile.endpoint.netloc}?{query}#{fragment(profile.name)}"


def ss_link(profile: ShadowsocksProfile) -> str:
    userinfo = base64.urlsafe_b64encode(f"{profile.method}:{profile.password}".encode()).decode().rstrip("=")
    return f"ss://{userinfo}@{profile.endpoint.netloc}#{fragment(profile.name)}"


def wireguard_link(profile: WireGuardProfile) -> str:
    params = {"publickey": profile.server_public_key, "address": profile.address}
    if profile.mtu:
        params["mtu"] = str(profile.mtu)
    query = urlencode(params, quote_via=quote, safe="")
    key = quote(profile.private_key, safe="")
    return f"wireguard://{key}@{profile.endpoint.netloc}?{query}#{fragment(profile.name)}"


def share_link(profile: Profile) -> str:
    if isinstance(profile, VlessProfile):
        return vless_link(profile)
    if isinstance(profile, ShadowsocksProfile):
        return ss_link(profile)
    return wireguard_link(profile)
