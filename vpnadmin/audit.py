"""Recording audit entries. Call inside the write's transaction, so both land or neither."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from vpnadmin.models import MAX_AUDITED_IDS, AuditEntry


def audit_record(
    *,
    actor: Any | None,
    action: str,
    target: str,
    count: int,
    object_ids: Iterable[int | str] = (),
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """One entry for one batch write; `actor` is a user or None for the system."""
    ids = []
    truncated = False
    for index, object_id in enumerate(object_ids):
        if index >= MAX_AUDITED_IDS:
            truncated = True
            break
        ids.append(object_id)
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    return AuditEntry.objects.create(
        actor=actor if authenticated else None,
        actor_name=actor.get_username() if authenticated else "",
        action=action,
        target=target,
        count=count,
        object_ids=ids,
        ids_truncated=truncated,
        detail=detail or {},
    )
