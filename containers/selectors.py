"""Reads about Docker engines and the servers on them."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class EngineEndpoint:
    name: str
    base_url: str


def engine_endpoints() -> list[EngineEndpoint]:
    """Every Docker engine the app is configured to control."""
    return [EngineEndpoint(name="local", base_url=settings.DOCKER_HOST)]
