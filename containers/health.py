"""The Docker engines' part of the component checks (registered in ContainersConfig.ready)."""

from __future__ import annotations

from django.conf import settings

from containers.engine import EngineAddress, describe_engine_error, ping_address
from containers.selectors import engine_endpoints
from vpnadmin import health


def _ping(address: EngineAddress) -> health.Probe:
    def probe() -> str:
        return "Docker " + ping_address(address, timeout=settings.HEALTH_CHECK_TIMEOUT)

    return probe


def engine_checks() -> list[health.Check]:
    """One check per enabled engine; its answer is kept a few seconds (one ping per period)."""
    return [
        health.Check(
            name=f"docker:{endpoint.name}",
            probe=_ping(endpoint.address),
            # An engine being down degrades the service; it does not make the app unhealthy.
            required=False,
            kind="docker",
            ttl=settings.HEALTH_ENGINE_CACHE_SECONDS,
            key=endpoint.address.base_url,
            describe_error=describe_engine_error,
        )
        for endpoint in engine_endpoints()
    ]


def register() -> None:
    health.register_group("docker", engine_checks, required=False)
