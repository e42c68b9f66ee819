"""Writes on subscriptions: issue (or rotate) and revoke, for one user or any selection.

Issuing gives every selected user a new random token and stores only its hash; the
plain tokens are returned once, to the caller, and exist nowhere else. A user that had a
token gets a new one in the same statement (rotation): the old URL stops answering when
the transaction commits, cache included (the "subscriptions" tag is bumped after commit).
Each call is one transaction, one audit entry, one invalidation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from perf.cache import invalidate_on_commit
from users.models import VpnUser
from users.subscriptions.models import Subscription
from users.subscriptions.tokens import new_token, token_hash
from vpnadmin.audit import audit_record
from vpnadmin.models import MAX_AUDITED_IDS

if TYPE_CHECKING:
    from django.contrib.auth.models import User

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
    *, actor: User | None, users: QuerySet[VpnUser], only_missing: bool = False, selection: str = ""
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


def subscription_rotate(*, actor: User | None, user_id: int) -> IssuedToken | None:
    """A new token for one user (the old URL stops at once); None if the user is gone."""
    issued = subscriptions_issue(actor=actor, users=VpnUser.objects.filter(pk=user_id), selection=f"user {user_id}")
    return issued[0] if issued else None


def subscriptions_revoke(*, actor: User | None, users: QuerySet[VpnUser], selection: str = "") -> int:
    """Delete the subscription of every user in `users`: their URLs answer 404 from commit on."""
    # The selection compiled as a top-level query: nested as a Django subquery its tables
    # are aliased, and a search filter's raw SQL naming "users_vpnuser" would break.
    sql, params = users.order_by().values("pk").query.sql_with_params()
    table = connection.ops.quote_name(Subscription._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        # One statement; only the count and the first ids the audit keeps come back.
        cursor.execute(
            f"WITH gone AS (DELETE FROM {table} WHERE user_id IN ({sql}) RETURNING user_id) "  # noqa: S608  # nosec B608
            f"SELECT count(*), (array_agg(user_id ORDER BY user_id))[1:{MAX_AUDITED_IDS}] FROM gone",
            params,
        )
        count, ids = cursor.fetchone()
        audit_record(
            actor=actor,
            action="subscriptions_revoke",
            target=TARGET,
            count=count,
            object_ids=ids or [],
            detail={"selection": selection},
        )
        invalidate_on_commit(["subscriptions"])
    return count
