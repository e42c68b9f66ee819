"""Reads for subscriptions: a token to what its clients receive, and a user's subscription state.

`subscription_for_token` is the hot path of `/sub/<token>/`, polled by every client. A
warm read is one Redis round trip and no SQL: the entry is keyed by the token's hash,
sealed with a key derived from the token (a Redis dump opens nothing), and tagged so any
users write, server change or token rotation drops it at once. The effective status is
re-checked against the clock on every read, so an expiry is honoured without a write.
"""

from __future__ import annotations

import datetime
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from perf.cache import tagged_cache
from users.delivery.profiles import Profile, Unavailable, profile_for, profile_from_dict, profile_to_dict
from users.models import Status, VpnUser, status_expression
from users.subscriptions.models import Subscription
from users.subscriptions.tokens import seal, token_hash, unseal

# Any users write bumps "users", any server change "servers", any token change
# "subscriptions": all three are known before the read, so the tagged cache can check
# them in the same round trip and store only values computed before an invalidation.
CACHE_TAGS = ("users", "servers", "subscriptions")
# Statuses whose subscription carries working links (on hold: the clock starts at first use).
SERVING = (Status.ACTIVE.value, Status.ON_HOLD.value)


@dataclass
class SubscriptionData:
    user_id: int
    username: str
    protocol: str
    status: str
    used: int
    limit: int | None
    expire_at: datetime.datetime | None
    on_hold_days: int | None
    profiles: list[Profile] = field(default_factory=list)
    # Why there are no working links, in words for the person holding the URL.
    reason: str = ""

    def __repr__(self) -> str:
        return f"<SubscriptionData user={self.user_id} {self.status}>"

    @property
    def expire_epoch(self) -> int:
        return int(self.expire_at.timestamp()) if self.expire_at else 0


class _NotFound(Exception):
    """No subscription has this token: nothing is cached for it."""


def status_reason(status: str, *, expire_at: datetime.datetime | None, limit: int | None) -> str:
    from django.template.defaultfilters import filesizeformat

    if status == Status.DISABLED:
        return "This subscription is disabled by the provider."
    if status == Status.EXPIRED:
        when = timezone.localtime(expire_at).strftime("%Y-%m-%d %H:%M %Z") if expire_at else "its expiry date"
        return f"This subscription expired on {when}."
    if status == Status.LIMITED:
        return f"This subscription has used all of its data ({filesizeformat(limit or 0)})."
    return ""


def _load(digest: str) -> SubscriptionData:
    now = timezone.now()
    user = (
        VpnUser.objects.select_related("server")
        .annotate(status=status_expression(now), subscription_hash=F("subscription__token_hash"))
        .filter(subscription__token_hash=digest)
        .first()
    )
    # The index found the row by the whole hash; compare again in constant time anyway.
    if user is None or not hmac.compare_digest(user.subscription_hash, digest):
        raise _NotFound
    data = SubscriptionData(
        user_id=user.pk,
        username=user.username,
        protocol=user.protocol,
        status=user.status,
        used=user.used_traffic,
        limit=user.data_limit,
        expire_at=user.expire_at,
        on_hold_days=user.on_hold_days,
    )
    if user.status not in SERVING:
        data.reason = status_reason(user.status, expire_at=user.expire_at, limit=user.data_limit)
        return data
    profile = profile_for(user)
    if isinstance(profile, Unavailable):
        data.reason = "Your provider has not finished setting up the server for this account yet."
    else:
        data.profiles = [profile]
    return data


def _encode(data: SubscriptionData) -> bytes:
    payload: dict[str, Any] = {
        **{k: v for k, v in vars(data).items() if k not in ("profiles", "expire_at")},
        "expire_at": data.expire_at.isoformat() if data.expire_at else None,
        "profiles": [profile_to_dict(p) for p in data.profiles],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def _decode(raw: bytes) -> SubscriptionData:
    payload = json.loads(raw)
    payload["expire_at"] = datetime.datetime.fromisoformat(payload["expire_at"]) if payload["expire_at"] else None
    payload["profiles"] = [profile_from_dict(p) for p in payload["profiles"]]
    return SubscriptionData(**payload)


def _as_of_now(data: SubscriptionData) -> SubscriptionData:
    """A cached answer past its user's expiry is an expired answer (no write happens at expiry)."""
    if data.status in SERVING and data.expire_at is not None and data.expire_at <= timezone.now():
        data.status = Status.EXPIRED.value
        data.profiles = []
        data.reason = status_reason(data.status, expire_at=data.expire_at, limit=data.limit)
    return data


def cached_subscription(token: str) -> SubscriptionData | None:
    """The cached answer for this token if there is a fresh one (one MGET), else None.

    Never touches PostgreSQL: the view asks this while the rate limit's count is on its
    way, and only goes to `subscription_for_token` (which may read the database) once
    the limit said yes.
    """
    if settings.SUBSCRIPTION_CACHE_SECONDS <= 0:
        return None
    sealed = tagged_cache().get(f"sub:{token_hash(token)}", tags=CACHE_TAGS)
    raw = unseal(token, sealed) if isinstance(sealed, bytes) else None
    return _as_of_now(_decode(raw)) if raw is not None else None


def subscription_for_token(token: str) -> SubscriptionData | None:
    """What `/sub/<token>/` serves, or None for a token no subscription has.

    Every token takes the same path (hash, cache read, one indexed query on a miss),
    whatever its shape: a malformed token costs what a well-formed wrong one costs.
    """
    digest = token_hash(token)
    timeout = settings.SUBSCRIPTION_CACHE_SECONDS
    if timeout <= 0:
        try:
            return _as_of_now(_load(digest))
        except _NotFound:
            return None
    try:
        sealed = tagged_cache().get_or_set(
            f"sub:{digest}", lambda: seal(token, _encode(_load(digest))), timeout, tags=CACHE_TAGS
        )
    except _NotFound:
        return None
    raw = unseal(token, sealed) if isinstance(sealed, bytes) else None
    if raw is None:
        # Not sealed under this token (cannot happen short of a hash collision): ask the database.
        try:
            return _as_of_now(_load(digest))
        except _NotFound:
            return None
    return _as_of_now(_decode(raw))


@dataclass(frozen=True)
class SubscriptionState:
    issued_at: datetime.datetime | None

    @property
    def exists(self) -> bool:
        return self.issued_at is not None


def subscription_state(user_id: int) -> SubscriptionState:
    issued = Subscription.objects.filter(user_id=user_id).values_list("issued_at", flat=True).first()
    return SubscriptionState(issued_at=issued)


def subscription_users(user_ids: Sequence[int]) -> set[int]:
    return set(Subscription.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True))
