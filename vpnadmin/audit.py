"""Recording audit entries. Call inside the write's transaction, so both land or neither.

Every entry carries the request id and client address of the request it was made in
(from vpnadmin.requestctx), so an entry leads to the log lines of the same request.
"""

from __future__ import annotations

import datetime
import decimal
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.db import models

from vpnadmin import requestctx
from vpnadmin.models import MAX_AUDITED_IDS, AuditEntry

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MASK = "••••••"
# Field names whose values never reach the trail: credentials, keys, tokens, hashes.
_SECRET_NAME = re.compile(r"password|secret|private|token|key|credential|uuid|psk|hash", re.IGNORECASE)


def is_secret_field(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, models.QuerySet):
        return sorted(str(pk) for pk in value.values_list("pk", flat=True))
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)


def audit_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """{field: [before, after]} for the fields that differ; secret fields only say that they changed."""
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(before) | set(after)):
        old, new = _jsonable(before.get(name)), _jsonable(after.get(name))
        if old == new:
            continue
        changes[name] = [MASK, MASK] if is_secret_field(name) else [old, new]
    return changes


def audit_record(
    *,
    actor: User | None,
    action: str,
    target: str,
    count: int,
    object_ids: Iterable[int | str] = (),
    detail: dict[str, Any] | None = None,
    changes: dict[str, list[Any]] | None = None,
) -> AuditEntry:
    """One entry for one write; `actor` is a user or None for the system.

    `changes` (from `audit_changes`) is for single-object edits. The request id and the
    client address come from the current request, when there is one.
    """
    ids = []
    truncated = False
    for index, object_id in enumerate(object_ids):
        if index >= MAX_AUDITED_IDS:
            truncated = True
            break
        ids.append(object_id)
    person = actor if actor is not None and getattr(actor, "is_authenticated", False) else None
    context = requestctx.current()
    entry = AuditEntry.objects.create(
        actor=person,
        actor_name=person.get_username() if person is not None else "",
        action=action,
        target=target,
        count=count,
        object_ids=ids,
        ids_truncated=truncated,
        detail=detail or {},
        changes=changes or {},
        request_id=context.request_id if context else "",
        client_ip=context.client_ip if context else None,
    )
    if context is not None:
        context.audit_entries += 1
    return entry


def audit_entries_in_request() -> int:
    """How many entries this request has written so far (0 outside a request)."""
    context = requestctx.current()
    return context.audit_entries if context else 0


def audit_prune(*, older_than_days: int, batch_size: int = 10_000, progress: Any = None) -> int:
    """Delete entries older than `older_than_days` days, in batches; one entry records it.

    The only path that may delete entries: each batch's transaction opts in to the
    database trigger that otherwise refuses every DELETE on the trail.
    """
    from datetime import timedelta

    from django.db import connection, transaction
    from django.utils import timezone

    if older_than_days < 1:
        raise ValueError("older_than_days must be at least 1")
    cutoff = timezone.now() - timedelta(days=older_than_days)
    total = 0
    while True:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL vpnadmin.audit_prune = 'on'")
            ids = list(
                AuditEntry.objects.filter(created_at__lt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                break
            deleted, _ = AuditEntry.objects.filter(id__in=ids).delete()
            total += deleted
        if progress is not None:
            progress(total)
    audit_record(
        actor=None,
        action="audit_prune",
        target="vpnadmin.AuditEntry",
        count=total,
        detail={"older_than_days": older_than_days, "cutoff": cutoff.isoformat()},
    )
    return total
