"""Subscription actions of the VPN users admin: the same services as the users list's bulk bar.

Issuing returns a CSV download (the tokens exist only in it); rotating and revoking ask
first, Django's `delete_selected` way (a confirmation page that posts again with post=yes).
Each is one transaction and one audit entry; "select all" acts on the filtered changelist.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from users.models import VpnUser
from users.subscriptions.export import issued_csv
from users.subscriptions.services import subscriptions_issue, subscriptions_revoke
from vpnadmin.http import request_actor

CONFIRMATION = "admin/users/vpnuser/subscriptions_confirmation.html"


def _label(queryset: QuerySet[VpnUser], request: HttpRequest) -> str:
    return "all matching the admin filter" if request.POST.get("select_across") == "1" else "selected in the admin"


def _confirm(modeladmin: Any, request: HttpRequest, question: str, count: int, button: str) -> TemplateResponse:
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Are you sure?",
        "opts": modeladmin.model._meta,
        "question": question,
        "count": count,
        "button": button,
        "carried": [
            (name, value)
            for name, values in request.POST.lists()
            if name in ("action", "select_across", "index", ACTION_CHECKBOX_NAME)
            for value in values
        ],
    }
    return TemplateResponse(request, CONFIRMATION, context)


def _issue(modeladmin: Any, request: HttpRequest, queryset: QuerySet[VpnUser], *, only_missing: bool) -> Any:
    candidates = queryset.filter(subscription__isnull=True) if only_missing else queryset
    count = candidates.order_by().count()
    limit = settings.SUBSCRIPTION_EXPORT_MAX_ROWS
    if count > limit:
        modeladmin.message_user(
            request,
            f"{count:,} users is more than the {limit:,} one download may hold: narrow the filter.",
            messages.ERROR,
        )
        return None
    if not only_missing and request.POST.get("post") != "yes":
        question = (
            f"Issue new subscription URLs for {count:,} users? Their current URLs stop working at once; "
            "the new ones are in the CSV download only."
        )
        return _confirm(modeladmin, request, question, count, "Yes, issue and download")
    issued = subscriptions_issue(
        actor=request_actor(request), users=queryset, only_missing=only_missing, selection=_label(queryset, request)
    )
    return issued_csv(request, issued)


@admin.action(description="Issue subscription URLs for those without one (CSV)", permissions=["change"])
def issue_subscription_urls(modeladmin: Any, request: HttpRequest, queryset: QuerySet[VpnUser]) -> Any:
    return _issue(modeladmin, request, queryset, only_missing=True)


@admin.action(description="Issue new subscription URLs, current ones stop (CSV)", permissions=["change"])
def rotate_subscription_urls(modeladmin: Any, request: HttpRequest, queryset: QuerySet[VpnUser]) -> Any:
    return _issue(modeladmin, request, queryset, only_missing=False)


@admin.action(description="Revoke subscription URLs", permissions=["change"])
def revoke_subscription_urls(modeladmin: Any, request: HttpRequest, queryset: QuerySet[VpnUser]) -> Any:
    if request.POST.get("post") != "yes":
        count = queryset.filter(subscription__isnull=False).order_by().count()
        question = f"Revoke the subscription URLs of {count:,} users? Their apps stop receiving settings."
        return _confirm(modeladmin, request, question, count, "Yes, revoke")
    count = subscriptions_revoke(actor=request_actor(request), users=queryset, selection=_label(queryset, request))
    modeladmin.message_user(request, f"Revoked the subscription URLs of {count:,} users.", messages.SUCCESS)
    return None


SUBSCRIPTION_ADMIN_ACTIONS = (issue_subscription_urls, rotate_subscription_urls, revoke_subscription_urls)
