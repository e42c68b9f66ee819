"""VPN server kinds: one small driver per protocol behind one interface (see base.py).

A new kind is one module with a class following `ServerKind` and one line in `KINDS`;
the apply, traffic and page code never branch on the protocol.
"""

from __future__ import annotations

from containers.kinds.base import ApplyRejected, ApplyResult, ServerKind, UserEntry
from containers.kinds.shadowsocks import ShadowsocksKind
from containers.kinds.vless import VlessKind
from containers.kinds.wireguard import WireGuardKind
from containers.models import Protocol, VpnServer

KINDS: dict[str, ServerKind] = {
    Protocol.VLESS: VlessKind(),
    Protocol.SHADOWSOCKS: ShadowsocksKind(),
    Protocol.WIREGUARD: WireGuardKind(),
}


def kind_for(server: VpnServer | str) -> ServerKind:
    """The driver of a server (or of a protocol name)."""
    protocol = server if isinstance(server, str) else server.protocol
    try:
        return KINDS[protocol]
    except KeyError:
        raise ValueError(f"no server kind for protocol {protocol!r}") from None


__all__ = ["KINDS", "ApplyRejected", "ApplyResult", "ServerKind", "UserEntry", "kind_for"]
