"""What the app agrees to talk to and to create.

Engine addresses: the configured local socket(s), TLS engines with client certificates,
or ssh. Container options: default-deny, only the keys listed here pass, and the ones
that would hand the host to a container are refused by name with a reason.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import socket
from dataclasses import dataclass
from pathlib import Path
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
            addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
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
#
# Allow-lists, not deny-lists: a bind passes only when its source, normalised as the
# kernel would and (for a local engine) with symlinks resolved, lies under a directory
# the operator configured for server data; an image only under a configured prefix;
# capabilities and devices only when the server's kind declares it needs them; host
# networking only on a host the operator marked for it. Anything else is refused.

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
    # Only what the server's kind declares (KindNeeds); anything more is refused.
    "cap_add": list,
    "devices": list,
    "sysctls": dict,
}
# Refused by name, each with its reason: they give a container the host.
REFUSED_OPTIONS = {
    "privileged": "privileged mode is refused",
    "device_requests": "host devices are refused",
    "device_cgroup_rules": "host devices are refused",
    "security_opt": "security options (unconfined profiles) are refused",
    "userns_mode": "the host user namespace is refused",
    "uts_mode": "the host UTS namespace is refused",
    "cgroupns": "the host cgroup namespace is refused",
    "cgroup_parent": "another cgroup parent is refused",
    "volumes_from": "volumes from other containers are refused",
    "volume_driver": "volume drivers are refused",
    "mounts": "mounts are refused: use binds under a configured data directory",
    "links": "links to other containers are refused",
}
_HOST_NAMESPACES = {"network_mode": "host network", "pid_mode": "host pid namespace", "ipc_mode": "host ipc namespace"}
_BIND_MODES = {"ro", "rw"}
# A Docker image reference: [registry[:port]/]path[:tag][@digest], lower-case path.
_IMAGE_RE = re.compile(
    r"^(?P<name>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True)
class KindNeeds:
    """What a server kind needs from its host beyond a plain container.

    A kind declares it once (``declare_kind_needs``); the policy then lets exactly these
    capabilities, devices and sysctls through for servers of that protocol, and refuses
    the same options on any other server.
    """

    cap_add: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    sysctls: frozenset[str] = frozenset()


# Kinds that declare nothing here are read from containers/kinds/ (their `cap_add`,
# `devices` and optional `sysctls` class attributes); this table overrides or adds.
_KIND_NEEDS: dict[str, KindNeeds] = {}


def declare_kind_needs(protocol: str, needs: KindNeeds) -> None:
    """Declare (or override) what a kind's containers need, for a kind outside containers/kinds/."""
    _KIND_NEEDS[protocol] = needs


def kind_needs(protocol: str) -> KindNeeds:
    """What the server kind of `protocol` declares it needs; nothing for an unknown protocol."""
    if protocol in _KIND_NEEDS:
        return _KIND_NEEDS[protocol]
    if not protocol:
        return KindNeeds()
    from containers.kinds import kind_for  # the kinds import models: late, to keep this module light

    try:
        kind = kind_for(protocol)
    except ValueError:
        return KindNeeds()
    return KindNeeds(
        cap_add=frozenset(getattr(kind, "cap_add", ())),
        devices=frozenset(getattr(kind, "devices", ())),
        sysctls=frozenset(getattr(kind, "sysctls", ())),
    )


def normalise_path(path: str) -> str:
    """The path the kernel would open, without touching the disk: `//` and `/./` are `/`, `..` climbs.

    posixpath.normpath keeps a leading `//` (POSIX leaves it implementation-defined);
    Linux treats it as `/`, so every run of slashes is one slash first.
    """
    return posixpath.normpath(re.sub(r"/+", "/", path)) if path else path


def _resolve(path: str, *, local: bool) -> str:
    normal = normalise_path(path)
    # A local engine sees this machine's file system: follow symlinks as the kernel
    # will when it mounts (/proc/1/root resolves to /). A remote engine's files are not
    # here: the lexical form is all there is to check.
    return os.path.realpath(normal) if local else normal


def _entries(text: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\n]", text or "") if item.strip()]


def bind_roots() -> list[str]:
    """The installation's directories for server data (CONTAINERS_BIND_ROOTS)."""
    return [normalise_path(str(root)) for root in settings.CONTAINERS_BIND_ROOTS if str(root).startswith("/")]


def image_prefixes() -> list[str]:
    """The installation's image sources (CONTAINERS_IMAGE_PREFIXES)."""
    return [str(prefix).strip() for prefix in settings.CONTAINERS_IMAGE_PREFIXES if str(prefix).strip()]


def host_bind_roots(host: Any | None) -> list[str]:
    """A host's own narrower list (DockerHost.bind_roots); empty: the installation's applies alone."""
    return [normalise_path(root) for root in _entries(getattr(host, "bind_roots", "")) if root.startswith("/")]


