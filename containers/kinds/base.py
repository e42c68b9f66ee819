"""The interface every VPN server kind implements, and the engine calls they share.

Everything reaches the server through the Docker engine's API (exec and put_archive),
so a remote engine over TLS or ssh works exactly like the local socket. The server keeps
its applied config under /etc/vpn/ together with the config's sha256 (`applied.sha256`),
so applying the same set twice is one `cat` and no reload, even after the container was
recreated or the panel's database restored.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from django.db import connection

from containers.engine import client_for
from containers.models import VpnServer

CONFIG_DIR = "/etc/vpn"
HASH_FILE = "applied.sha256"
# One line per change the server actually took: tests and operators count reloads here.
APPLY_LOG = "applies.log"
# A core's own error output can be long; the page shows the tail, where the cause is.
MAX_CORE_MESSAGE = 400

Files = dict[str, bytes]


@dataclass(frozen=True)
class UserEntry:
    """One user of a server's desired set: what the core needs to admit it."""

    pk: int
    uuid: str
    password: str
    wg_public_key: str
    wg_address: str
    ss_port: int | None

    def __repr__(self) -> str:
        # Never the credentials, even in a traceback's locals.
        return f"<UserEntry {self.pk}>"


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    # Reloads plus live API calls the apply made on the server (0 when nothing changed).
    calls: int
    detail: str = ""
    # A kind whose reload resets its counters reads them in the apply's own exec, right
    # before the reload, and hands them back here (None: they could not be read).
    counters: dict[str, tuple[int, int]] | None = field(default=None, repr=False)


class ApplyRejected(Exception):
    """The core refused the new config; the previous one keeps serving."""


class ServerKind(Protocol):
    protocol: ClassVar[str]
    # What a container of this kind needs from the engine (read by the creation policy).
    default_image: ClassVar[str]
    cap_add: ClassVar[tuple[str, ...]]
    devices: ClassVar[tuple[str, ...]]
    # A reload restarts the core's counters: the apply reads them right before it and
    # returns them (ApplyResult.counters) for the caller to record.
    reload_resets_counters: ClassVar[bool]
    # The encrypted credentials the config carries ("uuid", "password"): a render opens
    # only these (decrypting is most of the cost of reading 10,000 users).
    secrets: ClassVar[frozenset[str]]

    def allocate(self, server: VpnServer) -> None:
        """Fill what the server and its users need before a render (keys, addresses, ports)."""

    def user_key(self, user: UserEntry) -> str:
        """The key `counters` reports this user under."""

    def render(self, server: VpnServer, users: Sequence[UserEntry]) -> Files:
        """The config files (names under /etc/vpn) serving exactly these users."""

    def apply(self, server: VpnServer, files: Files, digest: str) -> ApplyResult:
        """Make the running server serve `files`; raise ApplyRejected if the core refuses them."""

    def counters(self, server: VpnServer) -> dict[str, tuple[int, int]]:
        """Per-user (uplink, downlink) bytes as the core counts them (they restart at zero on a reload)."""

    def health(self, server: VpnServer) -> str:
        """'' when the core answers its API, else why not."""


def config_digest(files: Files) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{len(files[name])}\0".encode())
        digest.update(files[name])
    return digest.hexdigest()


def _container(server: VpnServer) -> str:
    return server.container_id or server.name


def run(server: VpnServer, command: Sequence[str]) -> tuple[int, str]:
    """Run a command in the server's container; (exit code, stdout and stderr)."""
    api = client_for(server.host)
    created = api.exec_create(_container(server), list(command), stdout=True, stderr=True)
    output = api.exec_start(created["Id"])
    code = api.exec_inspect(created["Id"]).get("ExitCode")
    text = output.decode(errors="replace") if isinstance(output, bytes) else str(output)
    return (code if code is not None else -1), text


def run_checked(server: VpnServer, command: Sequence[str]) -> str:
    code, output = run(server, command)
    if code != 0:
        raise ApplyRejected(core_message(output) or f"{command[0]} exited with {code}")
    return output


def core_message(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    # Go cores print a panic with a stack after the cause: keep the cause.
    for line in lines:
        if line.startswith("panic:"):
            return line[:MAX_CORE_MESSAGE]
    text = " ".join(lines[-3:])
    return text[-MAX_CORE_MESSAGE:]


def put_files(server: VpnServer, files: Files, *, suffix: str = ".next") -> None:
    """Write files into /etc/vpn/ in one archive (names get `suffix`: swapped in by the apply)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name + suffix)
            info.size = len(content)
            info.mtime = int(now)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(content))
    api = client_for(server.host)
    api.put_archive(_container(server), CONFIG_DIR, buffer.getvalue())


def applied_digest(server: VpnServer) -> str:
    code, output = run(server, ["cat", f"{CONFIG_DIR}/{HASH_FILE}"])
    return output.strip() if code == 0 else ""


def record_applied(digest: str) -> str:
    """Shell words that record a successful swap (run in /etc/vpn, after the swap itself)."""
    return f"echo {digest} > {HASH_FILE} && echo {digest} >> {APPLY_LOG}"


def swap(names: Sequence[str], suffix: str = ".next") -> str:
    return " && ".join(f"mv {name}{suffix} {name}" for name in names)


def set_user_column(column: str, sql_type: str, pairs: Sequence[tuple[int, object]]) -> int:
    """One UPDATE for many users' allocated values (bulk_update would be one CASE per row)."""
    if not pairs:
        return 0
    if column not in {"wg_address", "ss_port"} or sql_type not in {"inet", "integer"}:
        raise ValueError(f"not an allocated column: {column}")
    ids = [pk for pk, _ in pairs]
    values = [value for _, value in pairs]
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE users_vpnuser AS u SET {column} = v.value"  # noqa: S608 - both names checked above  # nosec B608
            f" FROM unnest(%s::bigint[], %s::{sql_type}[]) AS v(id, value) WHERE u.id = v.id",
            [ids, values],
        )
        return cursor.rowcount
