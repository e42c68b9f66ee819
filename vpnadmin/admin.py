from __future__ import annotations

from django.contrib import admin

from vpnadmin.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor_name", "action", "target", "count"]
    list_filter = ["action", "target"]
    search_fields = ["actor_name", "action"]
    date_hierarchy = "created_at"
    # The audit trail is read-only, even for superusers.
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request: object) -> bool:
        return False

    def has_change_permission(self, request: object, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: object, obj: object = None) -> bool:
        return False
