"""VPN servers for users tests: rows in the database (no container), and which ones are dirty."""

from __future__ import annotations

from containers.models import ApplyState, DockerHost, VpnServer


def make_server(name: str, protocol: str = "vless", *, host: str = "test-host") -> VpnServer:
    docker_host, _ = DockerHost.objects.get_or_create(name=host, defaults={"base_url": "unix:///var/run/docker.sock"})
    port = 4433 + VpnServer.objects.filter(host=docker_host).count()
    return VpnServer.objects.create(
        host=docker_host, name=name, protocol=protocol, image="vpnadmin-test/busybox", port=port
    )


def settle_servers() -> None:
    """As if every server had just converged: nothing pending, nothing dirty."""
    VpnServer.objects.update(apply_state=ApplyState.APPLIED, dirty_at=None)


def dirty_servers() -> set[str]:
    """Names of the servers a users write has marked for an apply since `settle_servers`."""
    return set(
        VpnServer.objects.filter(dirty_at__isnull=False, apply_state=ApplyState.PENDING).values_list("name", flat=True)
    )
