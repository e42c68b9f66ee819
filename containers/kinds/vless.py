"""VLESS on an Xray-compatible core (Xray in production; Debian's v2ray 4.34 in tests).

One client per user (`id` = its UUID, `email` = "u<pk>", the stable key its counters are
reported under), the StatsService on 127.0.0.1:<port+1> inside the container. A new
user set is one config write, checked first with the core's own `-test` (a refused
config never replaces the serving one), then one reload: the image's entrypoint restarts
the core when its pid is killed. The counters restart with the core, so the same exec
reads them between the check and the reload (`reload_resets_counters`): check, read,
swap, reload are one engine call.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from typing import Any, ClassVar

from containers.kinds.base import (
    CONFIG_DIR,
    ApplyRejected,
    ApplyResult,
    Files,
    UserEntry,
    core_message,
    put_files,
    record_applied,
    run,
    run_checked,
    swap,
)
from containers.models import Protocol, VpnServer

CONFIG = "config.json"
# `v2ctl api` prints text protobuf: stat: < name: "user>>>u12>>>traffic>>>uplink" value: 83 >
_STAT = re.compile(r'name:\s*"user>>>([^>"]+)>>>traffic>>>(uplink|downlink)"\s*(?:value:\s*(\d+))?')
_QUERY_USERS = 'pattern: "user>>>"'
# Printed by the apply's script after a complete counters read (a failed read prints none).
_COUNTERS_READ = "vpnadmin-counters-read"


def api_port(server: VpnServer) -> int:
    return server.port + 1


class VlessKind:
    protocol: ClassVar[str] = Protocol.VLESS
    default_image: ClassVar[str] = "vpnadmin-test/v2ray:latest"
    cap_add: ClassVar[tuple[str, ...]] = ()
    devices: ClassVar[tuple[str, ...]] = ()
    reload_resets_counters: ClassVar[bool] = True
    secrets: ClassVar[frozenset[str]] = frozenset({"uuid"})

    def allocate(self, server: VpnServer) -> None:
        return None

    def user_key(self, user: UserEntry) -> str:
        return f"u{user.pk}"

    def render(self, server: VpnServer, users: Sequence[UserEntry]) -> Files:
        listen = str((server.environment or {}).get("VPNADMIN_LISTEN", "0.0.0.0"))  # noqa: S104 - a server listens  # nosec B104
        config: dict[str, Any] = {
            "log": {"loglevel": "warning"},
            "stats": {},
            "api": {"tag": "api", "services": ["StatsService", "HandlerService"]},
            "policy": {"levels": {"0": {"statsUserUplink": True, "statsUserDownlink": True}}},
            "inbounds": [
                {
                    "tag": "vless",
                    "listen": listen,
                    "port": server.port,
                    "protocol": "vless",
                    "settings": {
                        "clients": [{"id": u.uuid, "email": self.user_key(u), "level": 0} for u in users],
                        "decryption": "none",
                    },
                    "streamSettings": {"network": "tcp"},
                },
                {
                    "tag": "api",
                    "listen": "127.0.0.1",
                    "port": api_port(server),
                    "protocol": "dokodemo-door",
                    "settings": {"address": "127.0.0.1"},
                },
            ],
            "outbounds": [{"protocol": "freedom", "tag": "direct"}],
            "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
        }
        return {CONFIG: json.dumps(config, separators=(",", ":")).encode()}

    def apply(self, server: VpnServer, files: Files, digest: str) -> ApplyResult:
        put_files(server, files)
        # One exec: check the new file with the core itself; only then read the counters
        # the reload is about to reset, swap the file in, record it and kill the core (the
        # entrypoint's loop starts it again on the new file). A refused file is removed and
        # the serving core is never touched. A failed counters read does not stop the apply
        # (the bytes since the last poll are lost, as they would be to a crash).
        query = shlex.join(["v2ctl", "api", f"--server=127.0.0.1:{api_port(server)}", "StatsService.QueryStats"])
        script = (
            f"cd {CONFIG_DIR} && if ! out=$(v2ray -test -config {CONFIG}.next 2>&1); then"
            f' rm -f {CONFIG}.next; echo "$out"; exit 3; fi'
            # No core running (a first apply, or one mid-restart): nothing to read, and
            # v2ctl would wait its 3 s for an API that is not there.
            ' ; if [ -s /run/core.pid ] && kill -0 "$(cat /run/core.pid)" 2>/dev/null; then'
            f" {query} {shlex.quote(_QUERY_USERS)} 2>/dev/null && echo {_COUNTERS_READ}; fi"
            f"; {swap([CONFIG])} && {record_applied(digest)}"
            " && { [ -s /run/core.pid ] && kill $(cat /run/core.pid) 2>/dev/null; true; }"
        )
        code, output = run(server, ["sh", "-c", script])
        if code != 0:
            raise ApplyRejected(core_message(output) or f"v2ray -test exited with {code}")
        stats, read, _ = output.rpartition(_COUNTERS_READ)
        return ApplyResult(
            changed=True,
            calls=1,
            detail="config checked, counters read, written, core reloaded",
            counters=_parse_stats(stats) if read else None,
        )

    def counters(self, server: VpnServer) -> dict[str, tuple[int, int]]:
        return _parse_stats(
            run_checked(
                server,
                ["v2ctl", "api", f"--server=127.0.0.1:{api_port(server)}", "StatsService.QueryStats", _QUERY_USERS],
            )
        )

    def health(self, server: VpnServer) -> str:
        code, output = run(
            server, ["v2ctl", "api", f"--server=127.0.0.1:{api_port(server)}", "StatsService.GetSysStats", ""]
        )
        return "" if code == 0 else (core_message(output) or "the core's API does not answer")


def _parse_stats(output: str) -> dict[str, tuple[int, int]]:
    result: dict[str, list[int]] = {}
    for key, direction, value in _STAT.findall(output):
        pair = result.setdefault(key, [0, 0])
        pair[0 if direction == "uplink" else 1] = int(value or 0)
    return {key: (up, down) for key, (up, down) in result.items()}
