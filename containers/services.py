"""Writes: hosts, servers, and batch actions on their containers across engines.

The public services of the app: pages, the admin, commands and queue tasks call these.
The engine side lives below them: `actions` (the Docker calls of each action), `runner`
(one action over many servers on many engines), `reconcile` (the database against what
the engines run), `jobs` (batches run by a queue worker).

A batch gives each server one result: done, unchanged (it was already so: actions are
safe to repeat) or failed with the reason; one failure never stops the others, and a
host that cannot be reached fails its items at once. Small batches run in the request;
larger ones, or ones a host would take in several waves, go to the task queue.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import docker
from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from containers import runner
from containers import stats as stats_store
from containers.actions import ACTIONS, Observed, Target
from containers.engine import STATS_CONCURRENCY, fan_out, ping_host
from containers.models import BatchAction, DockerHost, Outcome, VpnServer
from containers.policy import create_policy_errors
from containers.reconcile import HostSync, reconcile
from containers.runner import BatchOutcome, ItemResult
from perf.cache import invalidate_on_commit
from vpnadmin.audit import audit_record

__all__ = [
    "BatchOutcome",
    "HostSync",
    "ItemResult",
    "hosts_check",
    "hosts_create",
    "hosts_ensure_default",
    "hosts_set_enabled",
    "servers_batch_now",
    "servers_create",
    "servers_create_batch",
    "servers_delete",
    "servers_remove_batch",
    "servers_restart_batch",
    "servers_run_batch",
    "servers_start_batch",
    "servers_stats_batch",
    "servers_stop_batch",
    "servers_sync",
]

Servers = Iterable[VpnServer] | QuerySet[VpnServer]


def _invalidate_servers(server_ids: list[int]) -> None:
    if server_ids:
        invalidate_on_commit([*(f"server:{pk}" for pk in server_ids), "servers"])


# --- batches -------------------------------------------------------------------------------


def servers_batch_now(*, action: str, servers: Servers, actor: User | None = None, audit: bool = True) -> BatchOutcome:
    """Run one action on every server now, in this thread; one result per server, one audit entry."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    targets = runner.targets_of(servers)
    finished, down = runner.run(targets, runner.action_work(action), per_host_limit=lambda host: host.max_concurrent)
    outcome = BatchOutcome(action=action, results=[item.result for _, item in finished])
    with transaction.atomic():
        for target, item in finished:
            runner.write_server(action, target, item)
        runner.record_hosts({t.host.pk: t.host for t in targets}.values(), down)
        if audit:
            audit_record(
                actor=actor,
                action=f"servers_{action}",
                target="containers.VpnServer",
                count=len(targets),
                object_ids=[t.server.pk for t in targets],
                detail={"done": outcome.done, "unchanged": outcome.unchanged, "failed": outcome.failed},
            )
        _invalidate_servers([t.server.pk for t in targets])
    return outcome


def servers_start_batch(*, servers: Servers, actor: User | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.START, servers=servers, actor=actor)


def servers_stop_batch(*, servers: Servers, actor: User | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.STOP, servers=servers, actor=actor)


def servers_restart_batch(*, servers: Servers, actor: User | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.RESTART, servers=servers, actor=actor)


def servers_create_batch(*, servers: Servers, actor: User | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.CREATE, servers=servers, actor=actor)


def servers_remove_batch(*, servers: Servers, actor: User | None = None) -> BatchOutcome:
    return servers_batch_now(action=BatchAction.REMOVE, servers=servers, actor=actor)


def _needs_queue(servers: QuerySet[VpnServer], limit: int) -> tuple[list[int], bool]:
    """The servers' ids, and whether they go to the queue: above `limit` servers, or when a
    host would take them in more than one wave (a request must end well within gunicorn's
    timeout, and each engine call may take up to DOCKER_TIMEOUT)."""
    rows = list(servers.values_list("pk", "host_id", "host__max_concurrent"))
    per_host: dict[int, list[int]] = defaultdict(list)
    for _pk, host_id, max_concurrent in rows:
        per_host[host_id].append(max_concurrent)
    waves = max((math.ceil(len(limits) / max(limits[0], 1)) for limits in per_host.values()), default=0)
    ids = [pk for pk, _, _ in rows]
    return ids, len(ids) > limit or waves > 1


