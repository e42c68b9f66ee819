from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class VpnadminConfig(AppConfig):
    default = True
    name = "vpnadmin"
    verbose_name = "vpnadmin"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from vpnadmin import health, queue, roles, signals

        signals.connect()
        # The project's own checks; apps add theirs in their ready() (containers: engines,
        # perf: memory findings).
        health.register("database", health.probe_database, required=True, kind="database")
        health.register("cache", health.probe_cache, required=True, kind="cache")
        # A queue worker's heartbeat (vpnadmin.queue): without one, batches, stats and applies
        # wait, but pages still answer.
        health.register("worker", queue.worker_probe, required=False, kind="queue", ttl=2.0)
        # Permissions added by later migrations join the shipped roles on the next migrate.
        post_migrate.connect(roles.sync_after_migrate, sender=self)


class AuditedAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with a site that audits every add, change and delete."""

    default = False
    default_site = "vpnadmin.admin_site.AuditedAdminSite"
