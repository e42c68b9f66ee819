"""vpnadmin's settings plus one baseline URL: the subscription page without its QR codes."""

from __future__ import annotations

from vpnadmin.settings import *  # noqa: F403

ROOT_URLCONF = "bench.delivery.urls"
