"""Permissions by section: every page of a URL namespace needs the section's permission.

Views check the permission of what they show or change; a section's own pages (the
performance pages have no model of their own) also need the section permission, and a
page added later to the section is covered without remembering a decorator.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from vpnadmin.errors import first_line

logger = logging.getLogger(__name__)

SECTION_PERMISSIONS = {
    "perf": "vpnadmin.view_performance",
}


class SectionPermissionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or not getattr(view_func, "login_required", True):
            return None  # public views (health, metrics) carry their own rules
        for namespace in match.namespaces[:1]:
            permission = SECTION_PERMISSIONS.get(namespace)
            user = getattr(request, "user", None)
            if permission and user is not None and user.is_authenticated and not user.has_perm(permission):
                raise PermissionDenied(f"You need the permission {permission}.")
        return None


class DatabaseUnavailableMiddleware:
    """A database that does not answer is a branded 503, not a 500 with a traceback."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        from django.db import InterfaceError, OperationalError
        from django.template.response import TemplateResponse

        if isinstance(exception, OperationalError | InterfaceError):
            logger.warning("database unavailable: %s", first_line(exception))
            response = TemplateResponse(request, "503.html", status=503)
            response["Retry-After"] = "5"
            return response.render()
        return None
