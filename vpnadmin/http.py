"""The typed request and the view helpers every app shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

if TYPE_CHECKING:
    from django.contrib.auth.models import User
    from django_htmx.middleware import HtmxDetails


class AuthedHttpRequest(HttpRequest):
    """What a view behind LoginRequiredMiddleware and HtmxMiddleware receives."""

    user: User
    htmx: HtmxDetails


def wants_partial(request: HttpRequest) -> bool:
    """An htmx request that swaps part of the page (a boosted one wants the whole page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.boosted


def render_page_or_partial(
    request: HttpRequest,
    template: str,
    context: dict[str, Any],
    partial: str,
    *,
    status: int = 200,
) -> HttpResponse:
    """Render the whole page, or only its named partial for an htmx swap.

    `partial` names a `{% partialdef %}` in `template`, so one template holds both.
    """
    name = f"{template}#{partial}" if wants_partial(request) else template
    response = render(request, name, context, status=status)
    # Caches must not serve the partial to a full-page request or the other way round.
    response.headers["Vary"] = "HX-Request"
    return response
