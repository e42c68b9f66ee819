"""Who is asking, from where, under which request id: one context per request.

The middleware sets it first thing; audit entries and log lines read it, so a log line,
an audit entry and the `X-Request-ID` header of one request all carry the same id.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

# What a trusted proxy may hand us as a request id: nginx's $request_id is 32 hex
# digits; anything else (spaces, newlines for log injection, 10 kB) is replaced.
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


@dataclass
class RequestContext:
    request_id: str
    client_ip: str | None
    # Audit entries written during this request: the admin's catch-all records only when
    # the service it called recorded nothing (exactly one entry per change).
    audit_entries: int = 0


_current: ContextVar[RequestContext | None] = ContextVar("vpnadmin_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


@contextmanager
def activate(request_id: str | None = None, client_ip: str | None = None) -> Iterator[RequestContext]:
    """Carry a request id outside a request: a queue job of the request that queued it,
    or one management command run, so its log lines and audit entries share one id."""
    context = RequestContext(request_id=request_id or uuid.uuid4().hex, client_ip=client_ip)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def client_ip(request: HttpRequest) -> str:
    """The client's address: the peer, or with BEHIND_PROXY the address our proxy saw.

    The proxy appends the peer it saw to X-Forwarded-For, so only the right-most entry
    is trustworthy; everything left of it is whatever the client sent (a forged header
    must not change who is locked out or audited).
    """
    remote = request.META.get("REMOTE_ADDR", "") or ""
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        entries = [item.strip() for item in forwarded.split(",") if item.strip()]
        if entries:
            return entries[-1]
    return remote


def _request_id(request: HttpRequest) -> str:
    if settings.BEHIND_PROXY:
        offered = request.META.get("HTTP_X_REQUEST_ID", "")
        if _ACCEPTED_ID.match(offered):
            return offered
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Give the request an id and an address for its whole life; answer with the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        context = RequestContext(request_id=_request_id(request), client_ip=client_ip(request) or None)
        request.request_id = context.request_id  # type: ignore[attr-defined]  # read by templates and views
        # Kept until the response is closed (request_finished), not only until this
        # middleware returns: Django logs 4xx/5xx responses after the middleware chain.
        _current.set(context)
        response = self.get_response(request)
        response["X-Request-ID"] = context.request_id
        return response


def _forget(**kwargs: object) -> None:
    _current.set(None)


request_finished.connect(_forget, dispatch_uid="vpnadmin_request_context_forget")


class RequestIdLogFilter(logging.Filter):
    """Add `request_id` to every log record ("-" outside a request: commands, workers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.request_id = context.request_id if context else "-"
        return True
