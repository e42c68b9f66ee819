"""The fast path of `/sub/`: a VPN app's warm poll answered before the session stack.

An app polling its subscription carries no cookie and needs no session, user, CSRF
check, messages or htmx: placed right after SecurityMiddleware (so its headers still
apply), this answers machine formats from the cache (rate limit included) and hands
everything else — HTML pages, .conf files, unknown formats, cache misses and unknown
tokens (which then get the same 404 as any unknown URL) — to the full stack and the view.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from users.subscriptions.views import SUB_PREFIX, answer_warm


class SubscriptionFastPathMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(SUB_PREFIX):
            try:
                # Resolved here so /metrics counts these under the view's name, as any other.
                request.resolver_match = resolve(request.path_info)
            except Resolver404:
                return self.get_response(request)
            response = answer_warm(request)
            if response is not None:
                return response
        return self.get_response(request)
