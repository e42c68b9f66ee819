"""Reads about Docker engines, the servers on them, jobs and the latest stats samples."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, Prefetch, QuerySet

from containers.engine import EngineAddress, fan_out, ping_host
from containers.models import BatchJob, DockerHost, VpnServer
from containers.stats import read_panel
from perf.cache import invalidate_on_commit


@dataclass(frozen=True)
class EngineEndpoint:
    name: str
    address: EngineAddress  # how to reach it, TLS and ssh settings included


def engine_endpoints() -> list[EngineEndpoint]:
    """Every enabled Docker engine; the configured local engine when no host is recorded."""
    hosts = list(DockerHost.objects.order_by("name"))
    if not hosts:
        return [EngineEndpoint(name="local", address=EngineAddress(base_url=settings.DOCKER_HOST))]
    return [EngineEndpoint(name=host.name, address=EngineAddress.of(host)) for host in hosts if host.enabled]


def hosts_with_servers() -> list[DockerHost]:
    """Every host with its servers (ordered by name), for the servers page."""
    servers = VpnServer.objects.order_by("name")
    return list(
        DockerHost.objects.annotate(server_count=Count("servers"))
        .prefetch_related(Prefetch("servers", queryset=servers))
        .order_by("-enabled", "name")
    )


@dataclass(frozen=True)
class HostStatus:
    reachable: bool
    detail: str


def live_host_status(hosts: Iterable[DockerHost], *, timeout: float | None = None) -> dict[int, HostStatus]:
    """Ping every enabled host at once; a host that does not answer within `timeout` is unreachable.

    The page waits at most `timeout` in all, whatever the number of hosts.
    """
    deadline = settings.HEALTH_CHECK_TIMEOUT if timeout is None else timeout
    enabled = [host for host in hosts if host.enabled]
    answers = fan_out(enabled, lambda host: ping_host(host, timeout=deadline), timeout=deadline)
    return {
        host.pk: HostStatus(True, f"Docker {answer.value}") if answer.ok else HostStatus(False, answer.error)
        for host, answer in answers.items()
    }


def servers_for_ids(ids: Iterable[int]) -> QuerySet[VpnServer]:
    return VpnServer.objects.filter(pk__in=list(ids)).select_related("host")


def job_with_results(job_id: int) -> BatchJob | None:
    return BatchJob.objects.filter(pk=job_id).prefetch_related("results").first()


def recent_jobs(limit: int = 5) -> list[BatchJob]:
    return list(BatchJob.objects.order_by("-created_at", "-id")[:limit])


# --- the live stats panel ---------------------------------------------------------------


@dataclass
class StatsPanel:
    """The collector's summary: rows of display strings, per host and for the busiest servers."""

    hosts: list[dict[str, Any]] = field(default_factory=list)
    top: list[dict[str, Any]] = field(default_factory=list)
    running: int = 0
    sampled: int = 0
    collected_at: float = 0.0


def stats_panel() -> StatsPanel | None:
    """Totals per host and the busiest servers as the collector last summed them up: one
    cache read, whatever the number of containers; no query, never a call to an engine.
    None when no collector has run lately."""
    data = read_panel()
    if data is None:
        return None
    return StatsPanel(
        hosts=list(data.get("hosts", [])),
        top=list(data.get("top", [])),
        running=int(data.get("running", 0)),
        sampled=int(data.get("sampled", 0)),
        collected_at=float(data.get("collected_at", 0.0)),
    )


def invalidate_server_tags(server_ids: list[int]) -> None:
    """Drop cached reads about these servers, and lists of servers (tag "servers").

    After the current transaction commits (now, outside one).
    """
    if server_ids:
        invalidate_on_commit([*(f"server:{pk}" for pk in server_ids), "servers"])
