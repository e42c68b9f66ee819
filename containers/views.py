"""Pages for servers, hosts, batch jobs and the live stats panel. Thin: services do the work."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from containers import selectors, services
from containers.forms import BatchForm, DockerHostForm, VpnServerForm
from containers.models import BatchAction, DockerHost
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial
from vpnadmin.queue import worker_status

# The permission each batch action needs.
ACTION_PERMISSIONS = {
    BatchAction.START: "containers.change_vpnserver",
    BatchAction.STOP: "containers.change_vpnserver",
    BatchAction.RESTART: "containers.change_vpnserver",
    BatchAction.CREATE: "containers.add_vpnserver",
    BatchAction.REMOVE: "containers.delete_vpnserver",
}


def _servers_context(request: AuthedHttpRequest, **extra: Any) -> dict[str, Any]:
    hosts = selectors.hosts_with_servers()
    status = selectors.live_host_status(hosts)
    for host in hosts:
        host.live = status.get(host.pk)  # type: ignore[attr-defined]
    return {
        "hosts": hosts,
        "actions": BatchAction.choices,
        "jobs": selectors.recent_jobs(),
        "panel": selectors.stats_panel(),
        "default_engine": settings.DOCKER_HOST,
        **extra,
    }


@require_GET
@permission_required("containers.view_vpnserver", raise_exception=True)
def server_list(request: AuthedHttpRequest) -> HttpResponse:
    return render_page_or_partial(request, "containers/servers.html", _servers_context(request), "servers")


@require_POST
@permission_required("containers.view_vpnserver", raise_exception=True)
def server_batch(request: AuthedHttpRequest) -> HttpResponse:
    form = BatchForm(request.POST)
    if not form.is_valid():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
        context = _servers_context(request, batch_errors=errors)
        return render_page_or_partial(request, "containers/servers.html", context, "servers", status=400)
    action = form.cleaned_data["action"]
    if not request.user.has_perm(ACTION_PERMISSIONS[action]):
        raise PermissionDenied
    servers = selectors.servers_for_ids(form.cleaned_data["server"])
    outcome = services.servers_run_batch(action=action, servers=servers, actor=request.user)
    worker = worker_status() if outcome.job else None
    context = _servers_context(request, outcome=outcome, job=outcome.job, worker=worker)
    return render_page_or_partial(request, "containers/servers.html", context, "servers")


@require_GET
@permission_required("containers.view_vpnserver", raise_exception=True)
def job_detail(request: AuthedHttpRequest, job_id: int) -> HttpResponse:
    # Reads only: a job whose worker died is put back in the queue by the stalled-job
    # recovery (vpnadmin.queue), never by opening this page.
    job = selectors.job_with_results(job_id)
    if job is None:
        return render(request, "containers/job.html", {"job": None}, status=404)
    worker = worker_status() if job.is_active else None
    return render_page_or_partial(request, "containers/job.html", {"job": job, "worker": worker}, "progress")


@require_http_methods(["GET", "POST"])
@permission_required("containers.add_vpnserver", raise_exception=True)
def server_new(request: AuthedHttpRequest) -> HttpResponse:
    form = VpnServerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        server = services.servers_create(
            actor=request.user,
            host=data["host"],
            name=data["name"],
            protocol=data["protocol"],
            image=data["image"],
            port=data["port"],
            command=data["command"],
            environment=data["environment_text"],
            options=data["options_text"],
        )
        if data["create_now"]:
            result = services.servers_create_batch(servers=[server], actor=request.user).results[0]
            level = messages.SUCCESS if result.ok else messages.ERROR
            messages.add_message(
                request, level, f"Server {server.name} added; container: {result.outcome} {result.message}".strip()
            )
        else:
            messages.success(request, f"Server {server.name} added.")
        return redirect("containers:servers")
    status = 400 if request.method == "POST" else 200
    return render(request, "containers/server_form.html", {"form": form}, status=status)


@require_POST
@permission_required("containers.change_vpnserver", raise_exception=True)
def server_sync(request: AuthedHttpRequest) -> HttpResponse:
    reports = services.servers_sync(actor=request.user)
    for report in reports:
        if not report.reachable:
            messages.error(request, f"{report.host}: unreachable ({report.error})")
            continue
        text = f"{report.host}: {report.changed} changed, {report.vanished} vanished, {report.adopted} linked"
        if report.unknown:
            text += f"; labelled containers of no known server: {', '.join(report.unknown[:10])}"
        messages.success(request, text)
    return redirect("containers:servers")


@require_GET
@permission_required("containers.view_vpnserver", raise_exception=True)
def stats_panel(request: AuthedHttpRequest) -> HttpResponse:
    return render_page_or_partial(request, "containers/stats.html", {"panel": selectors.stats_panel()}, "panel")


# --- hosts ---------------------------------------------------------------------------------


def _hosts_context(form: DockerHostForm) -> dict[str, Any]:
    hosts = list(DockerHost.objects.order_by("-enabled", "name"))
    status = selectors.live_host_status(hosts)
    for host in hosts:
        host.live = status.get(host.pk)  # type: ignore[attr-defined]
    return {"hosts": hosts, "form": form}


@require_http_methods(["GET", "POST"])
@permission_required("containers.view_dockerhost", raise_exception=True)
def host_list(request: AuthedHttpRequest) -> HttpResponse:
    if request.method == "POST":
        if not request.user.has_perm("containers.add_dockerhost"):
            raise PermissionDenied
        form = DockerHostForm(request.POST)
        if form.is_valid():
            host = services.hosts_create(actor=request.user, **form.cleaned_data)
            services.hosts_check(hosts=[host])
            messages.success(request, f"Host {host.name} added.")
            return redirect("containers:hosts")
        return render(request, "containers/hosts.html", _hosts_context(form), status=400)
    return render(request, "containers/hosts.html", _hosts_context(DockerHostForm()))


def _get_host_for_change(request: AuthedHttpRequest, host_id: int) -> DockerHost:
    if not request.user.has_perm("containers.change_dockerhost"):
        raise PermissionDenied
    return get_object_or_404(DockerHost, pk=host_id)


@require_POST
def host_check(request: AuthedHttpRequest, host_id: int) -> HttpResponse:
    host = _get_host_for_change(request, host_id)
    errors = services.hosts_check(hosts=[host])
    if errors:
        messages.error(request, f"{host.name}: unreachable ({errors[host.pk]})")
    else:
        messages.success(request, f"{host.name}: reachable, Docker {host.engine_version}")
    return redirect("containers:hosts")


@require_POST
def host_set_enabled(request: AuthedHttpRequest, host_id: int, enabled: bool) -> HttpResponse:
    host = _get_host_for_change(request, host_id)
    services.hosts_set_enabled(hosts=DockerHost.objects.filter(pk=host.pk), enabled=enabled, actor=request.user)
    messages.success(request, f"{host.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("containers:hosts")


@require_POST
@permission_required("containers.add_dockerhost", raise_exception=True)
def host_add_local(request: AuthedHttpRequest) -> HttpResponse:
    """The engine configured in settings (DOCKER_HOST) as the first host: a button, not a side effect of a page."""
    host = services.hosts_ensure_default(actor=request.user)
    if host is None:
        messages.info(request, "There are hosts already.")
    else:
        messages.success(request, f"Host {host.name} added ({host.base_url}).")
    return redirect("containers:servers")
