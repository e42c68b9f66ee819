"""The VPN data plane: users writes mark servers dirty; one debounced apply per server converges it.

A users write (any service in users/) calls `servers_mark_dirty` with the servers it
touched. After its transaction commits, those servers are marked pending and one apply
task per server is deferred; the task's queueing lock collapses every further request
made while one is already waiting, so a batch over 1,000 users (or ten batches in a
row) costs each server one apply.

An apply renders the server's desired set (its users whose effective status lets them
in), hashes it, and only when the hash differs from the one the server itself holds
does its kind write and apply it. Back the other way, a periodic poll reads every
running server's per-user counters, turns them into deltas that survive counter resets
and writes them with the users' one set-based traffic write.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import docker
import requests
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, TextField, Value
from django.db.models.functions import Cast
from django.utils import timezone

from containers.engine import describe_engine_error
from containers.kinds import ApplyRejected, UserEntry, kind_for
from containers.kinds.base import applied_digest, config_digest
from containers.models import ApplyState, DesiredState, ObservedState, VpnServer
from perf.cache import invalidate_on_commit
from vpnadmin.audit import audit_record
from vpnadmin.crypto import PlaintextCache, decrypt_many

logger = logging.getLogger(__name__)

# Engine reads of a poll run at once (threads touch no database; the write is one statement).
POLL_CONCURRENCY = 8
_ENGINE_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError)


class EngineUnavailable(Exception):
    """The server's engine or container could not be reached: the apply stays pending and is retried."""


def servers_mark_dirty(*, server_ids: Iterable[int]) -> None:
    """After the current transaction commits: mark these servers pending and defer their applies."""
    ids = sorted({int(pk) for pk in server_ids if pk is not None})
    if not ids:
        return

    def mark() -> None:
        VpnServer.objects.filter(pk__in=ids).update(apply_state=ApplyState.PENDING, dirty_at=timezone.now())
        _invalidate(ids)
        _defer_applies(ids)

    transaction.on_commit(mark)


def _defer_applies(server_ids: list[int]) -> None:
    # Imported here: the tasks module imports this one.
    from containers.tasks import defer_server_applies

    defer_server_applies(server_ids=server_ids)


def _invalidate(server_ids: Iterable[int]) -> None:
    invalidate_on_commit([*(f"server:{pk}" for pk in server_ids), "servers", "stats"])


# --- the desired set -------------------------------------------------------------------


def served_q(now: datetime.datetime) -> Q:
    """The users a server admits: active ones, and on-hold ones (their first use starts the clock)."""
    from users.models import Status, status_q

    return status_q(Status.ACTIVE, now) | status_q(Status.ON_HOLD, now)


# Plaintext credentials of this worker process, by token (vpnadmin.crypto.PlaintextCache):
# a re-apply after one user changed opens that user's token, not the server's 10,000.
# Bounded (about 350 bytes an entry), in this process's memory only, emptied on a key change.
CREDENTIALS = PlaintextCache(settings.VPN_CREDENTIAL_CACHE_SIZE)


def desired_users(server: VpnServer, *, now: datetime.datetime | None = None) -> list[UserEntry]:
    """The users the server must serve, with the credentials its kind's config carries.

    The encrypted columns are read as their tokens (a Cast skips the field's per-row
    decrypt and any model instance) and only the ones the kind needs are opened, in one
    pass through the process's cache. The canonical UUID text is what was encrypted, so
    it goes into the config as it comes out.
    """
    from users.models import VpnUser

    secrets = kind_for(server).secrets
    empty = Value("", output_field=TextField())
    rows = list(
        VpnUser.objects.filter(server=server, protocol=server.protocol)
        .filter(served_q(now or timezone.now()))
        .order_by("pk")
        .values_list(
            "pk",
            Cast("credential_uuid", TextField()) if "uuid" in secrets else empty,
            Cast("credential_password", TextField()) if "password" in secrets else empty,
            "wg_public_key",
            "wg_address",
            "ss_port",
        )
    )
    uuids = decrypt_many([row[1] or "" for row in rows], cache=CREDENTIALS) if "uuid" in secrets else None
    passwords = decrypt_many([row[2] or "" for row in rows], cache=CREDENTIALS) if "password" in secrets else None
    return [
        UserEntry(
            pk,
            uuids[i] if uuids is not None else "",
            passwords[i] if passwords is not None else "",
            public or "",
            address or "",
            port,
        )
        for i, (pk, _, _, public, address, port) in enumerate(rows)
    ]


