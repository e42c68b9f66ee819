"""A user and its server as one connection profile per protocol, or the reason there is none.

The profile holds exactly what a client needs to dial the server. It is built from the
server's public fields (what clients dial, not the engine URL) and the user's decrypted
credentials; `Unavailable` carries a sentence an operator can act on.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.conf import settings

from containers.models import Protocol

if TYPE_CHECKING:
    from containers.models import VpnServer
    from users.models import VpnUser


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    @property
    def netloc(self) -> str:
        """`host:port`, with an IPv6 address in brackets as URLs and WireGuard want it."""
        return f"[{self.host}]:{self.port}" if _is_ipv6(self.host) else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class VlessProfile:
    name: str
    endpoint: Endpoint
    uuid: str
    # What the server's inbound speaks; the test servers (Debian's v2ray) serve plain TCP.
    transport: str = "tcp"
    security: str = "none"
    flow: str = ""
    sni: str = ""

    protocol = Protocol.VLESS

    def __repr__(self) -> str:
        return f"<VlessProfile {self.name} {self.endpoint.netloc}>"


@dataclass(frozen=True)
class ShadowsocksProfile:
    name: str
    endpoint: Endpoint
    method: str
    password: str

    protocol = Protocol.SHADOWSOCKS

    def __repr__(self) -> str:
        return f"<ShadowsocksProfile {self.name} {self.endpoint.netloc}>"


@dataclass(frozen=True)
class WireGuardProfile:
    name: str
    endpoint: Endpoint
    private_key: str
    address: str  # with its prefix length: 10.8.0.2/32
    server_public_key: str
    dns: tuple[str, ...] = ()
    allowed_ips: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    keepalive: int = 25
    mtu: int | None = None

    protocol = Protocol.WIREGUARD

    def __repr__(self) -> str:
        return f"<WireGuardProfile {self.name} {self.endpoint.netloc}>"


Profile = VlessProfile | ShadowsocksProfile | WireGuardProfile


@dataclass(frozen=True)
class Unavailable:
    """Why a user has no working connection material; `reason` is shown to operators."""

    reason: str
    missing: tuple[str, ...] = field(default=())


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def server_endpoint(server: VpnServer) -> Endpoint | Unavailable:
    host = (server.public_host or "").strip()
    if not host:
        return Unavailable(
            f"Server {server.name} has no public host: set the host name or address clients dial on the server.",
            ("public_host",),
        )
    return Endpoint(host, server.public_port or server.port)


def ss_method(server: VpnServer) -> str:
    """The server's method, as its driver configures ss-manager with it (one source of truth)."""
    from containers.kinds.shadowsocks import method_of

    return method_of(server)


def readiness(user: VpnUser, server: VpnServer | None = None) -> Endpoint | Unavailable:
    """Where this user's clients dial, or what is missing: everything but the credentials.

    Reads only the user's server fields and allocations, so the user page can say what
    is missing without loading (or revealing) a secret.
    """
    server = server if server is not None else user.server
    if server is None:
        return Unavailable("No server serves this user: choose one in Edit.", ("server",))
    if server.protocol != user.protocol:
        return Unavailable(
            f"Server {server.name} speaks {server.get_protocol_display()}, this user {user.get_protocol_display()}.",
            ("protocol",),
        )
    endpoint = server_endpoint(server)
    if isinstance(endpoint, Unavailable):
        return endpoint
    if user.protocol == Protocol.SHADOWSOCKS:
        if not user.ss_port:
            return Unavailable(
                f"Server {server.name} has not given this user a port yet: it gets one at the next apply.",
                ("ss_port",),
            )
        # ss-manager runs one ss-server per user, on the user's own port.
        return Endpoint(endpoint.host, int(user.ss_port))
    if user.protocol == Protocol.WIREGUARD:
        if not server.wg_public_key:
            return Unavailable(
                f"Server {server.name} has no WireGuard key yet: it gets one when it is first applied.",
                ("wg_public_key",),
            )
        if not user.wg_address:
            return Unavailable(
                f"Server {server.name} has not given this user a tunnel address yet: it gets one at the next apply.",
                ("wg_address",),
            )
    return endpoint


def profile_for(user: VpnUser, server: VpnServer | None = None) -> Profile | Unavailable:
    """The user's connection profile on its server, or what is missing for one.

    `user` must have its credential columns loaded (the reveal and the subscription do).
    """
    server = server if server is not None else user.server
    endpoint = readiness(user, server)
    if isinstance(endpoint, Unavailable):
        return endpoint
    assert server is not None  # readiness() said so
    name = user.username
    if user.protocol == Protocol.VLESS:
        if not user.credential_uuid:
            return Unavailable("This user has no UUID.", ("credential_uuid",))
        return VlessProfile(name=name, endpoint=endpoint, uuid=str(user.credential_uuid))
    if user.protocol == Protocol.SHADOWSOCKS:
        if not user.credential_password:
            return Unavailable("This user has no password.", ("credential_password",))
        return ShadowsocksProfile(
            name=name, endpoint=endpoint, method=ss_method(server), password=user.credential_password
        )
    if user.protocol == Protocol.WIREGUARD:
        if not user.wg_private_key:
            return Unavailable("This user has no WireGuard key.", ("wg_private_key",))
        address = ipaddress.ip_address(str(user.wg_address))
        return WireGuardProfile(
            name=name,
            endpoint=endpoint,
            private_key=user.wg_private_key,
            address=f"{address}/{address.max_prefixlen}",
            server_public_key=server.wg_public_key,
            dns=tuple(settings.WIREGUARD_CLIENT_DNS),
        )
    return Unavailable(f"Unknown protocol {user.protocol!r}.", ("protocol",))


_KINDS: dict[str, type[VlessProfile] | type[ShadowsocksProfile] | type[WireGuardProfile]] = {
    Protocol.VLESS.value: VlessProfile,
    Protocol.SHADOWSOCKS.value: ShadowsocksProfile,
    Protocol.WIREGUARD.value: WireGuardProfile,
}


def profile_to_dict(profile: Profile) -> dict[str, Any]:
    """A JSON-ready form (for the sealed subscription cache)."""
    data = dataclasses.asdict(profile)
    data["kind"] = str(profile.protocol.value)
    return data


def profile_from_dict(data: dict[str, Any]) -> Profile:
    values = dict(data)
    cls = _KINDS[values.pop("kind")]
    endpoint = values.pop("endpoint")
    values["endpoint"] = Endpoint(endpoint["host"], int(endpoint["port"]))
    for name in ("dns", "allowed_ips"):
        if name in values:
            values[name] = tuple(values[name])
    return cls(**values)
