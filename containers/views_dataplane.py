"""Data-plane pages: a server's users and apply state, a user's live usage, the fleet counts.

Thin: reads come from containers.dataplane (one cache read per refresh), the one write
(apply now) is the same servers_mark_dirty every users write calls.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from containers.dataplane import fleet_dataplane, server_dataplane
from containers.models import VpnServer
from containers.sync import servers_mark_dirty
from vpnadmin.http import AuthedHttpRequest, render_page_or_partial, wants_partial


def _get_server(server_id: int) -> VpnServer:
    return get_object_or_404(VpnServer.objects.select_related("host"), pk=server_id)


@require_GET
@vary_on_headers("HX-Request")
@permission_required("containers.view_vpnserver", raise_exception=True)
def server_detail(request: AuthedHttpRequest, server_id: int) -> HttpResponse:
    panel = server_dataplane(server_id)
    if panel is None:
        raise Http404
    if wants_partial(request):
        # The polled panel: one cache read, no query while nothing changed.
        return render(request, "containers/server_detail.html#dataplane", {"panel": panel})
    context = {"server": _get_server(server_id), "panel": panel}
    return render_page_or_partial(request, "containers/server_detail.html", context, "dataplane")


@require_POST
@permission_required("containers.change_vpnserver", raise_exception=True)
def server_apply(request: AuthedHttpRequest, server_id: int) -> HttpResponse:
    server = _get_server(server_id)
    servers_mark_dirty(server_ids=[server.pk])
    messages.success(request, f"An apply of {server.name} is queued.")
    return redirect("containers:server_detail", server_id=server.pk)


@require_GET
@vary_on_headers("HX-Request")
@permission_required("containers.view_vpnserver", raise_exception=True)
def dataplane_summary(request: AuthedHttpRequest) -> HttpResponse:
    return render(request, "containers/_dataplane_summary.html", {"fleet": fleet_dataplane()})


@require_GET
@vary_on_headers("HX-Request")
@permission_required("users.view_vpnuser", raise_exception=True)
def user_usage(request: AuthedHttpRequest, user_id: int) -> HttpResponse:
    from users.models import VpnUser

    user = get_object_or_404(
        VpnUser.objects.select_related("server").only(
            "pk",
            "protocol",
            "used_traffic",
            "data_limit",
            "last_online_at",
            "previous_period_traffic",
            "traffic_reset_at",
            "wg_address",
            "ss_port",
            "server__name",
            "server__apply_state",
            "server__applied_at",
            "server__public_host",
            "server__public_port",
            "server__port",
        ),
        pk=user_id,
    )
    return render(request, "containers/_user_usage.html", {"vpn_user": user})