# --- apply -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyOutcome:
    server_id: int
    state: str
    changed: bool = False
    calls: int = 0
    message: str = ""


def _is_running(server: VpnServer) -> bool:
    return server.desired_state == DesiredState.RUNNING and server.observed_state == ObservedState.RUNNING


def _record(server: VpnServer, *, state: str, message: str, dirty_at: datetime.datetime | None, **extra: Any) -> None:
    updates: dict[str, Any] = {"apply_error": message[:500], **extra}
    if state == ApplyState.APPLIED:
        # Converged only if no users write touched the server since this apply read it;
        # otherwise it stays pending and the apply queued by that write finishes the job.
        converged = VpnServer.objects.filter(pk=server.pk, dirty_at=dirty_at).update(
            apply_state=ApplyState.APPLIED, applied_at=timezone.now(), **updates
        )
        if not converged:
            VpnServer.objects.filter(pk=server.pk).update(**updates)
    else:
        VpnServer.objects.filter(pk=server.pk).update(apply_state=state, **updates)
    _invalidate([server.pk])


def servers_apply(*, server_id: int) -> ApplyOutcome:
    """Render one server's desired set and make the server serve it (nothing when it already does).

    Raises EngineUnavailable when the engine or container cannot be reached (the server
    stays pending with the reason; the task retries). A config the core refuses leaves
    the previous one serving and the server failed with the core's message.
    """
    server = VpnServer.objects.select_related("host").filter(pk=server_id).first()
    if server is None:
        return ApplyOutcome(server_id, "gone", message="server deleted")
    dirty_at = server.dirty_at
    if not _is_running(server):
        message = "waiting for the container to run (applies when it starts)"
        _record(server, state=ApplyState.PENDING, message=message, dirty_at=dirty_at)
        return ApplyOutcome(server_id, ApplyState.PENDING, message=message)
    kind = kind_for(server)
    try:
        kind.allocate(server)
        files = kind.render(server, desired_users(server))
        digest = config_digest(files)
        # The server itself holds the hash of what it serves; ask it only when the stored
        # hash says nothing changed (a recreated container has none): one call saved per change.
        if digest == server.config_hash and applied_digest(server) == digest:
            _record(server, state=ApplyState.APPLIED, message="", dirty_at=dirty_at, config_hash=digest)
            return ApplyOutcome(server_id, ApplyState.APPLIED, message="same config, nothing to do")
        result = kind.apply(server, files, digest)
    except ApplyRejected as exc:
        _record(server, state=ApplyState.FAILED, message=str(exc), dirty_at=dirty_at)
        return ApplyOutcome(server_id, ApplyState.FAILED, message=str(exc))
    except _ENGINE_ERRORS as exc:
        message = describe_engine_error(exc)
        _record(server, state=ApplyState.PENDING, message=message, dirty_at=dirty_at)
        raise EngineUnavailable(message) from exc
    if result.counters is not None:
        # Read in the apply's own exec right before its reload reset them: count them now,
        # against the baseline as it is now (a periodic poll may have moved it meanwhile).
        current = VpnServer.objects.filter(pk=server.pk).values_list("traffic_baseline", "polled_at").first()
        if current is not None:
            server.traffic_baseline, server.polled_at = current
            servers_record_readings(readings=[(server, result.counters)])
    _record(server, state=ApplyState.APPLIED, message="", dirty_at=dirty_at, config_hash=digest)
    logger.info("server %s applied: %s", server.pk, result.detail)
    return ApplyOutcome(server_id, ApplyState.APPLIED, changed=result.changed, calls=result.calls)


