"""What the app agrees to talk to and to create.

Engine addresses: the configured local socket(s), TLS engines with client certificates,
or ssh. Container options: default-deny, only the keys listed here pass, and the ones
that would hand the host to a container are refused by name with a reason.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

# Cloud metadata endpoints that are not link-local.
_METADATA_ADDRESSES = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_HOST_NAME = re.compile(r"^[a-z0-9:][a-z0-9.:-]*$")  # names, IPv4 and IPv6 literals; never an option
_SSH_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_FORBIDDEN_NAMES = {"localhost", "metadata", "metadata.google.internal", "metadata.goog", "instance-data"}


def _address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address in _METADATA_ADDRESSES:
        return "a cloud metadata address"
    return None


def remote_hostname_errors(hostname: str, *, resolve: bool = True) -> list[str]:
    """Why a remote engine's host name is refused: loopback, link-local, metadata."""
    name = hostname.strip("[]").rstrip(".").lower()
    if not name:
        return ["The address has no host name."]
    if not _HOST_NAME.match(name):
        return [f"{hostname!r} is not a host name or an IP address."]
    if name in _FORBIDDEN_NAMES or name.endswith(".localhost"):
        return [f"{hostname} is not a remote host: use the local socket for this machine's engine."]
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        addresses = []
        if resolve:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError):
                infos = []  # unresolvable now: allowed, the host will show as unreachable
            addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    for address in addresses:
        problem = _address_problem(address)
        if problem:
            return [f"{hostname} resolves to {address}, {problem}: refused for a remote engine."]
    return []


def engine_url_errors(
    base_url: str,
    *,
    tls_client_cert: str = "",
    tls_client_key: str = "",
    tls_ca_cert: str = "",
    check_files: bool = True,
) -> list[str]:
    """Every reason an engine address is refused; empty when it is acceptable."""
    url = base_url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        return [f"{url!r} is not a valid address."]
    scheme = parts.scheme.lower()
    if parts.password:
        return ["Do not put a password in the address: use TLS client certificates or an ssh key."]
    if scheme == "unix":
        allowed = [s.strip() for s in settings.DOCKER_LOCAL_SOCKETS]
        if url not in allowed:
            shown = ", ".join(allowed) or "none configured"
            return [f"Only the configured local socket may be used ({shown}); {url} is refused."]
        return []
    if scheme in ("tcp", "https"):
        errors = []
        if not (tls_client_cert and tls_client_key and tls_ca_cert):
            errors.append(
                "Plain tcp:// is refused: a remote engine needs TLS with a client certificate, "
                "its key and the CA certificate."
            )
        if not parts.port:
            errors.append("Give the engine's port, e.g. tcp://vpn-1.example.net:2376.")
        errors += remote_hostname_errors(parts.hostname or "")
        if check_files:
            for label, path in (
                ("CA certificate", tls_ca_cert),
                ("client certificate", tls_client_cert),
                ("client key", tls_client_key),
            ):
                if path and not (Path(path).is_absolute() and Path(path).is_file()):
                    errors.append(f"The {label} path must be an absolute path to a readable file on this server.")
        return errors
    if scheme == "ssh":
        if not parts.hostname:
            return ["An ssh address needs a host: ssh://user@vpn-1.example.net"]
        if parts.username is not None and not _SSH_USER.match(parts.username):
            return ["The ssh user may hold letters, digits, '.', '_' and '-' only."]
        return remote_hostname_errors(parts.hostname)
    return [f"Unsupported engine address {url!r}: use unix:// (the local socket), tcp:// with TLS, or ssh://."]


# --- container creation ------------------------------------------------------------

# Options an operator may set, and the type each takes.
ALLOWED_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "mem_limit": (str, int),
    "memswap_limit": (str, int),
    "nano_cpus": int,
    "cpu_shares": int,
    "pids_limit": int,
    "read_only": bool,
    "init": bool,
    "restart_policy": dict,
    "tmpfs": dict,
    "binds": list,
    "ulimits": list,
    "user": str,
    "working_dir": str,
}
# Refused by name, each with its reason: they give a container the host.
REFUSED_OPTIONS = {
    "privileged": "privileged mode is refused",
    "cap_add": "added capabilities are refused",
    "devices": "host devices are refused",
    "device_requests": "host devices are refused",
    "security_opt": "security options (unconfined profiles) are refused",
    "userns_mode": "the host user namespace is refused",
    "uts_mode": "the host UTS namespace is refused",
    "cgroupns": "the host cgroup namespace is refused",
    "volumes_from": "volumes from other containers are refused",
    "sysctls": "sysctls are refused",
}
_HOST_NAMESPACES = {"network_mode": "host network", "pid_mode": "host pid namespace", "ipc_mode": "host ipc namespace"}


def _docker_socket_paths() -> set[PurePosixPath]:
    paths = {PurePosixPath("/var/run/docker.sock"), PurePosixPath("/run/docker.sock")}
    for url in [settings.DOCKER_HOST, *settings.DOCKER_LOCAL_SOCKETS]:
        if url.startswith("unix://"):
            paths.add(PurePosixPath(url.removeprefix("unix://")))
    return paths


def _bind_error(bind: Any) -> str | None:
    if not isinstance(bind, str) or ":" not in bind:
        return f"bind {bind!r} must read source:target[:ro]"
    source = bind.split(":", 1)[0]
    if not source.startswith("/"):
        return f"bind source {source!r} must be an absolute path"
    path = PurePosixPath(source)
    if ".." in path.parts:
        return f"bind source {source!r} may not contain '..'"
    if path == PurePosixPath("/"):
        return "binding / (the host's root) is refused"
    for socket_path in _docker_socket_paths():
        if path == socket_path or path in socket_path.parents:
            return f"binding {source} exposes the Docker socket: refused"
    return None


def create_policy_errors(options: dict[str, Any]) -> list[str]:
    """Every reason a container's options are refused; empty when the policy allows them."""
    if not isinstance(options, dict):
        return ["Options must be a JSON object."]
    errors: list[str] = []
    for key, value in options.items():
        if key in REFUSED_OPTIONS:
            errors.append(f"{key}: {REFUSED_OPTIONS[key]}.")
        elif key in _HOST_NAMESPACES:
            if str(value).startswith(("host", "container:")):
                errors.append(f"{key}: the {_HOST_NAMESPACES[key]} is refused.")
            else:
                errors.append(f"{key}: set by the host's network settings, not per server.")
        elif key not in ALLOWED_OPTIONS:
            errors.append(f"{key}: not an allowed option (allowed: {', '.join(sorted(ALLOWED_OPTIONS))}).")
        elif not isinstance(value, ALLOWED_OPTIONS[key]) or (
            isinstance(value, bool) and key not in ("read_only", "init")
        ):
            errors.append(f"{key}: wrong type ({type(value).__name__}).")
        elif key == "binds":
            errors += [f"binds: {problem}." for problem in filter(None, (_bind_error(b) for b in value))]
    return errors
