"""Reconciliation: make the database say what each engine really runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from containers.engine import client_for, fan_out
from containers.models import LABEL_MANAGED, LABEL_SERVER, DockerHost, ObservedState, VpnServer


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
    return list(client_for(host).containers(all=True, filters={"label": labels}))


def _server_for(container: dict[str, Any], servers: dict[int, VpnServer]) -> VpnServer | None:
    """The known server a labelled container belongs to: its id label, and its stored id or name."""
    labels = container.get("Labels") or {}
    name = (container.get("Names") or ["/"])[0].lstrip("/")
    try:
        server = servers.get(int(labels.get(LABEL_SERVER, "")))
    except ValueError:
        return None
    if server is None or (server.container_id != container["Id"] and server.name != name):
        return None
    return server


def _apply_listing(
    host: DockerHost, listing: list[dict[str, Any]], servers: dict[int, VpnServer]
) -> tuple[HostSync, list[int]]:
    """Record one reachable host's containers against its servers (rows locked by the caller).

    Returns the host's report and the ids of the servers whose record changed.
    """
    now = timezone.now()
    report = HostSync(host.name, reachable=True)
    changed: list[int] = []
    seen: set[int] = set()
    for container in listing:
        server = _server_for(container, servers)
        if server is None:
            report.unknown.append((container.get("Names") or ["/"])[0].lstrip("/"))
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
        changed.append(server.pk)
        VpnServer.objects.filter(pk=server.pk).update(
            container_id=container["Id"], observed_state=state, observed_at=now
        )
    for pk, server in servers.items():
        if pk not in seen and (server.container_id or server.observed_state != ObservedState.MISSING):
            report.vanished += 1
            changed.append(pk)
            VpnServer.objects.filter(pk=pk).update(
                container_id="", observed_state=ObservedState.MISSING, observed_at=now
            )
    return report, changed


def reconcile(host_list: list[DockerHost]) -> tuple[list[HostSync], list[int]]:
    """List every host's containers at once, then record them in one transaction.

    Returns a report per host and the ids of the servers whose record changed. Containers
    that vanished become "no container"; a container carrying a server's labels and name
    (started by hand, or re-created) is linked to that server; labelled containers of no
    known server are reported; the servers of a host that does not answer become unknown.
    """
    answers = fan_out(host_list, _list_managed)
    reports: list[HostSync] = []
    changed_ids: list[int] = []
    now = timezone.now()
    with transaction.atomic():
        for host in host_list:
            answer = answers[host]
            servers = {s.pk: s for s in VpnServer.objects.filter(host=host).select_for_update()}
            if not answer.ok:
                reports.append(HostSync(host.name, reachable=False, error=answer.error))
                DockerHost.objects.filter(pk=host.pk).update(
                    reachable=False, last_error=answer.error[:255], last_checked_at=now
                )
                stale = [pk for pk, s in servers.items() if s.observed_state != ObservedState.UNKNOWN]
                VpnServer.objects.filter(pk__in=stale).update(observed_state=ObservedState.UNKNOWN, observed_at=now)
                changed_ids += stale
                continue
            DockerHost.objects.filter(pk=host.pk).update(reachable=True, last_error="", last_checked_at=now)
            report, changed = _apply_listing(host, answer.value or [], servers)
            changed_ids += changed
            reports.append(report)
    return reports, changed_ids