def servers_run_batch(
    *, action: str, servers: QuerySet[VpnServer], actor: User | None = None, background_over: int | None = None
) -> BatchOutcome:
    """Run a batch now, or as a queue job whose progress the job page polls."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    limit = settings.CONTAINERS_BACKGROUND_THRESHOLD if background_over is None else background_over
    ids, queued = _needs_queue(servers, limit)
    if queued:
        from containers.jobs import job_submit

        return BatchOutcome(action=action, job=job_submit(action=action, server_ids=ids, actor=actor))
    return servers_batch_now(action=action, servers=VpnServer.objects.filter(pk__in=ids), actor=actor)


# --- stats -------------------------------------------------------------------------------


def servers_stats_batch(
    *,
    servers: Servers,
    one_shot: bool = False,
    previous: dict[int, dict[str, Any]] | None = None,
    store: bool = True,
) -> list[ItemResult]:
    """Read one stats sample of every running server at once; keep them in the cache.

    With `one_shot` the engine answers at once and CPU % comes from `previous` samples
    (the collector's last pass); without it the engine reads twice about a second apart,
    so CPU % is in the answer (all servers are read concurrently, in about one call's time).
    """
    previous = previous or {}

    def work(api: docker.APIClient, target: Target, obs: Observed) -> tuple[str, str, dict[str, Any] | None]:
        ref = target.server.container_id or target.server.name
        try:
            raw = api.stats(ref, stream=False, one_shot=one_shot)
        except docker.errors.NotFound:
            return Outcome.FAILED, "no container", None
        if not raw.get("pids_stats") and not (raw.get("memory_stats") or {}).get("usage"):
            return Outcome.UNCHANGED, "not running", None
        return Outcome.DONE, "", stats_store.sample_from_raw(raw, previous.get(target.server.pk))

    targets = runner.targets_of(servers)
    finished, _down = runner.run(targets, work, per_host_limit=lambda host: STATS_CONCURRENCY)
    if store:
        timeout = max(settings.CONTAINERS_STATS_INTERVAL * 3, 15)
        for target, item in finished:
            if item.result.stats is not None:
                stats_store.store_sample(
                    server_id=target.server.pk, host_id=target.host.pk, sample=item.result.stats, timeout=timeout
                )
    return [item.result for _, item in finished]


# --- reconciling with the engines ------------------------------------------------------------


def servers_sync(*, hosts: Iterable[DockerHost] | None = None, actor: User | None = None) -> list[HostSync]:
    """Make the database say what each engine really runs; one audit entry when anything changed."""
    host_list = list(hosts) if hosts is not None else list(DockerHost.objects.filter(enabled=True))
    if not host_list:
        return []
    with transaction.atomic():
        reports, changed_ids = reconcile(host_list)
        if changed_ids:
            audit_record(
                actor=actor,
                action="servers_sync",
                target="containers.VpnServer",
                count=len(changed_ids),
                object_ids=changed_ids,
                detail={r.host: {"changed": r.changed, "vanished": r.vanished} for r in reports},
            )
            _invalidate_servers(changed_ids)
    return reports


# --- hosts and servers as records --------------------------------------------------------


def hosts_ensure_default(*, actor: User | None = None) -> DockerHost | None:
    """The local engine from settings (DOCKER_HOST) as the first host; None when a host exists."""
    with transaction.atomic():
        if DockerHost.objects.exists():
            return None
        host, created = DockerHost.objects.get_or_create(
            name="local", defaults={"base_url": settings.DOCKER_HOST, "network_mode": settings.DOCKER_NETWORK_MODE}
        )
        if created:
            audit_record(
                actor=actor, action="hosts_create", target="containers.DockerHost", count=1, object_ids=[host.pk]
            )
    return host


def hosts_create(*, actor: User | None, **fields: Any) -> DockerHost:
    with transaction.atomic():
        host = DockerHost.objects.create(**fields)
        audit_record(actor=actor, action="hosts_create", target="containers.DockerHost", count=1, object_ids=[host.pk])
    return host


def hosts_update(*, actor: User | None, host: DockerHost, fields: dict[str, Any]) -> DockerHost:
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


def hosts_delete(*, actor: User | None, host: DockerHost) -> None:
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


def hosts_set_enabled(*, hosts: QuerySet[DockerHost], enabled: bool, actor: User | None) -> int:
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
    answers = fan_out(host_list, ping_host)
    now = timezone.now()
    for host in host_list:
        answer = answers[host]
        host.reachable = answer.ok
        host.last_error = answer.error[:255]
        host.engine_version = answer.value if answer.ok and answer.value else host.engine_version
        host.last_checked_at = now
        host.save(update_fields=["reachable", "last_error", "engine_version", "last_checked_at"])
    return {host.pk: answer.error for host, answer in answers.items() if not answer.ok}


def servers_create(
    *,
    actor: User | None,
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
        _invalidate_servers([server.pk])
    return server


def servers_delete(*, servers: QuerySet[VpnServer], actor: User | None) -> BatchOutcome:
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
        _invalidate_servers(gone)
    return outcome


# The data plane's entry point for users writes (lives in containers/sync.py with the applies).
from containers.sync import servers_mark_dirty  # noqa: E402, F401

if TYPE_CHECKING:
    from django.contrib.auth.models import User
