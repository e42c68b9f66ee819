"""WireGuard with wireguard-go + wireguard-tools (the kernel module is not assumed).

The server holds its own X25519 pair and a subnet; each user gets the lowest free
address in it (the server itself has the first one), unique per server by a constraint
and freed when the user is deleted or moves to another server. Peers are applied with
`wg syncconf` against the live interface: peers that stay are not touched, so nobody
is disconnected when someone else is added. Counters and the last handshake come from
`wg show wg0 dump` (rx = the user's upload, tx = its download, as the server sees them).
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from typing import ClassVar

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.db import transaction
from django.db.models import Q

from containers.kinds.base import (
    CONFIG_DIR,
    ApplyRejected,
    ApplyResult,
    Files,
    UserEntry,
    put_files,
    record_applied,
    run,
    run_checked,
    set_user_column,
    swap,
)
from containers.models import Protocol, VpnServer

INTERFACE = "wg0"
DEFAULT_SUBNET = "10.8.0.0/24"


def generate_keypair() -> tuple[str, str]:
    key = X25519PrivateKey.generate()
    private = base64.b64encode(key.private_bytes_raw()).decode()
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    return private, public


def subnet_of(server: VpnServer) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(server.wg_subnet or DEFAULT_SUBNET, strict=False)


def server_address(server: VpnServer) -> str:
    network = subnet_of(server)
    return f"{next(iter(network.hosts()))}/{network.prefixlen}"


class WireGuardKind:
    protocol: ClassVar[str] = Protocol.WIREGUARD
    default_image: ClassVar[str] = "vpnadmin-test/wireguard:latest"
    # wireguard-go makes a TUN device inside the container's own network namespace.
    cap_add: ClassVar[tuple[str, ...]] = ("NET_ADMIN",)
    devices: ClassVar[tuple[str, ...]] = ("/dev/net/tun",)
    reload_resets_counters: ClassVar[bool] = False
    secrets: ClassVar[frozenset[str]] = frozenset()  # peers are public keys

    def allocate(self, server: VpnServer) -> None:
        """The server's keys and subnet once; a free address for each user that has none here."""
        from users.models import VpnUser

        with transaction.atomic():
            locked = VpnServer.objects.select_for_update().get(pk=server.pk)
            if not locked.wg_private_key or not locked.wg_subnet:
                if not locked.wg_private_key:
                    locked.wg_private_key, locked.wg_public_key = generate_keypair()
                locked.wg_subnet = locked.wg_subnet or DEFAULT_SUBNET
                locked.save(update_fields=["wg_private_key", "wg_public_key", "wg_subnet"])
            server.wg_private_key, server.wg_public_key = locked.wg_private_key, locked.wg_public_key
            server.wg_subnet = locked.wg_subnet
            network = subnet_of(server)
            users = VpnUser.objects.filter(server=server, protocol=Protocol.WIREGUARD)
            taken: set[str] = set()
            stray: list[int] = []
            for pk, address in users.values_list("pk", "wg_address"):
                if address and ipaddress.ip_address(address) in network and address not in taken:
                    taken.add(address)
                else:
                    stray.append(pk)
            # Users that moved here from another server keep a foreign address until now.
            missing = sorted(set(stray) | set(users.filter(Q(wg_address__isnull=True)).values_list("pk", flat=True)))
            if not missing:
                return
            taken.add(server_address(server).split("/")[0])
            free = (str(a) for a in network.hosts() if str(a) not in taken)
            pairs: list[tuple[int, str]] = []
            for pk in missing:
                address = next(free, None)
                if address is None:
                    raise ApplyRejected(f"subnet {network} is full: {len(missing) - len(pairs)} users have no address")
                pairs.append((pk, address))
            VpnUser.objects.filter(pk__in=missing).update(wg_address=None)
            set_user_column("wg_address", "inet", pairs)

    def user_key(self, user: UserEntry) -> str:
        return user.wg_public_key

    def render(self, server: VpnServer, users: Sequence[UserEntry]) -> Files:
        lines = ["[Interface]", f"PrivateKey = {server.wg_private_key}", f"ListenPort = {server.port}", ""]
        for user in users:
            if not user.wg_public_key or not user.wg_address:
                continue
            host_bits = 32 if ":" not in user.wg_address else 128
            lines += ["[Peer]", f"PublicKey = {user.wg_public_key}", f"AllowedIPs = {user.wg_address}/{host_bits}", ""]
        return {f"{INTERFACE}.conf": "\n".join(lines).encode(), "address": (server_address(server) + "\n").encode()}

    def apply(self, server: VpnServer, files: Files, digest: str) -> ApplyResult:
        put_files(server, files)
        conf = f"{INTERFACE}.conf"
        code, output = run(
            server,
            [
                "sh",
                "-c",
                f"cd {CONFIG_DIR} && wg syncconf {INTERFACE} {conf}.next"
                f' && ip address replace "$(cat address.next)" dev {INTERFACE}'
                f" && {swap([conf, 'address'])} && {record_applied(digest)}",
            ],
        )
        if code != 0:
            run(server, ["rm", "-f", f"{CONFIG_DIR}/{conf}.next", f"{CONFIG_DIR}/address.next"])
            raise ApplyRejected(output.strip()[-400:] or f"wg syncconf exited with {code}")
        return ApplyResult(changed=True, calls=1, detail="peers synced live")

    def dump(self, server: VpnServer) -> list[list[str]]:
        output = run_checked(server, ["wg", "show", INTERFACE, "dump"])
        # The first line is the interface itself; then one tab-separated line per peer.
        return [line.split("\t") for line in output.splitlines()[1:] if line.count("\t") >= 7]

    def counters(self, server: VpnServer) -> dict[str, tuple[int, int]]:
        # public key, preshared key, endpoint, allowed ips, latest handshake, rx, tx, keepalive
        return {fields[0]: (int(fields[5]), int(fields[6])) for fields in self.dump(server)}

    def health(self, server: VpnServer) -> str:
        code, output = run(server, ["wg", "show", INTERFACE, "public-key"])
        return "" if code == 0 else (output.strip()[-200:] or "no WireGuard interface")
