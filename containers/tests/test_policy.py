"""What the app refuses: hostile engine addresses and dangerous container options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.test import Client

from conftest import TEST_IMAGE
from containers.models import DockerHost, VpnServer
from containers.policy import create_policy_errors, engine_url_errors
from containers.services import servers_create, servers_create_batch

from .conftest import SECOND_SOCKET

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    paths = {}
    for name in ("tls_ca_cert", "tls_client_cert", "tls_client_key"):
        path = tmp_path / f"{name}.pem"
        path.write_text("-----BEGIN TEST-----\n")
        paths[name] = str(path)
    return paths


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("tcp://203.0.113.7:2375", "Plain tcp:// is refused"),
        ("unix:///tmp/evil.sock", "Only the configured local socket may be used"),
        ("unix:///var/run/../run/docker.sock", "Only the configured local socket may be used"),
        ("ssh://root@127.0.0.1", "a loopback address"),
        ("ssh://root@localhost", "is not a remote host"),
        ("ssh://root@[::1]", "a loopback address"),
        ("ssh://root@169.254.169.254", "a link-local address"),
        ("ssh://root@[fe80::1]", "a link-local address"),
        ("ssh://root@0.0.0.0", "the unspecified address"),
        ("ssh://root@metadata.google.internal", "is not a remote host"),
        ("http://203.0.113.7:2375", "Unsupported engine address"),
        ("npipe:////./pipe/docker_engine", "Unsupported engine address"),
        ("ssh://root:hunter2@203.0.113.7", "Do not put a password in the address"),
        ("ssh://-oProxyCommand=sh@203.0.113.7", "The ssh user may hold"),
        ("ssh://root@-oProxyCommand=sh", "is not a host name or an IP address"),
        ("tcp://203.0.113.7:notaport", "is not a valid address"),
    ],
)
def test_the_hosts_page_refuses_a_hostile_engine_address_and_adds_nothing(
    owner_client: Client, base_url: str, message: str
) -> None:
    response = owner_client.post(
        "/containers/hosts/", {"name": "evil", "base_url": base_url, "network_mode": "bridge", "max_concurrent": 10}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert DockerHost.objects.filter(name="evil").count() == 0
    assert list(DockerHost.objects.values_list("name", flat=True)) == ["local"]  # the default only


def test_a_tls_engine_on_a_loopback_address_is_refused_even_with_certificates(tls_files: dict[str, str]) -> None:
    errors = engine_url_errors("tcp://127.0.0.1:2376", **tls_files)
    assert errors == ["127.0.0.1 resolves to 127.0.0.1, a loopback address: refused for a remote engine."]


def test_a_tls_engine_with_client_certificates_is_accepted_and_never_shows_its_key(
    owner_client: Client, tls_files: dict[str, str]
) -> None:
    response = owner_client.post(
        "/containers/hosts/",
        {
            "name": "remote-1",
            "base_url": "tcp://203.0.113.7:2376",
            "network_mode": "bridge",
            "max_concurrent": 8,
            **tls_files,
        },
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "Host remote-1 added." in page
    assert "TLS, client certificate" in page
    assert tls_files["tls_client_key"] not in page
    host = DockerHost.objects.get(name="remote-1")
    assert host.reachable is False  # a documentation address: nothing answers


def test_tls_certificate_paths_must_be_files_on_this_server() -> None:
    errors = engine_url_errors(
        "tcp://203.0.113.7:2376", tls_ca_cert="/nope/ca.pem", tls_client_cert="ca.pem", tls_client_key="/nope/k"
    )
    assert "The CA certificate path must be an absolute path to a readable file on this server." in errors
    assert "The client certificate path must be an absolute path to a readable file on this server." in errors


def test_the_second_engines_socket_is_accepted_as_a_host(owner_client: Client) -> None:
    response = owner_client.post(
        "/containers/hosts/", {"name": "second", "base_url": SECOND_SOCKET, "network_mode": "none", "max_concurrent": 4}
    )
    assert response.status_code == 302
    assert DockerHost.objects.get(name="second").reachable is True


def test_host_networking_is_refused_for_a_host(owner_client: Client) -> None:
    response = owner_client.post(
        "/containers/hosts/", {"name": "second", "base_url": SECOND_SOCKET, "network_mode": "host", "max_concurrent": 4}
    )
    assert response.status_code == 400
    assert "Host networking" in response.content.decode()


def test_adding_a_host_needs_the_add_permission(make_operator: Callable[..., object]) -> None:
    client = Client()
    client.force_login(make_operator("containers.view_dockerhost"))
    assert client.get("/containers/hosts/").status_code == 200
    response = client.post("/containers/hosts/", {"name": "second", "base_url": SECOND_SOCKET})
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"privileged": True}, "privileged: privileged mode is refused."),
        ({"network_mode": "host"}, "network_mode: the host network is refused."),
        ({"pid_mode": "host"}, "pid_mode: the host pid namespace is refused."),
        ({"ipc_mode": "host"}, "ipc_mode: the host ipc namespace is refused."),
        ({"cap_add": ["NET_ADMIN"]}, "cap_add: added capabilities are refused."),
        ({"binds": ["/:/host"]}, "binds: binding / (the host's root) is refused."),
        ({"binds": ["/var/run/docker.sock:/var/run/docker.sock"]}, "exposes the Docker socket"),
        ({"binds": ["/var/run:/hostrun:ro"]}, "exposes the Docker socket"),
        ({"binds": ["/srv/../:/host"]}, "may not contain '..'"),
        ({"devices": ["/dev/sda:/dev/sda"]}, "devices: host devices are refused."),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt"),
        ({"entrypoint": "/bin/sh"}, "entrypoint: not an allowed option"),
        ({"mem_limit": True}, "mem_limit: wrong type"),
    ],
)
def test_the_creation_policy_refuses_each_dangerous_option(options: dict[str, object], message: str) -> None:
    errors = create_policy_errors(options)
    assert any(message in error for error in errors), errors


def test_the_creation_policy_allows_plain_limits() -> None:
    assert (
        create_policy_errors(
            {"mem_limit": "64m", "pids_limit": 50, "read_only": True, "binds": ["/srv/vpn:/etc/vpn:ro"]}
        )
        == []
    )


def test_the_service_refuses_to_record_a_server_with_dangerous_options(local_host: DockerHost) -> None:
    with pytest.raises(ValueError, match="privileged mode is refused"):
        servers_create(
            actor=None,
            host=local_host,
            name="vpn-bad",
            protocol="vless",
            image=TEST_IMAGE,
            port=1,
            options={"privileged": True},
        )
    assert not VpnServer.objects.exists()


@pytest.mark.docker
def test_a_create_batch_refuses_a_server_whose_stored_options_break_the_policy(
    local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    # Rows written around the forms (the admin, a script) still meet the policy at creation.
    good = make_server(local_host)
    bad = make_server(local_host, options={"cap_add": ["NET_ADMIN"], "binds": ["/:/host"]})
    results = {r.server_name: r for r in servers_create_batch(servers=VpnServer.objects.all()).results}
    assert results[good.name].outcome == "done"
    assert results[bad.name].outcome == "failed"
    assert "added capabilities are refused" in results[bad.name].message
    assert "binding / (the host's root) is refused" in results[bad.name].message
    bad.refresh_from_db()
    assert bad.container_id == ""