def host_image_prefixes(host: Any | None) -> list[str]:
    return _entries(getattr(host, "image_prefixes", ""))


def host_policy_errors(*, bind_roots_text: str, image_prefixes_text: str) -> dict[str, list[str]]:
    """Why a host's own policy is refused: it may only narrow the installation's, never widen it."""
    errors: dict[str, list[str]] = {}
    for root in _entries(bind_roots_text):
        normal = normalise_path(root)
        if not root.startswith("/"):
            errors.setdefault("bind_roots", []).append(f"{root} must be an absolute path.")
        elif not any(_under(normal, allowed) for allowed in bind_roots()):
            shown = ", ".join(bind_roots()) or "none configured"
            errors.setdefault("bind_roots", []).append(
                f"{root} is not under the installation's directories for server data (CONTAINERS_BIND_ROOTS: {shown})."
            )
    for prefix in _entries(image_prefixes_text):
        # The prefix as an image it would allow: a host prefix must itself be allowed.
        probe = prefix.rstrip("/") + "/x" if prefix.endswith("/") else prefix
        reference = normalise_image(probe)
        if reference is None:
            errors.setdefault("image_prefixes", []).append(f"{prefix} is not an image reference or namespace.")
        elif not any(_prefix_matches(reference, allowed) for allowed in image_prefixes()):
            shown = ", ".join(image_prefixes()) or "none configured"
            errors.setdefault("image_prefixes", []).append(
                f"{prefix} is not within the installation's image sources (CONTAINERS_IMAGE_PREFIXES: {shown})."
            )
    return errors


def is_local_engine(host: Any | None) -> bool:
    """True when the host's engine runs on this machine (its paths are ours to resolve)."""
    if host is None:
        return True
    url = str(getattr(host, "base_url", "")).strip()
    return url.startswith("unix://") and url in [s.strip() for s in settings.DOCKER_LOCAL_SOCKETS]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bind_errors(bind: Any, *, local: bool = True, host_roots: list[str] | None = None) -> list[str]:
    """Why one bind (`source:target[:ro|rw]`) is refused; empty when its source is under a data root.

    With `host_roots` (a host's own list) the source must be under one of those as well.
    """
    if not isinstance(bind, str):
        return [f"bind {bind!r} must read source:target[:ro]"]
    parts = bind.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        return [f"bind {bind!r} must read source:target[:ro]"]
    source, target = parts[0], parts[1]
    if len(parts) == 3 and parts[2] not in _BIND_MODES:
        return [f"bind {bind!r}: the mode must be ro or rw"]
    if not source.startswith("/"):
        # Docker would make a named volume of it: not a directory the operator chose.
        return [f"bind source {source!r} must be an absolute path"]
    if not target.startswith("/"):
        return [f"bind target {target!r} must be an absolute path"]
    roots = bind_roots()
    if not roots:
        return [f"bind {source}: no directory is configured for server data (CONTAINERS_BIND_ROOTS): binds are refused"]
    try:
        resolved = _resolve(source, local=local)
        allowed = [_resolve(root, local=local) for root in roots]
    except OSError as exc:
        # /proc/1/root and friends: a path the kernel will not even let us follow.
        return [f"bind {source} cannot be resolved on this machine ({exc.strerror}): refused"]
    shown = source if resolved == source else f"{source} (resolves to {resolved})"
    if not any(_under(resolved, root) for root in allowed):
        return [f"bind {shown} is outside the directories for server data ({', '.join(roots)}): refused"]
    if host_roots:
        try:
            narrower = [_resolve(root, local=local) for root in host_roots]
        except OSError as exc:
            return [f"bind {source}: this host's data directories cannot be resolved ({exc.strerror}): refused"]
        if not any(_under(resolved, root) for root in narrower):
            listed = ", ".join(host_roots)
            return [f"bind {shown} is outside this host's directories for server data ({listed}): refused"]
    return []


def normalise_image(image: str) -> str | None:
    """`busybox` → `docker.io/library/busybox`, as the engine names it; None for a malformed reference."""
    match = _IMAGE_RE.match(image.strip())
    if not match:
        return None
    name = match["name"]
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif not ("." in first or ":" in first or first == "localhost"):
        if first != first.lower():
            return None  # upper case is allowed in a registry's name only
        name = f"docker.io/{name}"
    suffix = (f":{match['tag']}" if match["tag"] else "") + (f"@{match['digest']}" if match["digest"] else "")
    return name + suffix


def _repository(reference: str) -> str:
    """`docker.io/library/busybox:1@sha256:…` → `docker.io/library/busybox`."""
    name = reference.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    return f"{head}/{last.split(':', 1)[0]}"


