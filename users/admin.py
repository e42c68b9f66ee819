"""The Django admin for VPN users, built for a million rows.

A slim list (no credentials, status computed in SQL), the same indexed search as the
pages, a paginator that estimates instead of counting a big table, and bulk actions
that call the services: one statement over the selection, and with "select all" the
selection is the changelist's filtered queryset, never a list of ids.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property

from users import services
from users.models import Status, VpnUser, status_expression, status_q
from users.selectors import UNINDEXED_SORTABLE, CountInfo, SearchRefused, apply_search, count_users, unindexed_order
from users.validation import CLEANERS

# From this offset on, a page first finds its 50 keys on the index alone.
DEEP_OFFSET = 1_000


class EstimatingPaginator(Paginator):
    """The stock paginator runs count(*) per page view; this one never counts a big table."""

    text_search = False  # set by VpnUserAdmin.get_paginator when the changelist is searched

    @cached_property
    def count_info(self) -> CountInfo:
        queryset = self.object_list
        return count_users(queryset, filtered=bool(queryset.query.where))

    @cached_property
    def count(self) -> int:
        return self.count_info.value

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        queryset = self.object_list
        if self.text_search and self.count_info.exact:
            # A rare search term must not walk the whole primary key index (see
            # selectors._keyset_rows): sort the few matches after the indexes found them.
            ordering = [str(name).replace("pk", "id") for name in queryset.query.order_by]
            if ordering and all(name.lstrip("-") in UNINDEXED_SORTABLE for name in ordering):
                queryset = queryset.order_by(*[unindexed_order(name) for name in ordering])
        if bottom < DEEP_OFFSET:
            return self._get_page(list(queryset[bottom : bottom + self.per_page]), number, self)
        # Deep pages skip rows on the index only, then read the rows they show (late row lookup).
        ids = list(queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        return self._get_page(list(queryset.filter(pk__in=ids)), number, self)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> QuerySet[VpnUser]:
        if self.value() in Status.values:
            # The index-friendly form of the status, not a filter on the annotation.
            return queryset.filter(status_q(self.value(), timezone.now()))
        return queryset


EDITABLE = [
    "username",
    "email",
    "protocol",
    "is_active",
    "data_limit",
    "used_traffic",
    "reset_strategy",
    "expire_at",
    "on_hold_days",
    "server",
    "note",
]


class VpnUserAdminForm(forms.ModelForm):
    class Meta:
        model = VpnUser
        fields = EDITABLE

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("expire_at") and data.get("on_hold_days"):
            self.add_error("on_hold_days", "Set either an expiry date or days from first use, not both.")
        # The services' own checks, so a save never fails after the form said yes.
        for name, value in list(data.items()):
            if name in CLEANERS and name not in self.errors:
                try:
                    CLEANERS[name](value)
                except ValueError as exc:
                    self.add_error(name, f"{name.replace('_', ' ').capitalize()} {exc}.")
        return data


@admin.register(VpnUser)
class VpnUserAdmin(admin.ModelAdmin):
    form = VpnUserAdminForm
    fields = [*EDITABLE, "created_at", "updated_at", "last_online_at"]
    list_display = ["username", "email", "protocol", "status_badge", "used", "limit", "expire_at", "server"]
    list_filter = [StatusFilter, "protocol", "server"]
    list_select_related = ["server"]
    list_per_page = 50
    list_max_show_all = 200
    show_full_result_count = False  # the stock changelist counts the table a second time
    paginator = EstimatingPaginator
    search_fields = ["username"]  # the search itself is get_search_results below
    search_help_text = "3+ characters: inside usernames and e-mails, or words of the note; shorter: exact username."
    sortable_by = ["username", "used", "status_badge"]
    ordering = ["-id"]
    readonly_fields = ["created_at", "updated_at", "last_online_at"]
    actions = ["enable_users", "disable_users", "extend_30_days", "add_10_gb", "reset_traffic", "delete_users"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[VpnUser]:
        # The status column is computed by PostgreSQL with the page's rows (one query),
        # and the credential columns are never read for the list.
        return (
            super()
            .get_queryset(request)
            .defer("credential_uuid", "credential_password", "wg_private_key", "wg_public_key", "note")
            .annotate(status=status_expression(timezone.now()))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[VpnUser], search_term: str
    ) -> tuple[QuerySet[VpnUser], bool]:
        if not search_term.strip():
            return queryset, False
        try:
            searched, note, _ = apply_search(queryset, search_term)
        except SearchRefused as exc:
            self.message_user(request, str(exc), messages.WARNING)
            return queryset.none(), False
        if note:
            self.message_user(request, note, messages.INFO)
        return searched, False

    def get_paginator(self, request: HttpRequest, queryset: Any, per_page: int, *args: Any, **kwargs: Any) -> Any:
        paginator = super().get_paginator(request, queryset, per_page, *args, **kwargs)
        paginator.text_search = bool(request.GET.get("q", "").strip())
        return paginator

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        # The stock action collects every object in Python and logs each one.
        actions.pop("delete_selected", None)
        return actions

    def get_readonly_fields(self, request: HttpRequest, obj: VpnUser | None = None) -> list[str]:
        return [*self.readonly_fields, "username"] if obj else list(self.readonly_fields)

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: VpnUser) -> str:
        return Status(obj.status).label  # type: ignore[attr-defined]

    @admin.display(description="used", ordering="used_traffic")
    def used(self, obj: VpnUser) -> str:
        return filesizeformat(obj.used_traffic)

    @admin.display(description="limit")
    def limit(self, obj: VpnUser) -> str:
        return "unlimited" if obj.data_limit is None else filesizeformat(obj.data_limit)

    def save_model(self, request: HttpRequest, obj: VpnUser, form: forms.ModelForm, change: bool) -> None:
        """Through the services: credentials generated, one audit entry, cache invalidated."""
        values = {name: form.cleaned_data.get(name) for name in EDITABLE if name in form.cleaned_data}
        server = values.pop("server", None)
        values_for_update = {k: v for k, v in values.items() if k != "username"}
        values = {k: v for k, v in values.items() if k != "used_traffic" or v is not None}
        if change:
            if obj.protocol == form.initial.get("protocol"):
                values_for_update.pop("protocol")
            values_for_update["server_id"] = server.pk if server else None
            result = services.users_update_batch(actor=request.user, changes={obj.pk: values_for_update})
        else:
            result = services.users_create_batch(actor=request.user, rows=[values])
            if result.ok:
                obj.pk = result.ids[0]
                if server:
                    services.users_update_batch(actor=request.user, changes={obj.pk: {"server_id": server.pk}})
        if not result.ok:
            # Only a concurrent write can get here (the form ran the same checks).
            self.message_user(request, "; ".join(str(error) for error in result.errors), messages.ERROR)

    def _selection(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> str:
        return "admin: all matching the filter" if request.POST.get("select_across") == "1" else "admin: selected"

    @admin.action(description="Enable selected users", permissions=["change"])
    def enable_users(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> None:
        count = services.users_set_active(
            actor=request.user, users=queryset, active=True, selection=self._selection(request, queryset)
        )
        self.message_user(request, f"Enabled {count:,} users.", messages.SUCCESS)

    @admin.action(description="Disable selected users", permissions=["change"])
    def disable_users(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> None:
        count = services.users_set_active(
            actor=request.user, users=queryset, active=False, selection=self._selection(request, queryset)
        )
        self.message_user(request, f"Disabled {count:,} users.", messages.SUCCESS)

    @admin.action(description="Extend expiry by 30 days", permissions=["change"])
    def extend_30_days(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> None:
        count = services.users_extend_expiry(
            actor=request.user, users=queryset, days=30, selection=self._selection(request, queryset)
        )
        self.message_user(request, f"Extended the expiry of {count:,} users by 30 days.", messages.SUCCESS)

    @admin.action(description="Add 10 GB to the data limit", permissions=["change"])
    def add_10_gb(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> None:
        count = services.users_add_data(
            actor=request.user, users=queryset, amount=10 * 10**9, selection=self._selection(request, queryset)
        )
        self.message_user(request, f"Added 10 GB to the limit of {count:,} users.", messages.SUCCESS)

    @admin.action(description="Reset used traffic", permissions=["change"])
    def reset_traffic(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> None:
        count = services.users_reset_traffic(
            actor=request.user, users=queryset, selection=self._selection(request, queryset)
        )
        self.message_user(request, f"Reset the traffic of {count:,} users.", messages.SUCCESS)

    @admin.action(description="Delete selected users", permissions=["delete"])
    def delete_users(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Delete VPN users?",
                "count": queryset.order_by().count(),
                "opts": self.model._meta,
                "post_items": [
                    (name, value)
                    for name, values in request.POST.lists()
                    if name not in ("csrfmiddlewaretoken", "post")
                    for value in values
                ],
            }
            return TemplateResponse(request, "admin/users/vpnuser/delete_bulk_confirmation.html", context)
        count = services.users_delete(actor=request.user, users=queryset, selection=self._selection(request, queryset))
        self.message_user(request, f"Deleted {count:,} users.", messages.SUCCESS)
        return None
