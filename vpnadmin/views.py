"""Project-level pages: the dashboard, health, the audit trail, one's sessions, error pages."""

from __future__ import annotations

import hmac
import sys
from dataclasses import asdict

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required, permission_required
from django.contrib.auth.views import redirect_to_login
from django.contrib.sessions.models import Session
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from vpnadmin import selectors
from vpnadmin.forms import AuditFilterForm
from vpnadmin.health import overall_status, run_component_checks
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial
from vpnadmin.models import UserSession
from vpnadmin.sessions import sessions_end_for_user


@require_GET
@permission_required("vpnadmin.view_dashboard", raise_exception=True)
def dashboard(request: AuthedHttpRequest) -> HttpResponse:
    checks = run_component_checks()
    context = {"checks": checks, "overall": overall_status(checks)}
    return render_page_or_partial(request, "vpnadmin/dashboard.html", context, "components")


def _may_see_health_details(request: HttpRequest) -> bool:
    token = settings.HEALTH_TOKEN
    offered = request.headers.get("Authorization", "")
    if token and offered:
        return hmac.compare_digest(offered.encode(), f"Bearer {token}".encode())
    if settings.SESSION_COOKIE_NAME not in request.COOKIES:
        return False  # anonymous: no session lookup, so a database outage stays a JSON 503
    try:
        user = request.user  # set by AuthenticationMiddleware
        return bool(user.is_authenticated and user.is_staff)
    except DatabaseError:
        return False


@login_not_required
@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when every required part answers, else 503; details only for staff or a token.

    Anonymous callers (load balancers, scanners) learn the status and nothing else: no
    versions, host names, error text or process ids.
    """
    checks = run_component_checks()
    status = overall_status(checks)
    body: dict[str, object] = {"status": status}
    if _may_see_health_details(request):
        body["failing"] = [check.name for check in checks if not check.ok]
        body["checks"] = {check.name: {**asdict(check), "state": check.state} for check in checks}
    return JsonResponse(body, status=503 if status == "down" else 200)


@require_GET
@permission_required("vpnadmin.view_auditentry", raise_exception=True)
def audit(request: AuthedHttpRequest) -> HttpResponse:
    """The audit trail, newest first, filtered, paged by key (`?before=<id>`)."""
    form = AuditFilterForm(request.GET or None)
    filters = form.cleaned_data if form.is_valid() else {}
    page = selectors.audit_page(
        actor=filters.get("actor") or "",
        action=filters.get("action") or "",
        target=filters.get("target") or "",
        object_id=filters.get("object_id") or "",
        since=filters.get("since"),
        until=filters.get("until"),
        before_id=filters.get("before"),
    )
    query = request.GET.copy()
    query.pop("before", None)
    context = {"form": form, "page": page, "query": query.urlencode()}
    return render_page_or_partial(request, "vpnadmin/audit.html", context, "rows")


@require_GET
def account_sessions(request: AuthedHttpRequest) -> HttpResponse:
    """One's own logins, with "log out everywhere"."""
    live = Session.objects.filter(expire_date__gt=timezone.now()).values("session_key")
    sessions = UserSession.objects.filter(user=request.user, session_key__in=live).order_by("-created_at")[:100]
    return render(
        request,
        "vpnadmin/sessions.html",
        {
            "sessions": sessions,
            "current_key": request.session.session_key,
            "idle_hours": round(settings.SESSION_IDLE_TIMEOUT / 3600, 1),
        },
    )


@require_POST
def logout_everywhere(request: AuthedHttpRequest) -> HttpResponse:
    """End every session of the caller, this one included."""
    user = request.user
    sessions_end_for_user(actor=user, user=user, reason="self")
    request.session.flush()
    return redirect_to_login("/")


@require_POST
@permission_required("vpnadmin.manage_sessions", raise_exception=True)
def staff_logout_everywhere(request: AuthedHttpRequest, pk: int) -> HttpResponse:
    """An administrator ends every session of one staff user."""
    target = get_object_or_404(get_user_model(), pk=pk)
    if not target.is_staff:
        raise PermissionDenied("Only staff users' sessions are ended here.")
    ended = sessions_end_for_user(actor=request.user, user=target, reason="administrator")
    messages.success(request, f"Ended {ended} session(s) of {target.get_username()}.")
    return redirect("admin:auth_user_change", target.pk)


# --- branded error pages (never a traceback or a setting) --------------------------------


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    """The 500 page; a database that does not answer is a 503 (it will come back).

    Called while the exception is being handled, so it can tell the two apart even when
    a middleware (the session lookup) raised, where no view's handler could catch it.
    The pages render without the user or messages: the database may be what failed.
    """
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        response = render(request, "503.html", status=503)
        response["Retry-After"] = "5"
        return response
    return render(request, "500.html", status=500)


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    user = getattr(request, "user", None)
    if user is not None and not user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    return render(request, "403.html", status=403)
