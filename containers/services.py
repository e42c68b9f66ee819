"""Writes: hosts, servers, and batch actions on their containers across engines.

A batch snapshots its servers, talks to the engines in a bounded thread pool (per host
and overall) where threads touch no database, then writes every server's new state and
one audit entry in one transaction. Each server gets one result: done, unchanged (it
was already so: actions are safe to repeat) or failed with the reason; one failure
never stops the others, and a host that cannot be reached fails its items at once.
"""

from __future__ import annotations

import logging
import math
import shlex
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from typing import Any

import docker
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from containers import stats as stats_store
from containers.engine import STATS_CONCURRENCY, client_for, describe_engine_error, is_unreachable, ping_host
from containers.models import (
    LABEL_MANAGED,
    LABEL_SERVER,
    BatchAction,
    BatchJob,
    DockerHost,
    ObservedState,
    Outcome,
    VpnServer,
)
from containers.policy import create_policy_errors
from perf.cache import invalidate_on_commit
from vpnadmin.audit import audit_record

logger = logging.getLogger(__name__)

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
}
_RUNNING_LIKE = {"running", "restarting", "paused"}


@dataclass(frozen=True)
class ItemResult:
    """What happened to one server in a batch."""

    server_id: int
    server_name: str
    host_name: str
    outcome: str
    message: str = ""
    stats: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != Outcome.FAILED


@dataclass
class BatchOutcome:
    """The results of one batch, or the background job that will produce them."""

    action: str
    results: list[ItemResult] = field(default_factory=list)
    job: BatchJob | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.results if r.outcome == outcome)

    @property
    def done(self) -> int:
        return self.count(Outcome.DONE)

    @property
    def unchanged(self) -> int:
        return self.count(Outcome.UNCHANGED)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    def summary(self) -> str:
        if self.job is not None:
            return f"{self.action}: {self.job.total} servers, running in the background"
        return f"{self.action}: {self.done} done, {self.unchanged} unchanged, {self.failed} failed"


@dataclass(frozen=True)
class _Target:
    """A server as the engine threads see it: plain values, no database access."""

    server: VpnServer
    host: DockerHost


@dataclass
class _Observed:
    """What a worker learned about the container, kept even when a later step fails."""

    container_id: str | None = None
    state: str | None = None


class _Refused(Exception):
    """A request the policy or the container's identity rules out (message is shown as is)."""


# --- the engine side of each action --------------------------------------------------


def _labels(server: VpnServer) -> dict[str, str]:
    return {**settings.DOCKER_EXTRA_LABELS, **server.labels}


def _find(api: docker.APIClient, server: VpnServer) -> dict[str, Any] | None:
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
            raise _Refused(f"a container named {server.name} exists on this host and is not this server's")
        return info
    return None


def _state(info: dict[str, Any]) -> str:
    return str((info.get("State") or {}).get("Status") or ObservedState.UNKNOWN)


def _create(api: docker.APIClient, target: _Target, obs: _Observed) -> dict[str, Any]:
    server, host = target.server, target.host
    # The whole policy again right before the engine acts (kind's needs, host network,
    # image, binds resolved here): rows written around the forms meet it too.
    problems = create_policy_errors(server.options, protocol=server.protocol, host=host, image=server.image)
    if problems:
        raise _Refused("refused by the creation policy: " + " ".join(problems))
    options = dict(server.options)
    host_options = {k: options.pop(k) for k in list(options) if k in _HOST_CONFIG_OPTIONS}
    if "ulimits" in host_options:
        host_options["ulimits"] = [docker.types.Ulimit(**u) for u in host_options["ulimits"]]
    publish = host.network_mode not in ("none",)
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
        raise _Refused(f"image {server.image} is not on host {host.name}") from None
    obs.container_id, obs.state = created["Id"], ObservedState.CREATED
    return api.inspect_container(created["Id"])


def _seen(obs: _Observed, info: dict[str, Any]) -> None:
    obs.container_id, obs.state = info["Id"], _state(info)


def _do_create(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str]:
    info = _find(api, target.server)
    if info is not None:
        _seen(obs, info)
        return Outcome.UNCHANGED, "container exists"
    _seen(obs, _create(api, target, obs))
    return Outcome.DONE, "created"


