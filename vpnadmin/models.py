"""The audit trail every write leaves: who did what to how many, from where, and when."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.db import models

# Enough ids to trace a batch; a million-row "all matching" write records its filter.
MAX_AUDITED_IDS = 10_000


class AuditEntry(models.Model):
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_name = models.CharField(max_length=150, blank=True, help_text="Kept when the account is deleted.")
    action = models.CharField(max_length=64, help_text="<thing>_<action>, e.g. users_delete.")
    target = models.CharField(max_length=64, help_text="What was changed, e.g. users.VpnUser.")
    count = models.PositiveIntegerField()
    object_ids = models.JSONField(default=list, blank=True)
    ids_truncated = models.BooleanField(default=False)
    detail = models.JSONField(default=dict, blank=True, help_text="Parameters: never secrets.")
    changes = models.JSONField(
        default=dict, blank=True, help_text="Single-object edits: {field: [before, after]}, secrets masked."
    )
    request_id = models.CharField(max_length=128, blank=True, help_text="Also in the log lines of the request.")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["action", "-created_at"]),
            # The audit page filters by actor or by object type, newest first, paged by id.
            models.Index(fields=["actor_name", "-id"], name="vpnadmin_audit_actor_id"),
            models.Index(fields=["target", "-id"], name="vpnadmin_audit_target_id"),
            # "Which entries touched object 42?": JSON containment on the id list.
            GinIndex(fields=["object_ids"], name="vpnadmin_audit_objects", opclasses=["jsonb_path_ops"]),
        ]
        # Project-wide permissions with no model of their own (no app may add a model for them).
        permissions = [
            ("manage_cache", "Can invalidate and warm the cache"),
            ("view_dashboard", "Can view the dashboard"),
            ("view_performance", "Can view the performance pages"),
            ("manage_sessions", "Can end the sessions of other staff users"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} x{self.count}"


class UserSession(models.Model):
    """A login: which session belongs to whom, so "log out everywhere" can find them all.

    Django's database sessions keep the user id inside encoded data; without this index
    ending one user's sessions would mean decoding every session row.
    """

    session_key = models.CharField(max_length=40, primary_key=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="vpnadmin_sessions")
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} since {self.created_at:%Y-%m-%d %H:%M}"
