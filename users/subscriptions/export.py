"""Subscription URLs as operators hand them out: the absolute URL, and a CSV of new ones."""

from __future__ import annotations

import csv
import io

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from users.csv_io import escape_cell
from users.subscriptions.services import IssuedToken


def subscription_url(request: HttpRequest, token: str) -> str:
    """The URL clients fetch: SUBSCRIPTION_BASE_URL when the panel is not what they reach."""
    path = f"/sub/{token}/"
    base = settings.SUBSCRIPTION_BASE_URL.rstrip("/")
    return f"{base}{path}" if base else request.build_absolute_uri(path)


def issued_csv(request: HttpRequest, issued: list[IssuedToken]) -> HttpResponse:
    """The new URLs as a CSV download (shared with the admin actions); never cached."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["id", "username", "subscription_url"])
    for item in issued:
        writer.writerow([item.user_id, escape_cell(item.username), subscription_url(request, item.token)])
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = HttpResponse(buffer.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="subscription-urls-{stamp}.csv"'
    response["Cache-Control"] = "no-store, private"
    return response