def _do_start(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str]:
    info = _find(api, target.server)
    verb = "started"
    if info is None:
        info, verb = _create(api, target, obs), "created and started"
    _seen(obs, info)
    if obs.state == "running":
        return Outcome.UNCHANGED, "already running"
    if obs.state == "paused":
        api.unpause(info["Id"])
    else:
        api.start(info["Id"])
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, verb


def _do_stop(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str]:
    info = _find(api, target.server)
    if info is None:
        obs.container_id, obs.state = "", ObservedState.MISSING
        return Outcome.UNCHANGED, "no container"
    _seen(obs, info)
    if obs.state not in _RUNNING_LIKE:
        return Outcome.UNCHANGED, f"already {obs.state}"
    api.stop(info["Id"], timeout=settings.DOCKER_STOP_TIMEOUT)
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, "stopped"


def _do_restart(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str]:
    info = _find(api, target.server)
    verb = "restarted"
    if info is None:
        info, verb = _create(api, target, obs), "created and started"
    _seen(obs, info)
    api.restart(info["Id"], timeout=settings.DOCKER_STOP_TIMEOUT)
    _seen(obs, api.inspect_container(info["Id"]))
    return Outcome.DONE, verb


def _do_remove(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str]:
    info = _find(api, target.server)
    obs.container_id, obs.state = "", ObservedState.MISSING
    if info is None:
        return Outcome.UNCHANGED, "no container"
    try:
        api.remove_container(info["Id"], force=True)
    except docker.errors.NotFound:
        return Outcome.UNCHANGED, "no container"
    return Outcome.DONE, "removed"


_ACTIONS: dict[str, Callable[[docker.APIClient, _Target, _Observed], tuple[str, str]]] = {
    BatchAction.CREATE: _do_create,
    BatchAction.START: _do_start,
    BatchAction.STOP: _do_stop,
    BatchAction.RESTART: _do_restart,
    BatchAction.REMOVE: _do_remove,
}
_DESIRED = {
    BatchAction.START: "running",
    BatchAction.RESTART: "running",
    BatchAction.STOP: "stopped",
    BatchAction.REMOVE: "stopped",
}


# --- the runner ------------------------------------------------------------------------


@dataclass
class _Item:
    result: ItemResult
    obs: _Observed
    checked_host: bool = True


def _targets(servers: Iterable[VpnServer] | QuerySet[VpnServer]) -> list[_Target]:
    if isinstance(servers, QuerySet):
        servers = servers.select_related("host")
    return [_Target(server=s, host=s.host) for s in servers]


def _ping_hosts(hosts: list[DockerHost]) -> dict[int, str]:
    """Ping every host at once; the error message of each one that does not answer."""
    down: dict[int, str] = {}
    if not hosts:
        return down
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = {pool.submit(ping_host, host): host for host in hosts}
        for future, host in futures.items():
            try:
                future.result()
            except Exception as exc:  # every failure of an engine is a per-item message
                down[host.pk] = describe_engine_error(exc)
    return down


def _run(
    targets: list[_Target],
    work: Callable[[docker.APIClient, _Target, _Observed], tuple[str, str, dict[str, Any] | None]],
    *,
    per_host_limit: Callable[[DockerHost], int],
    on_item: Callable[[_Target, _Item], None] | None = None,
) -> tuple[list[tuple[_Target, _Item]], dict[int, str]]:
    """Run `work` for every target in per-host pools under one overall bound."""
    hosts = {t.host.pk: t.host for t in targets}
    disabled = {pk for pk, host in hosts.items() if not host.enabled}
    down = _ping_hosts([host for pk, host in hosts.items() if pk not in disabled])
    overall = threading.BoundedSemaphore(settings.DOCKER_MAX_CONCURRENT)
    lock = threading.Lock()

    def one(target: _Target) -> _Item:
        host = target.host
        obs = _Observed()

        def failed(message: str) -> _Item:
            return _Item(ItemResult(target.server.pk, target.server.name, host.name, Outcome.FAILED, message), obs)

        if host.pk in disabled:
            return failed(f"host {host.name} is disabled")
        with lock:
            host_error = down.get(host.pk)
        if host_error:
            return failed(f"host {host.name}: {host_error}")
        with overall:
            try:
                outcome, message, sample = work(client_for(host), target, obs)
            except _Refused as exc:
                return failed(str(exc))
            except Exception as exc:  # each item's failure is its own result, never the batch's
                if is_unreachable(exc):
                    with lock:
                        down.setdefault(host.pk, describe_engine_error(exc))
                return failed(describe_engine_error(exc))
        result = ItemResult(target.server.pk, target.server.name, host.name, outcome, message, sample)
        return _Item(result, obs)

    by_host: dict[int, list[_Target]] = defaultdict(list)
    for target in targets:
        by_host[target.host.pk].append(target)
    pools = {
        pk: ThreadPoolExecutor(
            max_workers=max(1, min(per_host_limit(hosts[pk]), len(items))), thread_name_prefix=f"engine-{pk}"
        )
        for pk, items in by_host.items()
    }
    futures: dict[Future[_Item], _Target] = {}
    try:
        for pk, items in by_host.items():
            for target in items:
                futures[pools[pk].submit(one, target)] = target
        finished: list[tuple[_Target, _Item]] = []
        for future in as_completed(futures):
            item = future.result()
            finished.append((futures[future], item))
            if on_item is not None:
                on_item(futures[future], item)
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)
    order = {id(t): i for i, t in enumerate(targets)}
    finished.sort(key=lambda pair: order[id(pair[0])])
    return finished, down


