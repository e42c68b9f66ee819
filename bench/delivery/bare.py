"""The baseline of the subscription row: Django, no middleware, one view returning the
exact bytes `/sub/<token>/` answers (read once from BENCH_BODY_FILE), same gunicorn."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only-not-a-secret",
        ALLOWED_HOSTS=["127.0.0.1"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
    )

from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

BODY = Path(os.environ["BENCH_BODY_FILE"]).read_bytes()


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse(BODY, content_type="text/plain; charset=utf-8")


urlpatterns = [path("", bare)]
application = get_wsgi_application()
