"""The memory profiler's store in the admin: read-only, the profiler writes it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin

from perf.models import MemoryFinding, MemoryProcess


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False


@admin.register(MemoryProcess)
class MemoryProcessAdmin(ReadOnlyAdmin):
    list_display = ["pid", "host", "role", "label", "started_at", "last_seen_at", "ended_at"]
    list_filter = ["role", "host"]
    search_fields = ["=pid", "host"]


@admin.register(MemoryFinding)
class MemoryFindingAdmin(ReadOnlyAdmin):
    list_display = ["severity", "title", "process", "opened_at", "updated_at", "closed_at"]
    list_filter = ["severity", ("closed_at", admin.EmptyFieldListFilter)]
    list_select_related = ["process"]
