"""Which format a subscription request wants: `?format=` first, then the client's User-Agent.

The User-Agent rules follow what peer panels (Marzban, Remnawave) answer each client
with: Clash-family apps get Clash.Meta YAML, sing-box apps get sing-box JSON, everything
else that is not a browser gets the base64 list v2rayN made the common denominator.
"""

from __future__ import annotations

import re

BASE64 = "base64"
LINKS = "links"
SINGBOX = "singbox"
CLASH = "clash"
WIREGUARD = "wireguard"
HTML = "html"

# ?format= values and the names clients and operators use for them.
FORMAT_NAMES = {
    "base64": BASE64,
    "v2ray": BASE64,
    "v2rayn": BASE64,
    "links": LINKS,
    "text": LINKS,
    "singbox": SINGBOX,
    "sing-box": SINGBOX,
    "json": SINGBOX,
    "clash": CLASH,
    "clash-meta": CLASH,
    "mihomo": CLASH,
    "yaml": CLASH,
    "wireguard": WIREGUARD,
    "conf": WIREGUARD,
    "html": HTML,
}

_CLASH_AGENTS = re.compile(r"^(clash|mihomo|stash|flclash|koala-?clash|clashmi|clash-?verge|clashx)", re.IGNORECASE)
_SINGBOX_AGENTS = re.compile(r"^(sfa|sfi|sfm|sft|karing|hiddify)|sing-?box", re.IGNORECASE)
_BROWSER = re.compile(r"^Mozilla/", re.IGNORECASE)


def choose_format(requested: str | None, user_agent: str, accept: str) -> str | None:
    """The format to answer with, or None for a `?format=` value no format has."""
    if requested:
        return FORMAT_NAMES.get(requested.strip().lower())
    if _CLASH_AGENTS.search(user_agent):
        return CLASH
    if _SINGBOX_AGENTS.search(user_agent):
        return SINGBOX
    # A browser (not an app that borrows a browser-like User-Agent) asks for HTML first.
    if _BROWSER.search(user_agent) and "text/html" in accept:
        return HTML
    return BASE64
