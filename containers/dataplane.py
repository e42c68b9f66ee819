"""Reads for the data-plane panels: a server's users and apply state, the fleet's counts.

Each panel is one tagged cache read per refresh: the writes that change what it shows
(a users write, an apply, a traffic poll) drop the tags it is stored under.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, Sum
from django.utils import timezone

from containers.models import ApplyState, VpnServer
from containers.sync import served_q
from perf.cache import tagged_cache

CACHE_SECONDS = 300


@dataclass(frozen=True)
class ServerDataPlane:
    users: int
    served: int
    used_bytes: int
    apply_state: str
    apply_error: str
    applied_at: datetime | None
    dirty_at: datetime | None
    polled_at: datetime | None
    traffic_total: int
    config_hash: str


def _server_dataplane(server_id: int) -> ServerDataPlane | None:
    from users.models import VpnUser

    server = VpnServer.objects.filter(pk=server_id).first()
    if server is None:
        return None
    totals: dict[str, Any] = VpnUser.objects.filter(server_id=server_id).aggregate(
        users=Count("pk"), served=Count("pk", filter=served_q(timezone.now())), used=Sum("used_traffic")
    )
    return ServerDataPlane(
        users=totals["users"] or 0,
        served=totals["served"] or 0,
        used_bytes=totals["used"] or 0,
        apply_state=server.apply_state,
        apply_error=server.apply_error,
        applied_at=server.applied_at,
        dirty_at=server.dirty_at,
        polled_at=server.polled_at,
        traffic_total=server.traffic_total,
        config_hash=server.config_hash,
    )


def server_dataplane(server_id: int) -> ServerDataPlane | None:
    """One server's panel: users on it, in its desired set, traffic, apply state."""
    # Dropped by users writes (server:<id>), applies and polls (containers/sync.py).
    return tagged_cache().get_or_set(
        f"containers:dataplane:{server_id}",
        lambda: _server_dataplane(server_id),
        CACHE_SECONDS,
        tags=[f"server:{server_id}"],
    )


@dataclass(frozen=True)
class FleetDataPlane:
    applied: int
    pending: int
    failed: int
    failed_names: list[str]


def _fleet_dataplane() -> FleetDataPlane:
    counts = VpnServer.objects.aggregate(
        applied=Count("pk", filter=Q(apply_state=ApplyState.APPLIED)),
        pending=Count("pk", filter=Q(apply_state=ApplyState.PENDING)),
        failed=Count("pk", filter=Q(apply_state=ApplyState.FAILED)),
    )
    names = list(
        VpnServer.objects.filter(apply_state=ApplyState.FAILED).order_by("name").values_list("name", flat=True)[:5]
    )
    return FleetDataPlane(counts["applied"], counts["pending"], counts["failed"], names)


def fleet_dataplane() -> FleetDataPlane:
    """Servers applied / pending / failed, for the dashboard."""
    return tagged_cache().get_or_set("containers:dataplane:fleet", _fleet_dataplane, CACHE_SECONDS, tags=["servers"])
