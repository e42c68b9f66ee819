from __future__ import annotations

from django.apps import AppConfig


class PerfConfig(AppConfig):
    name = "perf"
    verbose_name = "Performance"

    def ready(self) -> None:
        from perf.health import probe_memory
        from vpnadmin import health

        # A critical leak degrades the service; the workers still answer.
        health.register("memory", probe_memory, required=False)