def _prefix_matches(reference: str, prefix: str) -> bool:
    # "vpnadmin-test/" (ends in "/"): every repository in that namespace; otherwise one
    # repository ("ghcr.io/xtls/xray-core": any tag) or one exact tag ("…/xray-core:1.8").
    if prefix.endswith("/"):
        namespace = normalise_image(prefix + "x")
        return namespace is not None and _repository(reference).startswith(namespace[:-1])
    allowed = normalise_image(prefix)
    if allowed is None:
        return False
    if _repository(allowed) == allowed:
        return _repository(reference) == allowed
    return reference.split("@", 1)[0] == allowed


def image_errors(image: str, *, host: Any | None = None) -> list[str]:
    """Why an image is refused: malformed, outside CONTAINERS_IMAGE_PREFIXES, or outside the host's own list."""
    reference = normalise_image(image or "")
    if reference is None:
        return [f"image {image!r} is not a valid image reference (registry/name:tag)"]
    prefixes = image_prefixes()
    if not any(_prefix_matches(reference, prefix) for prefix in prefixes):
        shown = ", ".join(prefixes) or "none configured"
        return [f"image {image} is not from an allowed source (CONTAINERS_IMAGE_PREFIXES: {shown}): refused"]
    narrower = host_image_prefixes(host)
    if narrower and not any(_prefix_matches(reference, prefix) for prefix in narrower):
        return [f"image {image} is not from this host's image sources ({', '.join(narrower)}): refused"]
    return []


def _device_errors(devices: list[Any], needs: KindNeeds) -> list[str]:
    errors = []
    for device in devices:
        if not isinstance(device, str) or not device.startswith("/"):
            errors.append(f"devices: {device!r} must read /dev/path[:/dev/path[:rwm]].")
            continue
        parts = device.split(":")
        source = normalise_path(parts[0])
        target = normalise_path(parts[1]) if len(parts) > 1 else source
        if len(parts) > 3 or source not in needs.devices or target != source:
            allowed = ", ".join(sorted(needs.devices)) or "none for this kind"
            errors.append(f"devices: host device {parts[0]} is refused (this server kind may use: {allowed}).")
    return errors


def create_policy_errors(
    options: dict[str, Any], *, protocol: str = "", host: Any | None = None, image: str | None = None
) -> list[str]:
    """Every reason a container's options are refused; empty when the policy allows them.

    `protocol` brings the kind's declared needs; `host` decides how bind paths are
    resolved (a local engine: symlinks followed); `image`, when given, is checked too.
    """
    if not isinstance(options, dict):
        return ["Options must be a JSON object."]
    needs = kind_needs(protocol)
    errors: list[str] = []
    if image is not None:
        errors += [f"image: {problem}." for problem in image_errors(image, host=host)]
    if host is not None:
        errors += host_network_errors(host)
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
            local = is_local_engine(host)
            host_roots = host_bind_roots(host)
            errors += [
                f"binds: {problem}."
                for bind in value
                for problem in bind_errors(bind, local=local, host_roots=host_roots)
            ]
        elif key == "cap_add":
            extra = sorted({str(cap).upper().removeprefix("CAP_") for cap in value} - needs.cap_add)
            if extra:
                errors.append(
                    f"cap_add: added capabilities are refused ({', '.join(extra)}; "
                    f"this server kind may add: {', '.join(sorted(needs.cap_add)) or 'none'})."
                )
        elif key == "devices":
            errors += _device_errors(value, needs)
        elif key == "sysctls":
            extra = sorted(set(map(str, value)) - needs.sysctls)
            if extra:
                errors.append(f"sysctls: {', '.join(extra)} refused (not declared by this server kind).")
    return errors


def host_network_errors(host: Any) -> list[str]:
    """Host networking only on a host the operator marked for it; another container's network never."""
    mode = str(getattr(host, "network_mode", "") or "")
    if mode.startswith("container:"):
        return [f"host {host.name}: sharing another container's network is refused."]
    if mode == "host" and not getattr(host, "allow_host_network", False):
        return [f"host {host.name}: host networking is refused on a host not marked for it (allow host network)."]
    return []


def server_policy_errors(server: Any) -> list[str]:
    """The whole creation policy for a stored server, checked again right before its container is made."""
    return create_policy_errors(server.options, protocol=server.protocol, host=server.host, image=server.image)


def recorded_bind_errors(info: dict[str, Any], host: Any | None) -> list[str]:
    """The binds an existing container will mount at its next start, checked again.

    The engine resolves a bind's source when it starts the container, not when it made
    it: a directory swapped for a symlink since creation would mount whatever it points at.
    """
    binds = (info.get("HostConfig") or {}).get("Binds") or []
    local, roots = is_local_engine(host), host_bind_roots(host)
    return [problem for bind in binds for problem in bind_errors(bind, local=local, host_roots=roots)]
