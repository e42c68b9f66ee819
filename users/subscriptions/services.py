"""Writes on subscriptions: issue (or rotate) and revoke, for one user or any selection.

Issuing gives every selected user a new random token and stores only its hash; the
plain tokens are returned once, to the caller, and exist nowhere else. A user that had a
token gets a new one in the same statement (rotation): the old URL stops answering when
the transaction commits, cache included (the "subscriptions" tag is bumped after commit).
Each call is one transaction, one audit entry, one invalidation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from perf.cache import invalidate_on_commit
from users.models import VpnUser
from users.subscriptions.models import Subscription
from users.subscriptions.tokens import new_token, token_hash
from vpnadmin.audit import audit_record

TARGET = "users.VpnUser"
WRITE_BATCH = 5_000


@dataclass(frozen=True)
class IssuedToken:
    user_id: int
    username: str
    token: str

    def __repr__(self) -> str:
        return f"<IssuedToken user={self.user_id} (hidden)>"


def subscriptions_issue(
    *, actor: Any | None, users: QuerySet[VpnUser], only_missing: bool = False, selection: str = ""
) -> list[IssuedToken]:
    """A new token for every user in `users` (only those without one if `only_missing`).

    The caller bounds the selection (the tokens come back in memory, to be shown once).
    """
    now = timezone.now()
    with transaction.atomic():
        selected = users.order_by("pk")
        if only_missing:
            selected = selected.filter(subscription__isnull=True)
        rows = list(selected.values_list("pk", "username"))
        issued = [IssuedToken(pk, username, new_token()) for pk, username in rows]
        Subscription.objects.bulk_create(
            [Subscription(user_id=item.user_id, token_hash=token_hash(item.token), issued_at=now) for item in issued],
            update_conflicts=True,
            unique_fields=["user"],
            update_fields=["token_hash", "issued_at"],
            batch_size=WRITE_BATCH,
        )
        audit_record(
            actor=actor,
            action="subscriptions_issue",
            target=TARGET,
            count=len(issued),
            object_ids=[item.user_id for item in issued],
            detail={"selection": selection, "only_missing": only_missing},
        )
        invalidate_on_commit(["subscriptions"])
    return issued


def subscription_rotate(*, actor: Any | None, user_id: int) -> IssuedToken | None:
    """A new token for one user (the old URL stops at once); None if the user is gone."""
    issued = subscriptions_issue(actor=actor, users=VpnUser.objects.filter(pk=user_id), selection=f"user {user_id}")
    return issued[0] if issued else None


def subscriptions_revoke(*, actor: Any | None, users: QuerySet[VpnUser], selection: str = "") -> int:
    """Delete the subscription of every user in `users`: their URLs answer 404 from commit on."""
    with transaction.atomic():
        gone = Subscription.objects.filter(user__in=users.order_by().values("pk"))
        ids = list(gone.values_list("user_id", flat=True)[:10_000])
        count, _ = gone.delete()
        audit_record(
            actor=actor,
            action="subscriptions_revoke",
            target=TARGET,
            count=count,
            object_ids=ids,
            detail={"selection": selection},
        )
        invalidate_on_commit(["subscriptions"])
    return count
