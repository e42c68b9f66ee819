"""The memory report page, its controls, and the Prometheus endpoint."""

from __future__ import annotations

import hmac
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from perf.memory import selectors, services
from perf.memory.charts import process_chart
from perf.memory.forms import TracemallocWindowForm
from perf.memory.metrics import multiprocess_mode, render_latest
from perf.memory.profiler import MB, ProfilerConfig
from vpnadmin.errors import first_line
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial, wants_partial
from vpnadmin.tokens import metrics_token

VIEW_PERMISSION = "perf.view_memorysnapshot"
CONTROL_PERMISSION = "perf.control_profiler"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _require(request: AuthedHttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied(f"You need the permission {permission}.")


def _report_context(request: AuthedHttpRequest, **extra: Any) -> dict[str, Any]:
    config = ProfilerConfig.from_settings()
    context: dict[str, Any] = {
        "config": config,
        "can_control": request.user.has_perm(CONTROL_PERMISSION),
        "window_form": TracemallocWindowForm(initial={"minutes": config.tracemalloc_window_minutes, "frames": 1}),
        **extra,
    }
    try:
        stale = services.stale_before(config)
        reports = selectors.memory_report(config=config, stale_before=stale)
        context.update(
            control=selectors.profiler_control(),
            findings=selectors.open_findings(stale_before=stale),
            usage=selectors.store_usage(),
            reports=[
                {
                    "report": report,
                    "chart": process_chart(report.snapshots, title=f"pid {report.process.pid} memory over time"),
                }
                for report in reports
            ],
            store_error=None,
        )
    except DatabaseError as exc:
        context.update(reports=[], findings=[], control=None, usage=None, store_error=first_line(exc, limit=300))
    return context


@require_GET
def memory_page(request: AuthedHttpRequest) -> HttpResponse:
    """Per process memory over time, open findings, allocation sites, growing types."""
    _require(request, VIEW_PERMISSION)
    return render_page_or_partial(request, "perf/memory.html", _report_context(request), "panel")


def _answer(request: AuthedHttpRequest, **extra: Any) -> HttpResponse:
    """After an action: the refreshed panel for htmx, a redirect for a plain form."""
    if wants_partial(request):
        return render_page_or_partial(request, "perf/memory.html", _report_context(request, **extra), "panel")
    for text in extra.get("notices", []):
        messages.info(request, text)
    for text in extra.get("errors", []):
        messages.error(request, text)
    return redirect("perf:memory")


@require_POST
def tracemalloc_window(request: AuthedHttpRequest) -> HttpResponse:
    """Open or close the tracemalloc window every worker polls."""
    _require(request, CONTROL_PERMISSION)
    form = TracemallocWindowForm(request.POST)
    if not form.is_valid():
        errors = [f"{field}: {' '.join(str(error) for error in errs)}" for field, errs in form.errors.items()]
        response = _answer(request, errors=errors)
        if wants_partial(request):
            response.status_code = 400
        return response
    if form.cleaned_data["action"] == "open":
        minutes = form.cleaned_data["minutes"] or ProfilerConfig.from_settings().tracemalloc_window_minutes
        frames = form.cleaned_data["frames"] or 1
        services.memory_tracemalloc_window_open(actor=request.user, minutes=minutes, frames=frames)
        notice = (
            f"tracemalloc window open for {minutes} min ({frames} frame{'s' if frames != 1 else ''}); "
            "workers start tracing at their next poll."
        )
    else:
        services.memory_tracemalloc_window_close(actor=request.user)
        notice = "tracemalloc window closed; workers stop tracing at their next poll."
    return _answer(request, notices=[notice])


@require_POST
def garbage_collect(request: AuthedHttpRequest) -> HttpResponse:
    """Collect in the worker serving this request now, and in every sampled worker at its next poll."""
    _require(request, CONTROL_PERMISSION)
    result = services.memory_garbage_collect(actor=request.user)
    notice = (
        f"Worker pid {result['pid']}: gc.collect() found {result['unreachable']:,} unreachable objects; "
        f"tracked objects {result['objects_before']:,} → {result['objects_after']:,} "
        f"({result['objects_freed']:,} freed), RSS {result['rss_before'] / MB:,.1f} → "
        f"{result['rss_after'] / MB:,.1f} MB, {result['ms']} ms. Other workers collect at their next poll."
    )
    return _answer(request, notices=[notice], gc_result=result)


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format: a bearer token when METRICS_TOKEN is set, a staff login otherwise."""
    token = metrics_token()  # re-read from METRICS_TOKEN_FILE when it changes (rotation without restart)
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
            response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
            response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    elif not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    elif not request.user.is_staff:
        raise PermissionDenied("Metrics are for staff members.")
    response = HttpResponse(render_latest(), content_type=PROMETHEUS_CONTENT_TYPE)
    response.headers["X-Metrics-Mode"] = "multiprocess" if multiprocess_mode() else "single-process"
    return response
