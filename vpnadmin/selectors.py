"""Reads of the project's own tables: the audit trail."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from vpnadmin.models import AuditEntry

AUDIT_PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditPage:
    entries: list[AuditEntry]
    next_before: int | None  # the `before` of the next (older) page, None on the last


def _day_start(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def audit_page(
    *,
    actor: str = "",
    action: str = "",
    target: str = "",
    object_id: str = "",
    since: datetime.date | None = None,
    until: datetime.date | None = None,
    before_id: int | None = None,
    size: int = AUDIT_PAGE_SIZE,
) -> AuditPage:
    """One page of entries, newest first; keyset paging by id (no OFFSET, no count)."""
    query = AuditEntry.objects.all()
    if actor:
        query = query.filter(actor_name=actor)
    if action:
        query = query.filter(action=action)
    if target:
        query = query.filter(target=target)
    if object_id:
        # Ids are stored as numbers or strings, whichever the writer had.
        filters = Q(object_ids__contains=[object_id])
        if object_id.isdigit():
            filters |= Q(object_ids__contains=[int(object_id)])
        query = query.filter(filters)
    if since:
        query = query.filter(created_at__gte=_day_start(since))
    if until:
        query = query.filter(created_at__lt=_day_start(until + datetime.timedelta(days=1)))
    if before_id:
        query = query.filter(id__lt=before_id)
    rows = list(query.order_by("-id")[: size + 1])
    more = len(rows) > size
    entries = rows[:size]
    return AuditPage(entries=entries, next_before=entries[-1].id if more and entries else None)
