"""Sessions: an idle timeout, and ending every session of one user.

Django rotates the session key at login; this adds what it lacks: a session unused for
SESSION_IDLE_TIMEOUT seconds ends, and "log out everywhere" (for oneself, or by an
administrator for any staff user, or when a user is disabled) deletes every session of
that user, found through UserSession rows written at login.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.models import Session
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from vpnadmin.audit import audit_record
from vpnadmin.models import UserSession

if TYPE_CHECKING:
    from django.contrib.auth.models import User

LAST_SEEN_KEY = "_vpnadmin_last_seen"
# Writing the session on every request would be a database write per page view: the
# last-seen mark moves at most once a minute, which the idle timeout cannot notice.
_MARK_EVERY = 60


def user_session_record(*, request: HttpRequest, user: Any) -> None:
    """Remember that this session belongs to `user` (called at login, after rotation)."""
    if request.session.session_key is None:
        request.session.save()
    from vpnadmin.requestctx import client_ip

    # Logins that ended without a logout (expired, closed browser) leave rows: drop this
    # user's dead ones here, so the table stays the size of the live sessions.
    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    UserSession.objects.filter(user=user).exclude(session_key__in=live).delete()
    UserSession.objects.update_or_create(
        session_key=request.session.session_key,
        defaults={
            "user": user,
            "client_ip": client_ip(request) or None,
            "user_agent": request.META.get("HTTP_USER_AGENT", "")[:200],
        },
    )
    request.session[LAST_SEEN_KEY] = int(time.time())


def sessions_end_for_user(*, actor: User | None, user: Any, reason: str, audit: bool = True) -> int:
    """Delete every session of `user`. Returns how many ended.

    One audit entry, unless the caller's own entry covers it (`audit=False`: disabling a
    user is one change, recorded by whoever disabled them).
    """
    with transaction.atomic():
        keys = list(UserSession.objects.filter(user=user).values_list("session_key", flat=True))
        ended, _ = Session.objects.filter(session_key__in=keys).delete()
        UserSession.objects.filter(user=user).delete()
        if not audit:
            return ended
        audit_record(
            actor=actor,
            action="sessions_end",
            target="auth.User",
            count=ended,
            object_ids=[user.pk],
            detail={"user": user.get_username(), "reason": reason},
        )
    return ended


class SessionGuardMiddleware:
    """End a session idle for longer than SESSION_IDLE_TIMEOUT; keep its last-seen mark."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            now = int(time.time())
            last_seen = request.session.get(LAST_SEEN_KEY)
            if isinstance(last_seen, int) and now - last_seen > settings.SESSION_IDLE_TIMEOUT:
                request.vpnadmin_logout_reason = "idle"  # type: ignore[attr-defined]  # read by the audit signal
                logout(request)
                return redirect_to_login(request.get_full_path())
            if not isinstance(last_seen, int) or now - last_seen >= _MARK_EVERY:
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
