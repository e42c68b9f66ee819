"""The Performance section's index (health moved to vpnadmin.views)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The Performance section: where to look for cache and memory figures."""
    return render(request, "perf/index.html")
