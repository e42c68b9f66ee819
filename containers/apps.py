from __future__ import annotations

from django.apps import AppConfig


class ContainersConfig(AppConfig):
    name = "containers"
    verbose_name = "Containers"

    def ready(self) -> None:
        from containers import health

        health.register()
