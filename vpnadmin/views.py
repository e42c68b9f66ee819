"""Project-level pages: the dashboard."""

from __future__ import annotations

from django.http import HttpResponse
from django.views.decorators.http import require_GET

from perf.health import overall_status, run_component_checks
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial


@require_GET
def dashboard(request: AuthedHttpRequest) -> HttpResponse:
    checks = run_component_checks()
    context = {"checks": checks, "overall": overall_status(checks)}
    return render_page_or_partial(request, "vpnadmin/dashboard.html", context, "components")