def _action_work(action: str) -> Callable[[docker.APIClient, _Target, _Observed], tuple[str, str, None]]:
    do = _ACTIONS[action]

    def work(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str, None]:
        outcome, message = do(api, target, obs)
        return outcome, message, None

    return work


def _server_updates(action: str, item: _Item) -> dict[str, Any]:
    updates: dict[str, Any] = {"last_error": "" if item.result.ok else item.result.message[:255]}
    if item.obs.state is not None:
        updates.update(observed_state=item.obs.state, observed_at=timezone.now())
    if item.obs.container_id is not None:
        updates["container_id"] = item.obs.container_id
    if action in _DESIRED:
        updates["desired_state"] = _DESIRED[action]
    return updates


def _record_hosts(hosts: Iterable[DockerHost], down: dict[int, str]) -> None:
    now = timezone.now()
    for host in hosts:
        reachable = host.pk not in down
        if host.enabled and (host.reachable != reachable or host.last_error != down.get(host.pk, "")):
            host.reachable, host.last_error, host.last_checked_at = reachable, down.get(host.pk, "")[:255], now
            DockerHost.objects.filter(pk=host.pk).update(
                reachable=reachable, last_error=host.last_error, last_checked_at=now
            )


def _write_server(action: str, target: _Target, item: _Item) -> None:
    VpnServer.objects.filter(pk=target.server.pk).update(**_server_updates(action, item))


def _invalidate_servers(server_ids: list[int]) -> None:
    from containers.selectors import invalidate_server_tags

    invalidate_server_tags(server_ids)


def servers_batch_now(
    *,
    action: str,
    servers: Iterable[VpnServer] | QuerySet[VpnServer],
    actor: Any | None = None,
    on_item: Callable[[_Target, _Item], None] | None = None,
    audit: bool = True,
) -> BatchOutcome:
    """Run one action on every server now; one result per server, one audit entry."""
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    targets = _targets(servers)
    finished, down = _run(
        targets, _action_work(action), per_host_limit=lambda host: host.max_concurrent, on_item=on_item
    )
    outcome = BatchOutcome(action=action, results=[item.result for _, item in finished])
    with transaction.atomic():
        if on_item is None:  # a job writes each server as it finishes
            for target, item in finished:
                _write_server(action, target, item)
        _record_hosts({t.host.pk: t.host for t in targets}.values(), down)
        if audit:
            audit_record(
                actor=actor,
                action=f"servers_{action}",
                target="containers.VpnServer",
                count=len(targets),
                object_ids=[t.server.pk for t in targets],
                detail={"done": outcome.done, "unchanged": outcome.unchanged, "failed": outcome.failed},
            )
        ids = [t.server.pk for t in targets]
        transaction.on_commit(lambda: _invalidate_servers(ids))
    return outcome


def servers_start_batch(
    *, servers: Iterable[VpnServer] | QuerySet[VpnServer], actor: Any | None = None
) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.START, servers=servers, actor=actor)


def servers_stop_batch(*, servers: Iterable[VpnServer] | QuerySet[VpnServer], actor: Any | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.STOP, servers=servers, actor=actor)


