"""The VPN data plane: users writes mark servers dirty; one debounced apply per server converges it.

A users write (any service in users/) calls `servers_mark_dirty` with the servers it
touched. After its transaction commits, those servers are marked pending and one apply
task per server is deferred; the task's queueing lock collapses every further request
made while one is already waiting, so a batch over 1,000 users (or ten batches in a
row) costs each server one apply.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone

from containers.models import ApplyState, VpnServer

logger = logging.getLogger(__name__)


def servers_mark_dirty(*, server_ids: Iterable[int]) -> None:
    """After the current transaction commits: mark these servers pending and defer their applies."""
    ids = sorted({int(pk) for pk in server_ids if pk is not None})
    if not ids:
        return

    def mark() -> None:
        VpnServer.objects.filter(pk__in=ids).update(apply_state=ApplyState.PENDING, dirty_at=timezone.now())
        _defer_applies(ids)

    transaction.on_commit(mark)


def _defer_applies(server_ids: list[int]) -> None:
    try:
        from containers.tasks import defer_server_applies
    except ImportError:
        # The task queue lands in a parallel change; until then the servers stay pending
        # and the periodic converge (same module) picks them up.
        logger.info("apply of servers %s left pending: no task queue yet", server_ids)
        return
    defer_server_applies(server_ids=server_ids)
