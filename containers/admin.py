"""Admin for hosts, servers and jobs; batch actions call the same services as the pages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from containers import services
from containers.forms import DockerHostForm
from containers.models import BatchAction, BatchJob, BatchJobResult, DockerHost, VpnServer
from vpnadmin.http import request_actor


@admin.register(DockerHost)
class DockerHostAdmin(admin.ModelAdmin):
    list_display = ["name", "base_url", "enabled", "reachable", "engine_version", "max_concurrent", "last_checked_at"]
    list_filter = ["enabled", "reachable"]
    search_fields = ["name", "base_url"]
    # Add and change go through the hosts page's form (the engine address policy, host
    # networking only when the host is marked for it) and its services (audit entries).
    form = DockerHostForm
    status_fields = ["reachable", "last_error", "engine_version", "last_checked_at"]
    actions = ["check_hosts", "disable_hosts", "enable_hosts"]

    def get_readonly_fields(self, request: HttpRequest, obj: DockerHost | None = None) -> list[str]:
        if obj is None:
            return self.status_fields
        # The engine address of a host that has servers stays: its containers live there.
        return ["base_url", "tls_ca_cert", "tls_client_cert", "tls_client_key", *self.status_fields]

    def save_model(self, request: HttpRequest, obj: DockerHost, form: Any, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data if name in form.cleaned_data}
        if change:
            services.hosts_update(actor=request_actor(request), host=obj, fields=fields)
            return
        names = [name for name in DockerHostForm.Meta.fields if name in form.cleaned_data]
        created = services.hosts_create(
            actor=request_actor(request), **{name: form.cleaned_data[name] for name in names}
        )
        obj.pk, obj._state.adding = created.pk, False

    def delete_model(self, request: HttpRequest, obj: DockerHost) -> None:
        try:
            services.hosts_delete(actor=request_actor(request), host=obj)
        except ValueError as exc:
            request._vpnadmin_refused = str(exc)  # type: ignore[attr-defined]  # read by response_delete

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        refused = []
        for host in queryset:
            try:
                services.hosts_delete(actor=request_actor(request), host=host)
            except ValueError as exc:
                refused.append(str(exc))
        if refused:
            self.message_user(request, " ".join(refused)[:500], messages.ERROR)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: int) -> HttpResponse:
        return _refused_or(request, self, obj_id) or super().response_delete(request, obj_display, obj_id)

    @admin.action(description="Check that the selected hosts answer", permissions=["change"])
    def check_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        errors = services.hosts_check(hosts=queryset)
        self.message_user(request, f"{queryset.count() - len(errors)} reachable, {len(errors)} unreachable.")

    @admin.action(description="Disable the selected hosts", permissions=["change"])
    def disable_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        count = services.hosts_set_enabled(hosts=queryset, enabled=False, actor=request_actor(request))
        self.message_user(request, f"{count} hosts disabled.")

    @admin.action(description="Enable the selected hosts", permissions=["change"])
    def enable_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        count = services.hosts_set_enabled(hosts=queryset, enabled=True, actor=request_actor(request))
        self.message_user(request, f"{count} hosts enabled.")


def _refused_or(request: HttpRequest, modeladmin: admin.ModelAdmin, obj_id: int) -> HttpResponse | None:
    """After a refused delete: the reason and the object's page, not Django's "deleted successfully"."""
    refused = getattr(request, "_vpnadmin_refused", None)
    if refused is None:
        return None
    modeladmin.message_user(request, refused, messages.ERROR)
    opts = modeladmin.model._meta
    return HttpResponseRedirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj_id]))


def _batch(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[VpnServer], action: str) -> None:
    outcome = services.servers_run_batch(action=action, servers=queryset, actor=request_actor(request))
    if outcome.job is not None:
        modeladmin.message_user(
            request, f"{action}: {outcome.job.total} servers, running in the background as job #{outcome.job.pk}."
        )
        return
    failures = "; ".join(f"{r.server_name}: {r.message}" for r in outcome.results if not r.ok)[:500]
    level = messages.WARNING if outcome.failed else messages.SUCCESS
    modeladmin.message_user(request, outcome.summary() + (f" ({failures})" if failures else ""), level)


@admin.register(VpnServer)
class VpnServerAdmin(admin.ModelAdmin):
    list_display = ["name", "host", "protocol", "port", "image", "desired_state", "observed_state", "last_error"]
    list_filter = ["host", "protocol", "observed_state", "desired_state"]
    search_fields = ["name", "image", "container_id"]
    list_select_related = ["host"]
    # Read-only here: servers are added and edited on /containers/ (the form, the creation
    # policy, the services and their audit entries). The environment holds secrets and
    # is never shown. Deleting removes the container first, through servers_delete.
    exclude = ["environment", "wg_private_key"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: VpnServer | None = None) -> bool:
        # None: the changelist and its actions (they check "change" themselves); an object: view only.
        return obj is None and super().has_change_permission(request)

    def delete_model(self, request: HttpRequest, obj: VpnServer) -> None:
        outcome = services.servers_delete(servers=VpnServer.objects.filter(pk=obj.pk), actor=request_actor(request))
        failures = [f"{r.server_name}: {r.message}" for r in outcome.results if not r.ok]
        if failures:
            request._vpnadmin_refused = (  # type: ignore[attr-defined]  # read by response_delete
                f"Server {obj.name} was kept: its container could not be removed ({'; '.join(failures)[:300]})."
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        outcome = services.servers_delete(servers=queryset, actor=request_actor(request))
        if outcome.failed:
            failures = "; ".join(f"{r.server_name}: {r.message}" for r in outcome.results if not r.ok)
            self.message_user(request, f"Kept, container not removed: {failures}"[:500], messages.ERROR)

    def response_delete(self, request: HttpRequest, obj_display: str, obj_id: int) -> HttpResponse:
        return _refused_or(request, self, obj_id) or super().response_delete(request, obj_display, obj_id)

    actions = [
        "start_servers",
        "stop_servers",
        "restart_servers",
        "create_containers",
        "remove_containers",
        "delete_servers",
    ]

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        # The stock delete would leave containers running with no record: remove them first.
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Start the selected servers", permissions=["change"])
    def start_servers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        _batch(self, request, queryset, BatchAction.START)

    @admin.action(description="Stop the selected servers", permissions=["change"])
    def stop_servers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        _batch(self, request, queryset, BatchAction.STOP)

    @admin.action(description="Restart the selected servers", permissions=["change"])
    def restart_servers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        _batch(self, request, queryset, BatchAction.RESTART)

    @admin.action(description="Create containers for the selected servers", permissions=["add"])
    def create_containers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        _batch(self, request, queryset, BatchAction.CREATE)

    @admin.action(description="Remove the containers of the selected servers", permissions=["delete"])
    def remove_containers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        _batch(self, request, queryset, BatchAction.REMOVE)

    @admin.action(description="Remove the containers and delete the selected servers", permissions=["delete"])
    def delete_servers(self, request: HttpRequest, queryset: QuerySet[VpnServer]) -> None:
        outcome = services.servers_delete(servers=queryset, actor=request_actor(request))
        deleted = len(outcome.results) - outcome.failed
        failures = "; ".join(f"{r.server_name}: {r.message}" for r in outcome.results if not r.ok)[:500]
        level = messages.WARNING if outcome.failed else messages.SUCCESS
        self.message_user(request, f"{deleted} servers deleted" + (f"; kept ({failures})" if failures else "."), level)


class BatchJobResultInline(admin.TabularInline):
    model = BatchJobResult
    fields = ("server_name", "host_name", "outcome", "message")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    list_display = ["pk", "action", "status", "total", "done", "unchanged", "failed", "created_by", "created_at"]
    list_filter = ["action", "status"]
    readonly_fields = [f.name for f in BatchJob._meta.fields]
    inlines = [BatchJobResultInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