def servers_restart_batch(
    *, servers: Iterable[VpnServer] | QuerySet[VpnServer], actor: Any | None = None
) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.RESTART, servers=servers, actor=actor)


def servers_create_batch(
    *, servers: Iterable[VpnServer] | QuerySet[VpnServer], actor: Any | None = None
) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.CREATE, servers=servers, actor=actor)


def servers_remove_batch(
    *, servers: Iterable[VpnServer] | QuerySet[VpnServer], actor: Any | None = None
) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.REMOVE, servers=servers, actor=actor)


def servers_run_batch(
    *,
    action: str,
    servers: QuerySet[VpnServer],
    actor: Any | None = None,
    background_over: int | None = None,
) -> BatchOutcome:
    """Run a batch now, or as a background job: above `background_over` servers, or when a
    host would take them in more than one wave (a request must end well within gunicorn's
    timeout, and each engine call may take up to DOCKER_TIMEOUT)."""
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    limit = settings.CONTAINERS_BACKGROUND_THRESHOLD if background_over is None else background_over
    rows = list(servers.values_list("pk", "host_id", "host__max_concurrent"))
    ids = [pk for pk, _, _ in rows]
    per_host: dict[int, list[int]] = defaultdict(list)
    for _pk, host_id, max_concurrent in rows:
        per_host[host_id].append(max_concurrent)
    waves = max((math.ceil(len(limits) / max(limits[0], 1)) for limits in per_host.values()), default=0)
    if len(ids) > limit or waves > 1:
        from containers.jobs import job_submit

        return BatchOutcome(action=action, job=job_submit(action=action, server_ids=ids, actor=actor))
    return servers_batch_now(action=action, servers=VpnServer.objects.filter(pk__in=ids), actor=actor)


# --- stats -------------------------------------------------------------------------------


def servers_stats_batch(
    *,
    servers: Iterable[VpnServer] | QuerySet[VpnServer],
    one_shot: bool = False,
    previous: dict[int, dict[str, Any]] | None = None,
    store: bool = True,
) -> list[ItemResult]:
    """Read one stats sample of every running server at once; keep them in the cache.

    With `one_shot` the engine answers at once and CPU % comes from `previous` samples
    (the collector); without it the engine reads twice about a second apart, so CPU %
    is in the answer (all servers are read concurrently, in about one call's time).
    """
    previous = previous or {}

    def work(api: docker.APIClient, target: _Target, obs: _Observed) -> tuple[str, str, dict[str, Any] | None]:
        ref = target.server.container_id or target.server.name
        try:
            raw = api.stats(ref, stream=False, one_shot=one_shot)
        except docker.errors.NotFound:
            return Outcome.FAILED, "no container", None
        if not raw.get("pids_stats") and not (raw.get("memory_stats") or {}).get("usage"):
            return Outcome.UNCHANGED, "not running", None
        return Outcome.DONE, "", stats_store.sample_from_raw(raw, previous.get(target.server.pk))

    targets = _targets(servers)
    finished, _down = _run(targets, work, per_host_limit=lambda host: STATS_CONCURRENCY)
    if store:
        timeout = max(settings.CONTAINERS_STATS_INTERVAL * 3, 15)
        for target, item in finished:
            if item.result.stats is not None:
                stats_store.store_sample(
                    server_id=target.server.pk, host_id=target.host.pk, sample=item.result.stats, timeout=timeout
                )
    return [item.result for _, item in finished]


# --- reconciling with the engines ------------------------------------------------------------


@dataclass
class HostSync:
    host: str
    reachable: bool
    error: str = ""
    changed: int = 0
    vanished: int = 0
    adopted: int = 0
    unknown: list[str] = field(default_factory=list)


def _list_managed(host: DockerHost) -> list[dict[str, Any]]:
    labels = [f"{LABEL_MANAGED}=true", *(f"{k}={v}" for k, v in settings.DOCKER_EXTRA_LABELS.items())]
    return client_for(host).containers(all=True, filters={"label": labels})


