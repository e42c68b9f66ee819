from __future__ import annotations

from django.apps import AppConfig


class VpnadminConfig(AppConfig):
    name = "vpnadmin"
    verbose_name = "vpnadmin"
