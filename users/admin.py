"""The Django admin for VPN users, built for a million rows.

A slim list (no credentials, status computed in SQL), the same indexed search as the
pages, a paginator that estimates instead of counting a big table, and bulk actions
that call the services: one statement over the selection, and with "select all" the
selection is the changelist's filtered queryset, never a list of ids.
"""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.functional import cached_property

from users import services
from users.bulk import BULK_ACTIONS, BulkAction, bulk_step
from users.credentials import CREDENTIAL_COLUMNS
from users.models import Status, VpnUser, status_expression, status_q
from users.schema import FORM_FIELDS
from users.selectors import UNINDEXED_SORTABLE, CountInfo, SearchRefused, apply_search, count_users, unindexed_order
from users.subscriptions.admin_actions import SUBSCRIPTION_ADMIN_ACTIONS
from users.validation import CLEANERS

# From this offset on, a page first finds its 50 keys on the index alone.
DEEP_OFFSET = 1_000


class EstimatingPaginator(Paginator):
    """The stock paginator runs count(*) per page view; this one never counts a big table."""

    text_search = False  # set by VpnUserAdmin.get_paginator when the changelist is searched

    @property
    def queryset(self) -> QuerySet[VpnUser]:
        # The admin pages a queryset; the stubs only promise "something sliceable".
        return cast("QuerySet[VpnUser]", self.object_list)

    @cached_property
    def count_info(self) -> CountInfo:
        queryset = self.queryset
        return count_users(queryset, filtered=bool(queryset.query.where))

    @cached_property
    def count(self) -> int:
        return self.count_info.value

    def page(self, number: Any) -> Page:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        queryset = self.queryset
        if self.text_search and self.count_info.exact:
            # A rare search term must not walk the whole primary key index (see
            # selectors._keyset_rows): sort the few matches after the indexes found them.
            ordering = [str(name).replace("pk", "id") for name in queryset.query.order_by]
            if ordering and all(name.lstrip("-") in UNINDEXED_SORTABLE for name in ordering):
                queryset = queryset.order_by(*[unindexed_order(name) for name in ordering])
        if bottom < DEEP_OFFSET:
            return Page(list(queryset[bottom : bottom + self.per_page]), number, self)
        # Deep pages skip rows on the index only, then read the rows they show (late row lookup).
        ids = list(queryset.values_list("pk", flat=True)[bottom : bottom + self.per_page])
        return Page(list(queryset.filter(pk__in=ids)), number, self)


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(Status.choices)

    def queryset(self, request: HttpRequest, queryset: QuerySet[VpnUser]) -> QuerySet[VpnUser]:
        value = self.value()
        if value is not None and value in Status.values:
            # The index-friendly form of the status, not a filter on the annotation.
            return queryset.filter(status_q(value, timezone.now()))
        return queryset


# What an operator types for one user: the same fields a new user's row may give.
EDITABLE = list(FORM_FIELDS)


class VpnUserAdminForm(forms.ModelForm):
    class Meta:
        model = VpnUser
        fields = EDITABLE

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("expire_at") and data.get("on_hold_days"):
            self.add_error("on_hold_days", "Set either an expiry date or days from first use, not both.")
        server, protocol = data.get("server"), data.get("protocol")
        if server and protocol and server.protocol != protocol:
            self.add_error(
                "server", f"Server {server.name!r} serves {server.protocol} users; this user uses {protocol}."
            )
        # The services' own checks, so a save never fails after the form said yes.
        for name, value in list(data.items()):
            if name in CLEANERS and name not in self.errors:
                try:
                    CLEANERS[name](value)
                except ValueError as exc:
                    self.add_error(name, f"{name.replace('_', ' ').capitalize()} {exc}.")
        return data


def _admin_action(action: BulkAction) -> Any:
    def run(modeladmin: VpnUserAdmin, request: HttpRequest, queryset: QuerySet[VpnUser]) -> HttpResponse | None:
        return modeladmin.run_bulk(request, queryset, action)

    run.__name__ = action.name
    label = action.label if action.asks_first else f"{action.label} selected users"
    return admin.action(description=label, permissions=[action.permission])(run)


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
    # The page's bulk actions (users.bulk), each an admin action of the same name.
    actions = [
        *(_admin_action(action) for action in BULK_ACTIONS.values()),
        *SUBSCRIPTION_ADMIN_ACTIONS,  # issue (CSV), rotate (CSV), revoke: users/subscriptions
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[VpnUser]:
        # The status column is computed by PostgreSQL with the page's rows (one query),
        # and the credential columns are never read for the list.
        return (
            super()
            .get_queryset(request)
            .defer(*CREDENTIAL_COLUMNS, "note")
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
        paginator = cast(EstimatingPaginator, super().get_paginator(request, queryset, per_page, *args, **kwargs))
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
        values["server_id"] = server.pk if server else None
        actor = request.user  # staff: the admin lets no one else in
        if change:
            values.pop("username", None)
            if obj.protocol == form.initial.get("protocol"):
                values.pop("protocol")  # same protocol: keep the credentials
            result = services.users_update_batch(actor=actor, changes={obj.pk: values})  # type: ignore[arg-type]
        else:
            values = {k: v for k, v in values.items() if k != "used_traffic" or v is not None}
            result = services.users_create_batch(actor=actor, rows=[values])  # type: ignore[arg-type]
            if result.ok:
                obj.pk = result.ids[0]
        if not result.ok:
            # Only a concurrent write can get here (the form ran the same checks).
            self.message_user(request, "; ".join(str(error) for error in result.errors), messages.ERROR)

    def run_bulk(self, request: HttpRequest, queryset: QuerySet[VpnUser], action: BulkAction) -> HttpResponse | None:
        """The page's bulk sequence (users.bulk.bulk_step) inside the admin's action protocol."""
        across = request.POST.get("select_across") == "1"
        label = "admin: all matching the filter" if across else "admin: selected"
        step = bulk_step(action, request.POST, queryset, actor=request.user, selection=label)  # type: ignore[arg-type]  # staff only
        if step.ask:
            context = {
                **self.admin_site.each_context(request),
                "title": step.question if action.question else f"Edit {step.count:,} VPN users",
                "step": step,
                "label": label,
                "opts": self.model._meta,
                "carried": [
                    (name, value)
                    for name, values in request.POST.lists()
                    if name in ("action", "select_across", "index", ACTION_CHECKBOX_NAME)
                    for value in values
                ],
            }
            status = 400 if step.form is not None and step.form.is_bound else 200
            return TemplateResponse(request, "admin/users/vpnuser/bulk_confirmation.html", context, status=status)
        if step.error:
            self.message_user(request, step.error, messages.ERROR)
        else:
            self.message_user(request, step.message, messages.SUCCESS)
        return None
