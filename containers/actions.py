"""The engine side of each batch action: the Docker calls for one server.

Each action takes the host's client, the server as plain values and an `Observed`
record, and returns (outcome, message). It touches no database: the runner records
what `Observed` holds, also when a later call of the same action fails. Every action
is safe to repeat (an item retried after a crash lands on "unchanged").
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import docker
from django.conf import settings

from containers.models import LABEL_SERVER, BatchAction, DockerHost, ObservedState, Outcome, VpnServer
from containers.policy import create_policy_errors, recorded_bind_errors

_HOST_CONFIG_OPTIONS = {
    "init",
    "mem_limit",
    "memswap_limit",
    "nano_cpus",
    "cpu_shares",
    "pids_limit",
    "read_only",
    "restart_policy",
    "tmpfs",
    "binds",
    "ulimits",
    # What a server kind declares it needs (containers/policy.py lets only those through).
    "cap_add",
    "devices",
    "sysctls",
}
_RUNNING_LIKE = {"running", "restarting", "paused"}


@dataclass(frozen=True)
class Target:
    """A server as the engine threads see it: plain values, no database access."""

    server: VpnServer
    host: DockerHost


@dataclass
class Observed:
    """What a worker learned about the container, kept even when a later step fails."""

    container_id: str | None = None
    state: str | None = None


class Refused(Exception):
    """A request the policy or the container's identity rules out (message is shown as is)."""


Action = Callable[[docker.APIClient, Target, Observed], tuple[str, str]]


def _labels(server: VpnServer) -> dict[str, str]:
    return {**settings.DOCKER_EXTRA_LABELS, **server.labels}


def find(api: docker.APIClient, server: VpnServer) -> dict[str, Any] | None:
    """The server's container, by stored id or else by name; None when there is none."""
    for ref, by_name in ((server.container_id, False), (server.name, True)):
        if not ref:
            continue
        try:
            info = api.inspect_container(ref)
        except docker.errors.NotFound:
            continue
        labels = (info.get("Config") or {}).get("Labels") or {}
        if by_name and labels.get(LABEL_SERVER) != str(server.pk):
            raise Refused(f"a container named {server.name} exists on this host and is not this server's")
        return dict(info)
    return None


def _state(info: dict[str, Any]) -> str:
    return str((info.get("State") or {}).get("Status") or ObservedState.UNKNOWN)


def _seen(obs: Observed, info: dict[str, Any]) -> None:
    obs.container_id, obs.state = info["Id"], _state(info)


def create(api: docker.APIClient, target: Target, obs: Observed) -> dict[str, Any]:
    server, host = target.server, target.host
    # The whole policy again right before the engine acts (kind's needs, host network,
    # image, binds resolved here): rows written around the forms meet it too.
    problems = create_policy_errors(server.options, protocol=server.protocol, host=host, image=server.image)
    if problems:
        raise Refused("refused by the creation policy: " + " ".join(problems))
    options = dict(server.options)
    host_options = {k: options.pop(k) for k in list(options) if k in _HOST_CONFIG_OPTIONS}
    if "ulimits" in host_options:
        host_options["ulimits"] = [docker.types.Ulimit(**u) for u in host_options["ulimits"]]
    # No ports to publish without a bridge ("none") or on the host's own stack ("host": Docker refuses them).
    publish = host.network_mode not in ("none", "host")
    host_config = api.create_host_config(
        network_mode=host.network_mode,
        port_bindings={f"{server.port}/tcp": server.port, f"{server.port}/udp": server.port} if publish else None,
        **host_options,
    )
    environment = {
        **{str(k): str(v) for k, v in (server.environment or {}).items()},
        "VPNADMIN_PROTOCOL": server.protocol,
        "VPNADMIN_PORT": str(server.port),
    }
    try:
        created = api.create_container(
            server.image,
            command=shlex.split(server.command) if server.command else None,
            name=server.name,
            environment=environment,
            labels=_labels(server),
            ports=[(server.port, "tcp"), (server.port, "udp")] if publish else None,
            host_config=host_config,
            stop_timeout=settings.DOCKER_STOP_TIMEOUT,
            **options,
        )
    except docker.errors.ImageNotFound:
        raise Refused(f"image {server.image} is not on host {host.name}") from None
    obs.container_id, obs.state = created["Id"], ObservedState.CREATED
    return dict(api.inspect_container(created["Id"]))


def do_create(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str]:
    info = find(api, target.server)
    if info is not None:
        _seen(obs, info)
        return Outcome.UNCHANGED, "container exists"
    _seen(obs, create(api, target, obs))
    return Outcome.DONE, "created"


def do_start(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str]:
    info = find(api, target.server)
    verb = "started"
    if info is None:
        info, verb = create(api, target, obs), "created and started"
    _seen(obs, info)
    if obs.state == "running":
        return Outcome.UNCHANGED, "already running"
    if obs.state == "paused":
        api.unpause(info["Id"])
    else:
        _check_binds_before_start(info, target)
        api.start(info["Id"])
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, verb


def _check_binds_before_start(info: dict[str, Any], target: Target) -> None:
    # The engine resolves bind sources at each start: a symlink swapped in since creation is refused here.
    problems = recorded_bind_errors(info, target.host)
    if problems:
        raise Refused("refused by the creation policy at start: " + " ".join(problems))


def do_stop(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str]:
    info = find(api, target.server)
    if info is None:
        obs.container_id, obs.state = "", ObservedState.MISSING
        return Outcome.UNCHANGED, "no container"
    _seen(obs, info)
    if obs.state not in _RUNNING_LIKE:
        return Outcome.UNCHANGED, f"already {obs.state}"
    api.stop(info["Id"], timeout=settings.DOCKER_STOP_TIMEOUT)
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, "stopped"


def do_restart(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str]:
    info = find(api, target.server)
    verb = "restarted"
    if info is None:
        info, verb = create(api, target, obs), "created and started"
    _seen(obs, info)
    _check_binds_before_start(info, target)
    api.restart(info["Id"], timeout=settings.DOCKER_STOP_TIMEOUT)
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, verb


def do_remove(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str]:
    info = find(api, target.server)
    obs.container_id, obs.state = "", ObservedState.MISSING
    if info is None:
        return Outcome.UNCHANGED, "no container"
    try:
        api.remove_container(info["Id"], force=True)
    except docker.errors.NotFound:
        return Outcome.UNCHANGED, "no container"
    return Outcome.DONE, "removed"


ACTIONS: dict[str, Action] = {
    BatchAction.CREATE: do_create,
    BatchAction.START: do_start,
    BatchAction.STOP: do_stop,
    BatchAction.RESTART: do_restart,
    BatchAction.REMOVE: do_remove,
}
# The state an action asks for; create leaves the desired state as it was.
DESIRED: dict[str, str] = {
    BatchAction.START: "running",
    BatchAction.RESTART: "running",
    BatchAction.STOP: "stopped",
    BatchAction.REMOVE: "stopped",
}