def servers_sync(*, hosts: Iterable[DockerHost] | None = None, actor: Any | None = None) -> list[HostSync]:
    """Make the database say what each engine really runs.

    Containers that vanished become "no container"; changed states are recorded; a
    container carrying a server's labels and name (started by hand, or re-created) is
    linked to that server. Labelled containers of no known server are reported.
    """
    host_list = list(hosts) if hosts is not None else list(DockerHost.objects.filter(enabled=True))
    if not host_list:
        return []
    listings: dict[int, list[dict[str, Any]] | str] = {}
    with ThreadPoolExecutor(max_workers=len(host_list)) as pool:
        futures = {host.pk: pool.submit(_list_managed, host) for host in host_list}
        wait(futures.values())
        for pk, future in futures.items():
            try:
                listings[pk] = future.result()
            except Exception as exc:  # an engine down is a state of the host, not an error
                listings[pk] = describe_engine_error(exc)
    reports: list[HostSync] = []
    now = timezone.now()
    changed_ids: list[int] = []
    with transaction.atomic():
        for host in host_list:
            listing = listings[host.pk]
            servers = {s.pk: s for s in VpnServer.objects.filter(host=host).select_for_update()}
            if isinstance(listing, str):
                reports.append(HostSync(host.name, reachable=False, error=listing))
                DockerHost.objects.filter(pk=host.pk).update(reachable=False, last_error=listing, last_checked_at=now)
                stale = [pk for pk, s in servers.items() if s.observed_state != ObservedState.UNKNOWN]
                VpnServer.objects.filter(pk__in=stale).update(observed_state=ObservedState.UNKNOWN, observed_at=now)
                changed_ids += stale
                continue
            DockerHost.objects.filter(pk=host.pk).update(reachable=True, last_error="", last_checked_at=now)
            report = HostSync(host.name, reachable=True)
            seen: set[int] = set()
            for container in listing:
                labels = container.get("Labels") or {}
                name = (container.get("Names") or ["/"])[0].lstrip("/")
                try:
                    server = servers.get(int(labels.get(LABEL_SERVER, "")))
                except ValueError:
                    server = None
                if server is None or (server.container_id != container["Id"] and server.name != name):
                    report.unknown.append(name)
                    continue
                if server.pk in seen:
                    continue
                seen.add(server.pk)
                state = str(container.get("State") or ObservedState.UNKNOWN)
                if server.container_id != container["Id"]:
                    report.adopted += 1
                elif server.observed_state == state:
                    continue
                report.changed += 1
                changed_ids.append(server.pk)
                VpnServer.objects.filter(pk=server.pk).update(
                    container_id=container["Id"], observed_state=state, observed_at=now
                )
            for pk, server in servers.items():
                if pk not in seen and (server.container_id or server.observed_state != ObservedState.MISSING):
                    report.vanished += 1
                    changed_ids.append(pk)
                    VpnServer.objects.filter(pk=pk).update(
                        container_id="", observed_state=ObservedState.MISSING, observed_at=now
                    )
            reports.append(report)
        if changed_ids:
            audit_record(
                actor=actor,
                action="servers_sync",
                target="containers.VpnServer",
                count=len(changed_ids),
                object_ids=changed_ids,
                detail={r.host: {"changed": r.changed, "vanished": r.vanished} for r in reports},
            )
            transaction.on_commit(lambda: _invalidate_servers(changed_ids))
    return reports


# --- hosts and servers as records --------------------------------------------------------


def hosts_ensure_default() -> DockerHost | None:
    """The local engine from settings, as a host, when no host exists yet."""
    if DockerHost.objects.exists():
        return None
    host, _ = DockerHost.objects.get_or_create(
        name="local", defaults={"base_url": settings.DOCKER_HOST, "network_mode": settings.DOCKER_NETWORK_MODE}
    )
    return host


def hosts_create(*, actor: Any | None, **fields: Any) -> DockerHost:
    with transaction.atomic():
        host = DockerHost.objects.create(**fields)
        audit_record(actor=actor, action="hosts_create", target="containers.DockerHost", count=1, object_ids=[host.pk])
    return host


def hosts_update(*, actor: Any | None, host: DockerHost, fields: dict[str, Any]) -> DockerHost:
    """Save a host's changed settings (validated by DockerHostForm) with one audit entry naming them."""
    with transaction.atomic():
        for name, value in fields.items():
            setattr(host, name, value)
        host.save(update_fields=[*fields, "updated_at"])
        audit_record(
            actor=actor,
            action="hosts_update",
            target="containers.DockerHost",
            count=1,
            object_ids=[host.pk],
            detail={"fields": sorted(fields)},
        )
        invalidate_on_commit([f"host:{host.pk}", "servers"])
    return host


