from __future__ import annotations

from typing import Any

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from vpnadmin.audit import audit_record
from vpnadmin.http import request_actor
from vpnadmin.models import AuditEntry
from vpnadmin.sessions import sessions_end_for_user


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "target", "count", "client_ip", "request_id"]
    list_filter = ["action", "target"]
    search_fields = ["actor_name", "action", "request_id"]
    date_hierarchy = "created_at"
    # The audit trail is append-only, even for superusers (the database refuses too).
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class StaffUserAdmin(UserAdmin):
    actions = ["end_sessions"]

    @admin.action(description="Log out everywhere (end every session)", permissions=["manage_sessions"])
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        ended = 0
        for user in queryset.filter(is_staff=True)[:100]:
            ended += sessions_end_for_user(actor=request_actor(request), user=user, reason="administrator")
        self.message_user(request, f"Ended {ended} session(s).")

    def has_manage_sessions_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("vpnadmin.manage_sessions")


# django-axes' "clean up expired attempts" reads the attempt time axes sets on login
# requests only: from the admin it raised AttributeError (a 500). It gets the time here.
admin.site.unregister(AccessAttempt)


@admin.register(AccessAttempt)
class LockoutAdmin(AccessAttemptAdmin):
    @admin.action(description="Clean up expired attempts", permissions=["delete"])
    def cleanup_expired_attempts(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        request.axes_attempt_time = timezone.now()  # type: ignore[attr-defined]  # what axes expects
        with transaction.atomic():
            count = self.handler.clean_expired_user_attempts(request=request)
            audit_record(
                actor=request_actor(request), action="lockouts_cleanup", target="axes.AccessAttempt", count=count
            )
        self.message_user(request, f"Cleaned up {count} expired access attempts.")