def servers_needing_apply() -> list[int]:
    """Servers still pending (a lost task, an engine that was down, a container that just
    started), and applied ones whose container no longer holds what was applied (it was
    recreated, or its config lost): those are marked pending again."""
    running = VpnServer.objects.select_related("host").filter(
        desired_state=DesiredState.RUNNING, observed_state=ObservedState.RUNNING, host__enabled=True
    )
    pending = list(running.filter(apply_state=ApplyState.PENDING).values_list("pk", flat=True))
    applied = list(running.filter(apply_state=ApplyState.APPLIED).exclude(config_hash=""))
    if applied:
        with ThreadPoolExecutor(max_workers=min(POLL_CONCURRENCY, len(applied))) as pool:
            held = list(pool.map(_held_digest, applied))
        drifted = [
            server.pk
            for server, digest in zip(applied, held, strict=True)
            if digest is not None and digest != server.config_hash
        ]
        if drifted:
            VpnServer.objects.filter(pk__in=drifted).update(
                apply_state=ApplyState.PENDING, apply_error="the container lost its config (recreated?)"
            )
            _invalidate(drifted)
            pending += drifted
    return pending


def _held_digest(server: VpnServer) -> str | None:
    """The hash the container holds ('' for none); None when it cannot be asked now."""
    try:
        return applied_digest(server)
    except _ENGINE_ERRORS:
        return None


# --- traffic -----------------------------------------------------------------------------


@dataclass
class PollResult:
    servers: int = 0
    users: int = 0
    bytes: int = 0
    errors: dict[int, str] = field(default_factory=dict)


def traffic_deltas(
    baseline: dict[str, list[int]], raw: dict[str, tuple[int, int]], owners: dict[str, int]
) -> tuple[dict[int, int], dict[str, list[int]]]:
    """Bytes since the last reading per user, and the new baseline.

    A counter lower than last time was reset (the core or the container restarted):
    everything it shows now is new. A key that now belongs to another user (a port or
    address handed on) starts from zero. Never negative.
    """
    usage: dict[int, int] = {}
    new_baseline: dict[str, list[int]] = {}
    for key, (up, down) in raw.items():
        pk = owners.get(key)
        if pk is None:
            continue
        old = baseline.get(key)
        old_up, old_down = (old[1], old[2]) if old and len(old) == 3 and old[0] == pk else (0, 0)
        delta = (up - old_up if up >= old_up else up) + (down - old_down if down >= old_down else down)
        if delta > 0:
            usage[pk] = usage.get(pk, 0) + delta
        new_baseline[key] = [pk, up, down]
    return usage, new_baseline


def _owners(server: VpnServer) -> dict[str, int]:
    from users.models import VpnUser

    kind = kind_for(server)
    rows = VpnUser.objects.filter(server=server, protocol=server.protocol).values_list(
        "pk", "wg_public_key", "wg_address", "ss_port"
    )
    return {
        kind.user_key(UserEntry(pk, "", "", public or "", address or "", port)): pk
        for pk, public, address, port in rows
    }


def _read_counters(server: VpnServer) -> dict[str, tuple[int, int]] | str:
    try:
        return kind_for(server).counters(server)
    except ApplyRejected as exc:
        return str(exc)
    except _ENGINE_ERRORS as exc:
        return describe_engine_error(exc)


def servers_poll_traffic(*, server_ids: Sequence[int] | None = None) -> PollResult:
    """Read running servers' counters and add the deltas to their users in one write."""
    servers = VpnServer.objects.select_related("host").filter(
        desired_state=DesiredState.RUNNING, observed_state=ObservedState.RUNNING, host__enabled=True
    )
    if server_ids is not None:
        servers = servers.filter(pk__in=list(server_ids))
    targets = list(servers)
    if not targets:
        return PollResult()
    with ThreadPoolExecutor(max_workers=min(POLL_CONCURRENCY, len(targets))) as pool:
        readings = list(pool.map(_read_counters, targets))
    return servers_record_readings(readings=list(zip(targets, readings, strict=True)))


