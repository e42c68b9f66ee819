"""Admin for hosts, servers and jobs; batch actions call the same services as the pages."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from containers import services
from containers.models import BatchAction, BatchJob, BatchJobResult, DockerHost, VpnServer


@admin.register(DockerHost)
class DockerHostAdmin(admin.ModelAdmin):
    list_display = ["name", "base_url", "enabled", "reachable", "engine_version", "max_concurrent", "last_checked_at"]
    list_filter = ["enabled", "reachable"]
    search_fields = ["name", "base_url"]
    # Hosts are added through /containers/hosts/, where the address policy is enforced.
    readonly_fields = [
        "base_url",
        "tls_ca_cert",
        "tls_client_cert",
        "tls_client_key",
        "reachable",
        "last_error",
        "engine_version",
        "last_checked_at",
    ]
    actions = ["check_hosts", "disable_hosts", "enable_hosts"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Check that the selected hosts answer", permissions=["change"])
    def check_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        errors = services.hosts_check(hosts=queryset)
        self.message_user(request, f"{queryset.count() - len(errors)} reachable, {len(errors)} unreachable.")

    @admin.action(description="Disable the selected hosts", permissions=["change"])
    def disable_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        count = services.hosts_set_enabled(hosts=queryset, enabled=False, actor=request.user)
        self.message_user(request, f"{count} hosts disabled.")

    @admin.action(description="Enable the selected hosts", permissions=["change"])
    def enable_hosts(self, request: HttpRequest, queryset: QuerySet[DockerHost]) -> None:
        count = services.hosts_set_enabled(hosts=queryset, enabled=True, actor=request.user)
        self.message_user(request, f"{count} hosts enabled.")


def _batch(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[VpnServer], action: str) -> None:
    outcome = services.servers_run_batch(action=action, servers=queryset, actor=request.user)
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
    # Containers are made by the create action (which applies the creation policy); the
    # environment may hold secrets, so the admin never shows it.
    exclude = ["environment"]
    readonly_fields = ["container_id", "observed_state", "observed_at", "last_error", "options"]
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
        outcome = services.servers_delete(servers=queryset, actor=request.user)
        deleted = len(outcome.results) - outcome.failed
        failures = "; ".join(f"{r.server_name}: {r.message}" for r in outcome.results if not r.ok)[:500]
        level = messages.WARNING if outcome.failed else messages.SUCCESS
        self.message_user(request, f"{deleted} servers deleted" + (f"; kept ({failures})" if failures else "."), level)


class BatchJobResultInline(admin.TabularInline):
    model = BatchJobResult
    fields = ["server_name", "host_name", "outcome", "message"]
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
