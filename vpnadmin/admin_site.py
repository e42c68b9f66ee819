"""The admin site: every add, change and delete through it leaves exactly one audit entry.

Each ModelAdmin registered here (by any app, now or later) is extended with
`AuditedAdminMixin`. When the admin's save or delete calls a service that records its
own entry, the mixin records nothing more; otherwise it records one entry with the
object's id and, for a single-object edit, the changed fields before and after (secret
fields masked). Auth objects (users, groups) go through the same path.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models
from django.http import HttpRequest

from vpnadmin.audit import audit_changes, audit_entries_in_request, audit_record
from vpnadmin.http import request_actor
from vpnadmin.models import MAX_AUDITED_IDS

_MARK = "_vpnadmin_audit_mark"
_CHANGES = "_vpnadmin_audit_changes"


def _label(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}.{model._meta.object_name}"


def _sorted_if_objects(value: Any) -> Any:
    if isinstance(value, list | tuple) and value and all(isinstance(item, models.Model) for item in value):
        return sorted(str(item.pk) for item in value)
    return value


class AuditedAdminMixin:
    """Mixed in front of every ModelAdmin class by AuditedAdminSite.register."""

    model: type[models.Model]

    def save_model(self, request: HttpRequest, obj: models.Model, form: Any, change: bool) -> None:
        setattr(request, _MARK, audit_entries_in_request())
        before = {name: _sorted_if_objects(form.initial.get(name)) for name in form.changed_data} if change else {}
        super().save_model(request, obj, form, change)  # type: ignore[misc]  # a mixin: the ModelAdmin comes after it in the MRO
        after = {name: form.cleaned_data.get(name) for name in form.changed_data}
        setattr(request, _CHANGES, audit_changes(before, after))

    def _record_save(self, request: HttpRequest, obj: models.Model, verb: str, message: Any) -> None:
        mark = getattr(request, _MARK, None)
        changes = getattr(request, _CHANGES, {})
        for name in (_MARK, _CHANGES):
            if hasattr(request, name):
                delattr(request, name)
        if mark is not None and audit_entries_in_request() > mark:
            return  # the service that saved it recorded the entry
        audit_record(
            actor=request_actor(request),
            action=f"admin_{verb}",
            target=_label(type(obj)),
            count=1,
            object_ids=[str(obj.pk)],
            detail={"object": str(obj)[:200], "message": message if isinstance(message, list | str) else ""},
            changes=changes,
        )

    def log_addition(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        result = super().log_addition(request, obj, message)  # type: ignore[misc]  # a mixin: the ModelAdmin comes after it in the MRO
        self._record_save(request, obj, "add", message)
        return result

    def log_change(self, request: HttpRequest, obj: models.Model, message: Any) -> Any:
        result = super().log_change(request, obj, message)  # type: ignore[misc]  # a mixin: the ModelAdmin comes after it in the MRO
        self._record_save(request, obj, "change", message)
        return result

    def delete_model(self, request: HttpRequest, obj: models.Model) -> None:
        mark = audit_entries_in_request()
        pk, text = obj.pk, str(obj)[:200]
        super().delete_model(request, obj)  # type: ignore[misc]  # a mixin: the ModelAdmin comes after it in the MRO
        if audit_entries_in_request() == mark:
            audit_record(
                actor=request_actor(request),
                action="admin_delete",
                target=_label(type(obj)),
                count=1,
                object_ids=[str(pk)],
                detail={"object": text},
            )

    def delete_queryset(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        mark = audit_entries_in_request()
        ids = [str(pk) for pk in queryset.values_list("pk", flat=True)[: MAX_AUDITED_IDS + 1]]
        count = len(ids) if len(ids) <= MAX_AUDITED_IDS else queryset.count()
        super().delete_queryset(request, queryset)  # type: ignore[misc]  # a mixin: the ModelAdmin comes after it in the MRO
        if audit_entries_in_request() == mark:
            audit_record(
                actor=request_actor(request),
                action="admin_delete",
                target=_label(queryset.model),
                count=count,
                object_ids=ids,
            )


class AuditedAdminSite(admin.AdminSite):
    site_header = "vpnadmin administration"
    site_title = "vpnadmin"

    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        base = admin_class or admin.ModelAdmin
        if not issubclass(base, AuditedAdminMixin):
            base = type(f"Audited{base.__name__}", (AuditedAdminMixin, base), {"__module__": base.__module__})
        super().register(model_or_iterable, base, **options)
