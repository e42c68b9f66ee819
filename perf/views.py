"""Health, and later the cache and memory pages."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from perf.health import overall_status, run_component_checks


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every required part answers, 503 naming the ones that do not."""
    checks = run_component_checks()
    status = overall_status(checks)
    body = {
        "status": status,
        "failing": [check.name for check in checks if not check.ok],
        "checks": {check.name: {**asdict(check), "state": check.state} for check in checks},
    }
    return JsonResponse(body, status=503 if status == "down" else 200)


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """The Performance section: where to look for cache and memory figures."""
    return render(request, "perf/index.html")