def servers_record_readings(*, readings: Sequence[tuple[VpnServer, dict[str, tuple[int, int]] | str]]) -> PollResult:
    """Turn counter readings (or the reason a server could not be read) into one traffic write."""
    from users.services import users_record_traffic

    result = PollResult()
    usage: dict[int, int] = {}
    updates: list[tuple[VpnServer, dict[str, list[int]], int]] = []
    for server, reading in readings:
        if isinstance(reading, str):
            result.errors[server.pk] = reading
            continue
        deltas, baseline = traffic_deltas(server.traffic_baseline or {}, reading, _owners(server))
        for pk, amount in deltas.items():
            usage[pk] = usage.get(pk, 0) + amount
        updates.append((server, baseline, sum(deltas.values())))
    now = timezone.now()
    with transaction.atomic():
        # The baseline moves only with the write it stands for: both land or neither.
        if usage:
            users_record_traffic(actor=None, usage=usage)
        for server, baseline, total in updates:
            VpnServer.objects.filter(pk=server.pk).update(
                traffic_baseline=baseline, traffic_total=F("traffic_total") + total, polled_at=now
            )
            server.traffic_baseline = baseline
        expiring = _servers_with_expiries(updates, now)
        if expiring:
            servers_mark_dirty(server_ids=expiring)
        _invalidate([server.pk for server, _, _ in updates])
    result.servers = len(updates)
    result.users = len(usage)
    result.bytes = sum(usage.values())
    return result


def _servers_with_expiries(
    updates: list[tuple[VpnServer, dict[str, list[int]], int]], now: datetime.datetime
) -> list[int]:
    """Servers with a user whose expiry passed since the last poll: they leave the desired set."""
    from users.models import VpnUser

    since = min((server.polled_at or server.applied_at or now for server, _, _ in updates), default=now)
    ids = [server.pk for server, _, _ in updates]
    return list(
        VpnUser.objects.filter(server__in=ids, expire_at__gt=since, expire_at__lte=now)
        .order_by()
        .values_list("server_id", flat=True)
        .distinct()
    )


# --- periodic resets ---------------------------------------------------------------------

_RESET_SQL = """
WITH due AS (
    SELECT id, server_id, (data_limit IS NOT NULL AND used_traffic >= data_limit) AS was_limited
    FROM users_vpnuser
    WHERE reset_strategy <> 'none'
      AND COALESCE(traffic_reset_at, created_at) < CASE reset_strategy
            WHEN 'day' THEN date_trunc('day', %(now)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            WHEN 'week' THEN date_trunc('week', %(now)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            WHEN 'month' THEN date_trunc('month', %(now)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
            WHEN 'year' THEN date_trunc('year', %(now)s::timestamptz AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
          END
    FOR UPDATE
)
UPDATE users_vpnuser AS u
SET previous_period_traffic = u.used_traffic, used_traffic = 0, traffic_reset_at = %(now)s, updated_at = %(now)s
FROM due WHERE u.id = due.id
RETURNING u.id, due.server_id, due.was_limited
"""


def users_reset_periodic(*, now: datetime.datetime | None = None) -> int:
    """Start a new traffic period for every user whose reset strategy says one began (UTC).

    One statement per run; the finished period's bytes are kept on the user. Servers of
    users that were limited get an apply (those users are back in the desired set).
    """
    now = now or timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RESET_SQL, {"now": now})
        rows = cursor.fetchall()
        if not rows:
            return 0
        ids = [row[0] for row in rows]
        audit_record(
            actor=None,
            action="users_reset_periodic",
            target="users.VpnUser",
            count=len(ids),
            object_ids=ids,
            detail={"at": now.isoformat()},
        )
        tags = ["users", "stats"]
        if len(ids) <= 100:
            tags += [f"user:{pk}" for pk in ids]
        invalidate_on_commit(tags)
        servers_mark_dirty(server_ids={row[1] for row in rows if row[2] and row[1]})
    return len(ids)
