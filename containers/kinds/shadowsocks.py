"""Shadowsocks with shadowsocks-libev's ss-manager: one ss-server per user, added and removed live.

Why ss-manager rather than a multi-user core: it is what Debian ships, it needs no
restart to add or remove a user (the others' connections are never touched), and its
`ping` answers bytes per user. The price: one port (and one small process) per user.
The server's `port` is the manager's UDP API on 127.0.0.1 inside the container; users
get the lowest free ports above it. `ping` counts one total per user (shown as
downlink), sampled by each ss-server every few seconds, and one UDP answer caps the
report at a few thousand users per server; a larger fleet splits across servers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import ClassVar

from django.db import transaction

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

CONFIG = "config.json"
COMMANDS = "commands"
DEFAULT_METHOD = "chacha20-ietf-poly1305"
MAX_PORT = 65535
_STAT = re.compile(r"stat:\s*(\{.*\})", re.S)


def method_of(server: VpnServer) -> str:
    return str((server.environment or {}).get("SS_METHOD", DEFAULT_METHOD))


def _manager(server: VpnServer) -> str:
    return f"UDP:127.0.0.1:{server.port}"


class ShadowsocksKind:
    protocol: ClassVar[str] = Protocol.SHADOWSOCKS
    default_image: ClassVar[str] = "vpnadmin-test/shadowsocks:latest"
    cap_add: ClassVar[tuple[str, ...]] = ()
    devices: ClassVar[tuple[str, ...]] = ()
    reload_resets_counters: ClassVar[bool] = False
    secrets: ClassVar[frozenset[str]] = frozenset({"password"})

    def allocate(self, server: VpnServer) -> None:
        """A free port above the manager's for each user of this server that has none here."""
        from users.models import VpnUser

        with transaction.atomic():
            VpnServer.objects.select_for_update().filter(pk=server.pk).first()
            users = VpnUser.objects.filter(server=server, protocol=Protocol.SHADOWSOCKS)
            taken: set[int] = set()
            missing: list[int] = []
            for pk, port in users.order_by("pk").values_list("pk", "ss_port"):
                if port is not None and server.port < port <= MAX_PORT and port not in taken:
                    taken.add(port)
                else:
                    missing.append(pk)
            if not missing:
                return
            free = (p for p in range(server.port + 1, MAX_PORT + 1) if p not in taken)
            pairs: list[tuple[int, object]] = []
            for pk in missing:
                port = next(free, None)
                if port is None:
                    raise ApplyRejected(f"no free port above {server.port} for {len(missing) - len(pairs)} users")
                pairs.append((pk, port))
            users.filter(pk__in=missing).update(ss_port=None)
            set_user_column("ss_port", "integer", pairs)

    def user_key(self, user: UserEntry) -> str:
        return str(user.ss_port)

    def render(self, server: VpnServer, users: Sequence[UserEntry]) -> Files:
        ports = {str(u.ss_port): u.password for u in users if u.ss_port and u.password}
        config = {"port_password": ports, "method": method_of(server)}
        return {CONFIG: json.dumps(config, sort_keys=True).encode()}

    def _live(self, server: VpnServer) -> dict[str, str]:
        code, output = run(server, ["cat", f"{CONFIG_DIR}/{CONFIG}"])
        if code != 0:
            return {}
        try:
            return dict(json.loads(output).get("port_password") or {})
        except (ValueError, AttributeError):
            return {}

    def apply(self, server: VpnServer, files: Files, digest: str) -> ApplyResult:
        wanted: dict[str, str] = json.loads(files[CONFIG])["port_password"]
        serving = self._live(server)
        commands: list[str] = []
        for port, password in serving.items():
            if wanted.get(port) != password:
                commands.append("remove: " + json.dumps({"server_port": int(port)}))
        for port, password in wanted.items():
            if serving.get(port) != password:
                commands.append("add: " + json.dumps({"server_port": int(port), "password": password}))
        # One exec sends every command, one datagram each, then keeps the new set for restarts.
        put_files(server, {**files, COMMANDS: ("\n".join(commands) + "\n").encode()})
        send = (
            f'while IFS= read -r line; do [ -n "$line" ] || continue;'
            f' printf "%s" "$line" | socat -t 0.05 - {_manager(server)} || exit 1; done < {COMMANDS}.next'
        )
        run_checked(
            server,
            [
                "sh",
                "-c",
                f"cd {CONFIG_DIR} && {send} && rm {COMMANDS}.next && {swap([CONFIG])} && {record_applied(digest)}",
            ],
        )
        serving_now = set(self._ping(server))
        if serving_now != set(wanted):
            missing, extra = set(wanted) - serving_now, serving_now - set(wanted)
            raise ApplyRejected(
                f"ss-manager serves {len(serving_now)} ports: {len(missing)} missing, {len(extra)} extra"
            )
        return ApplyResult(changed=True, calls=len(commands), detail=f"{len(commands)} live changes")

    def _ping(self, server: VpnServer) -> dict[str, int]:
        output = run_checked(server, ["sh", "-c", f"printf ping | socat -t 1 - {_manager(server)}"])
        match = _STAT.search(output)
        if not match:
            raise ApplyRejected(f"ss-manager did not answer ping: {output.strip()[:200]}")
        return {str(port): int(value) for port, value in json.loads(match.group(1)).items()}

    def counters(self, server: VpnServer) -> dict[str, tuple[int, int]]:
        return {port: (0, total) for port, total in self._ping(server).items()}

    def health(self, server: VpnServer) -> str:
        try:
            self._ping(server)
        except ApplyRejected as exc:
            return str(exc)
        return ""
