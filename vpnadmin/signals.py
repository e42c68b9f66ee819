"""Logins, logouts, failures and lockouts in the audit trail; sessions end with the account."""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save, pre_save
from django.http import HttpRequest

from vpnadmin.audit import audit_record
from vpnadmin.models import UserSession
from vpnadmin.sessions import sessions_end_for_user, user_session_record

TARGET = "auth.User"


def _on_login(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None or not hasattr(request, "session"):
        return  # force_login from a shell or a test client without a request
    user_session_record(request=request, user=user)
    audit_record(actor=user, action="auth_login", target=TARGET, count=1, object_ids=[user.pk])


def _on_logout(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if request is None:
        return
    if request.session.session_key:
        UserSession.objects.filter(session_key=request.session.session_key).delete()
    reason = getattr(request, "vpnadmin_logout_reason", "user")
    if user is not None:
        audit_record(
            actor=user, action="auth_logout", target=TARGET, count=1, object_ids=[user.pk], detail={"reason": reason}
        )


def _on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django already replaced the password with stars; only the username is kept.
    username = str(credentials.get("username", ""))[:150]
    audit_record(actor=None, action="auth_login_failed", target=TARGET, count=1, detail={"username": username})


def _on_locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, ip_address: str, **kwargs: Any
) -> None:
    audit_record(
        actor=None,
        action="auth_lockout",
        target=TARGET,
        count=1,
        detail={"username": (username or "")[:150], "ip_address": ip_address},
    )


def _remember_active(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.pk:
        instance._vpnadmin_was_active = (
            sender.objects.filter(pk=instance.pk).values_list("is_active", flat=True).first()
        )


def _end_sessions_when_disabled(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    if not created and getattr(instance, "_vpnadmin_was_active", False) and not instance.is_active:
        sessions_end_for_user(actor=None, user=instance, reason="disabled", audit=False)


def connect() -> None:
    user_logged_in.connect(_on_login, dispatch_uid="vpnadmin_audit_login")
    user_logged_out.connect(_on_logout, dispatch_uid="vpnadmin_audit_logout")
    user_login_failed.connect(_on_login_failed, dispatch_uid="vpnadmin_audit_login_failed")
    user_locked_out.connect(_on_locked_out, dispatch_uid="vpnadmin_audit_lockout")
    user_model = get_user_model()
    pre_save.connect(_remember_active, sender=user_model, dispatch_uid="vpnadmin_remember_active")
    post_save.connect(_end_sessions_when_disabled, sender=user_model, dispatch_uid="vpnadmin_end_sessions")