def hosts_delete(*, actor: Any | None, host: DockerHost) -> None:
    """Delete a host that serves nothing; one with servers is refused (delete its servers first)."""
    with transaction.atomic():
        host = DockerHost.objects.select_for_update().get(pk=host.pk)
        names = list(VpnServer.objects.filter(host=host).values_list("name", flat=True)[:10])
        if names:
            raise ValueError(f"Host {host.name} still has servers ({', '.join(names)}): delete them first.")
        pk, name = host.pk, host.name
        host.delete()
        audit_record(
            actor=actor,
            action="hosts_delete",
            target="containers.DockerHost",
            count=1,
            object_ids=[pk],
            detail={"name": name},
        )
        invalidate_on_commit([f"host:{pk}", "servers"])


def hosts_set_enabled(*, hosts: QuerySet[DockerHost], enabled: bool, actor: Any | None) -> int:
    with transaction.atomic():
        ids = list(hosts.exclude(enabled=enabled).values_list("pk", flat=True))
        DockerHost.objects.filter(pk__in=ids).update(enabled=enabled)
        if ids:
            audit_record(
                actor=actor,
                action="hosts_enable" if enabled else "hosts_disable",
                target="containers.DockerHost",
                count=len(ids),
                object_ids=ids,
            )
    return len(ids)


def hosts_check(*, hosts: Iterable[DockerHost]) -> dict[int, str]:
    """Ping hosts at once and record which answer; returns the errors by host id."""
    host_list = list(hosts)
    errors: dict[int, str] = {}
    versions: dict[int, str] = {}
    if host_list:
        with ThreadPoolExecutor(max_workers=len(host_list)) as pool:
            futures = {host.pk: pool.submit(ping_host, host) for host in host_list}
            for pk, future in futures.items():
                try:
                    versions[pk] = future.result()
                except Exception as exc:  # a host that does not answer is a state, not an error
                    errors[pk] = describe_engine_error(exc)
    now = timezone.now()
    for host in host_list:
        host.reachable = host.pk not in errors
        host.last_error = errors.get(host.pk, "")[:255]
        host.engine_version = versions.get(host.pk, host.engine_version)
        host.last_checked_at = now
        host.save(update_fields=["reachable", "last_error", "engine_version", "last_checked_at"])
    return errors


def servers_create(
    *,
    actor: Any | None,
    host: DockerHost,
    name: str,
    protocol: str,
    image: str,
    port: int,
    command: str = "",
    environment: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    desired_state: str = "stopped",
) -> VpnServer:
    """Record a new server (its container is made by a create/start batch)."""
    problems = create_policy_errors(options or {}, protocol=protocol, host=host, image=image)
    if problems:
        raise ValueError(" ".join(problems))
    with transaction.atomic():
        server = VpnServer(
            host=host,
            name=name,
            protocol=protocol,
            image=image,
            port=port,
            command=command,
            environment=environment or {},
            options=options or {},
            desired_state=desired_state,
        )
        server.full_clean()
        server.save()
        audit_record(
            actor=actor,
            action="servers_create",
            target="containers.VpnServer",
            count=1,
            object_ids=[server.pk],
            detail={"host": host.name, "image": image, "port": port},
        )
        pk = server.pk
        transaction.on_commit(lambda: _invalidate_servers([pk]))
    return server


def servers_delete(*, servers: QuerySet[VpnServer], actor: Any | None) -> BatchOutcome:
    """Remove the containers, then delete the records of those whose container is gone."""
    outcome = servers_batch_now(action=BatchAction.REMOVE, servers=servers, actor=actor, audit=False)
    gone = [r.server_id for r in outcome.results if r.ok]
    with transaction.atomic():
        VpnServer.objects.filter(pk__in=gone).delete()
        audit_record(
            actor=actor,
            action="servers_delete",
            target="containers.VpnServer",
            count=len(gone),
            object_ids=gone,
            detail={"failed": outcome.failed},
        )
        transaction.on_commit(lambda: _invalidate_servers(gone))
    return outcome


# The data plane's entry point for users writes (lives in containers/sync.py with the applies).
from containers.sync import servers_mark_dirty  # noqa: E402, F401
