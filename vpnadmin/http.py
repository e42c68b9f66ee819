"""The typed request and the view helpers every app shares."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
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


def request_actor(request: HttpRequest) -> User | None:
    """The signed-in user a write is recorded against; None for the anonymous (audit says "system")."""
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def wants_partial(request: HttpRequest) -> bool:
    """An htmx request that swaps part of the page (a boosted one wants the whole page)."""
    htmx = getattr(request, "htmx", None)
    return htmx is not None and bool(htmx) and not htmx.boosted


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


def bounded_stream(lines: Iterable[str], *, seconds: float, what: str) -> Iterator[str]:
    """Stream `lines` for at most `seconds`, then end with one line saying it was cut.

    A streamed download holds a web thread (and a database cursor) while it runs; a
    filter matching millions of rows, or a client reading slowly, must not hold it for
    longer than this. The last line starts with "#" so a CSV reader sees it as a comment.
    """
    deadline = time.monotonic() + seconds
    for line in lines:
        yield line
        if time.monotonic() > deadline:
            yield f"# {what} stopped after {seconds:g} s; narrow the filter and download the rest separately\r\n"
            return
