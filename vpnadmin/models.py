"""The audit trail every batch write leaves: who did what to how many, and when."""

from __future__ import annotations

from django.conf import settings
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
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [models.Index(fields=["action", "-created_at"])]
        # Project-wide permissions with no model of their own (no app may add a model for them).
        permissions = [("manage_cache", "Can invalidate and warm the cache")]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} x{self.count}"
