"""What the app refuses: hostile engine addresses and dangerous container options."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from conftest import TEST_IMAGE, docker_client_for
from containers.models import DockerHost, VpnServer
from containers.policy import create_policy_errors, engine_url_errors, image_errors
from containers.services import servers_create, servers_create_batch, servers_start_batch
from vpnadmin.models import AuditEntry

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
    before = set(DockerHost.objects.values_list("name", flat=True))
    response = owner_client.post(
        "/containers/hosts/", {"name": "evil", "base_url": base_url, "network_mode": "bridge", "max_concurrent": 10}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert DockerHost.objects.filter(name="evil").count() == 0
    assert set(DockerHost.objects.values_list("name", flat=True)) <= before | {"local"}  # at most the default


def test_a_tls_engine_on_a_loopback_address_is_refused_even_with_certificates(tls_files: dict[str, str]) -> None:
    errors = engine_url_errors(
        "tcp://127.0.0.1:2376",
        tls_ca_cert=tls_files["tls_ca_cert"],
        tls_client_cert=tls_files["tls_client_cert"],
        tls_client_key=tls_files["tls_client_key"],
    )
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


def test_adding_a_host_needs_the_add_permission(make_operator: Callable[..., User]) -> None:
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
        ({"userns_mode": "host"}, "userns_mode: the host user namespace is refused."),
        ({"cap_add": ["NET_ADMIN"]}, "cap_add: added capabilities are refused (NET_ADMIN"),
        ({"devices": ["/dev/sda:/dev/sda"]}, "devices: host device /dev/sda is refused"),
        ({"sysctls": {"kernel.shm_rmid_forced": "1"}}, "sysctls: kernel.shm_rmid_forced refused"),
        ({"mounts": [{"source": "/", "target": "/host"}]}, "mounts: mounts are refused"),
        ({"security_opt": ["seccomp=unconfined"]}, "security_opt"),
        ({"entrypoint": "/bin/sh"}, "entrypoint: not an allowed option"),
        ({"mem_limit": True}, "mem_limit: wrong type"),
    ],
)
def test_the_creation_policy_refuses_each_dangerous_option(options: dict[str, object], message: str) -> None:
    errors = create_policy_errors(options, protocol="vless")
    assert any(message in error for error in errors), errors


@pytest.fixture
def data_root(tmp_path: Path, settings: Any) -> Path:
    """The one directory the operator configured for server data, with a symlink out of it."""
    root = tmp_path / "server-data"
    (root / "vpn-1").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (tmp_path / "outside").mkdir()
    settings.CONTAINERS_BIND_ROOTS = [str(root)]
    return root


@pytest.mark.parametrize(
    ("bind", "reason"),
    [
        ("//:/host", "bind // (resolves to /) is outside the directories for server data"),
        ("//var/run/docker.sock:/var/run/docker.sock", "is outside the directories for server data"),
        ("/proc/1/root:/host", "/proc/1/root"),
        ("/proc/self/root:/host", "/proc/self/root"),
        ("/etc:/etc/host", "bind /etc is outside the directories for server data"),
        ("/var/lib/docker:/docker", "bind /var/lib/docker is outside the directories for server data"),
        ("{root}/../outside:/data", "resolves to {tmp}/outside) is outside"),
        ("{root}/vpn-1" + "/.." * 12 + "/etc:/data", "(resolves to /etc) is outside"),
        ("{root}/./vpn-1//..//../outside:/data", "is outside the directories for server data"),
        ("{root}/escape:/data", "(resolves to /etc) is outside"),
        ("{root}/escape/shadow:/data:ro", "(resolves to /etc/shadow) is outside"),
        ("{root}-evil:/data", "is outside the directories for server data"),
        ("vpn-data:/data", "must be an absolute path"),
        ("{root}/vpn-1:data", "bind target 'data' must be an absolute path"),
        ("{root}/vpn-1:/data:rshared", "the mode must be ro or rw"),
    ],
)
def test_the_creation_policy_refuses_each_bind_trick(data_root: Path, bind: str, reason: str) -> None:
    tmp = str(data_root.parent)
    errors = create_policy_errors({"binds": [bind.format(root=data_root)]}, protocol="vless")
    assert len(errors) == 1, errors
    assert reason.format(tmp=tmp) in errors[0], errors


def test_binds_under_the_data_directory_pass_in_any_spelling(data_root: Path) -> None:
    binds = [f"{data_root}/vpn-1:/etc/vpn:ro", f"/{data_root}//vpn-1/./:/data", f"{data_root}/new-dir:/data:rw"]
    assert create_policy_errors({"binds": binds}, protocol="vless") == []


def test_with_no_data_directory_configured_every_bind_is_refused(settings: Any) -> None:
    settings.CONTAINERS_BIND_ROOTS = []
    errors = create_policy_errors({"binds": ["/srv/vpn:/etc/vpn:ro"]})
    assert errors == [
        "binds: bind /srv/vpn: no directory is configured for server data (CONTAINERS_BIND_ROOTS): binds are refused."
    ]


def test_a_remote_engines_binds_are_checked_by_their_written_form(data_root: Path) -> None:
    # Its file system is not here: symlinks cannot be followed, but `..` and `//` still are.
    remote = DockerHost(name="far", base_url="ssh://vpn@vpn-1.example.net", network_mode="none")
    escape = create_policy_errors({"binds": [f"{data_root}/vpn-1/../../outside:/x"]}, host=remote)
    assert "is outside the directories for server data" in escape[0]
    assert create_policy_errors({"binds": [f"{data_root}//vpn-1:/x"]}, host=remote) == []


def test_a_wireguard_server_gets_exactly_the_capability_and_device_its_kind_declares() -> None:
    needs = {"cap_add": ["NET_ADMIN"], "devices": ["/dev/net/tun"]}
    assert create_policy_errors(needs, protocol="wireguard") == []
    assert create_policy_errors({"devices": ["/dev/net/tun:/dev/net/tun:rwm"]}, protocol="wireguard") == []
    more = create_policy_errors({"cap_add": ["NET_ADMIN", "SYS_ADMIN"]}, protocol="wireguard")
    assert more == ["cap_add: added capabilities are refused (SYS_ADMIN; this server kind may add: NET_ADMIN)."]
    disk = create_policy_errors({"devices": ["/dev/net/tun:/dev/sda"]}, protocol="wireguard")
    assert "host device /dev/net/tun is refused" in disk[0]
    # The same options on a kind that declares nothing.
    vless = create_policy_errors(needs, protocol="vless")
    assert any("added capabilities are refused (NET_ADMIN" in e for e in vless)
    assert any("host device /dev/net/tun is refused" in e for e in vless)


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("vpnadmin-test/busybox:latest", True),
        ("docker.io/vpnadmin-test/busybox", True),
        ("vpnadmin-test/v2ray@sha256:" + "a" * 64, True),
        ("busybox", False),
        ("docker.io/library/alpine:3", False),
        ("vpnadmin-testx/busybox", False),
        ("evil.example.net/vpnadmin-test/busybox", False),
        ("vpnadmin-test/../busybox", False),
        ("VPNADMIN-TEST/busybox", False),
    ],
)
def test_images_come_only_from_the_configured_prefixes(image: str, allowed: bool) -> None:
    errors = image_errors(image)
    assert (errors == []) is allowed, errors


def test_an_image_prefix_may_name_one_repository_or_one_tag(settings: Any) -> None:
    settings.CONTAINERS_IMAGE_PREFIXES = ["ghcr.io/xtls/xray-core", "docker.io/library/alpine:3.20"]
    assert image_errors("ghcr.io/xtls/xray-core:1.8.24") == []
    assert image_errors("ghcr.io/xtls/xray-core-evil:1") != []
    assert image_errors("alpine:3.20") == []
    assert image_errors("alpine:3.19") != []


def test_the_server_page_refuses_an_image_outside_the_allow_list_and_records_nothing(
    owner_client: Client, local_host: DockerHost
) -> None:
    response = owner_client.post(
        "/containers/new/",
        {"host": local_host.pk, "name": "vpn-x", "protocol": "vless", "image": "busybox:latest", "port": 4431},
    )
    assert response.status_code == 400
    assert "is not from an allowed source (CONTAINERS_IMAGE_PREFIXES" in response.content.decode()
    assert not VpnServer.objects.exists()


def test_the_server_page_refuses_a_bind_outside_the_data_directory(
    owner_client: Client, local_host: DockerHost, data_root: Path
) -> None:
    response = owner_client.post(
        "/containers/new/",
        {
            "host": local_host.pk,
            "name": "vpn-x",
            "protocol": "vless",
            "image": TEST_IMAGE,
            "port": 4431,
            "options_text": '{"binds": ["//:/host"]}',
        },
    )
    assert response.status_code == 400
    assert "bind // (resolves to /) is outside the directories for server data" in response.content.decode()
    assert not VpnServer.objects.exists()


def test_a_server_on_a_host_network_host_not_marked_for_it_is_refused(local_host: DockerHost) -> None:
    # A row written around the host form (a script, an old admin): the service still refuses.
    DockerHost.objects.filter(pk=local_host.pk).update(network_mode="host")
    local_host.refresh_from_db()
    with pytest.raises(ValueError, match="host networking is refused on a host not marked for it"):
        servers_create(actor=None, host=local_host, name="vpn-h", protocol="vless", image=TEST_IMAGE, port=4432)
    assert not VpnServer.objects.exists()
    local_host.allow_host_network = True
    local_host.save()
    servers_create(actor=None, host=local_host, name="vpn-h", protocol="vless", image=TEST_IMAGE, port=4432)
    assert VpnServer.objects.filter(name="vpn-h").exists()


def test_the_hosts_page_allows_host_networking_only_on_a_host_marked_for_it(owner_client: Client) -> None:
    form = {"name": "second", "base_url": SECOND_SOCKET, "network_mode": "host", "max_concurrent": 4}
    refused = owner_client.post("/containers/hosts/", form)
    assert refused.status_code == 400
    assert "Host networking is refused unless this host is marked" in refused.content.decode()
    assert not DockerHost.objects.filter(name="second").exists()
    accepted = owner_client.post("/containers/hosts/", {**form, "allow_host_network": "on"})
    assert accepted.status_code == 302
    assert DockerHost.objects.get(name="second").network_mode == "host"


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
    foreign = make_server(local_host, image="busybox:latest")
    results = {r.server_name: r for r in servers_create_batch(servers=VpnServer.objects.all()).results}
    assert results[good.name].outcome == "done"
    assert results[bad.name].outcome == "failed"
    assert "added capabilities are refused" in results[bad.name].message
    assert "bind / is outside the directories for server data" in results[bad.name].message
    assert results[foreign.name].outcome == "failed"
    assert "is not from an allowed source" in results[foreign.name].message
    bad.refresh_from_db()
    assert bad.container_id == ""


# --- the Django admin goes through the same forms and services -----------------------


def _admin_host_form(**overrides: object) -> dict[str, object]:
    return {"name": "second", "base_url": SECOND_SOCKET, "network_mode": "none", "max_concurrent": 4, **overrides}


def test_the_admin_refuses_a_host_with_host_networking_it_was_not_marked_for(owner_client: Client) -> None:
    response = owner_client.post("/admin/containers/dockerhost/add/", _admin_host_form(network_mode="host"))
    assert response.status_code == 200  # the form again, with the reason
    assert "Host networking is refused unless this host is marked" in response.content.decode()
    assert not DockerHost.objects.filter(name="second").exists()


def test_the_admin_refuses_a_hostile_engine_address_like_the_page(owner_client: Client) -> None:
    response = owner_client.post("/admin/containers/dockerhost/add/", _admin_host_form(base_url="unix:///tmp/x.sock"))
    assert "Only the configured local socket may be used" in response.content.decode()
    assert not DockerHost.objects.filter(name="second").exists()


def test_the_admin_adds_and_changes_a_host_through_the_services_with_one_audit_entry_each(
    owner_client: Client,
) -> None:
    response = owner_client.post("/admin/containers/dockerhost/add/", _admin_host_form())
    assert response.status_code == 302
    host = DockerHost.objects.get(name="second")
    assert AuditEntry.objects.filter(action="hosts_create", object_ids=[host.pk]).count() == 1
    change = f"/admin/containers/dockerhost/{host.pk}/change/"
    refused = owner_client.post(change, _admin_host_form(network_mode="container:abc"))
    assert "Sharing another container&#x27;s network is refused." in refused.content.decode()
    host.refresh_from_db()
    assert host.network_mode == "none"
    # The engine address is fixed once a host exists: a posted one is ignored.
    owner_client.post(change, _admin_host_form(max_concurrent=7, base_url="unix:///tmp/evil.sock"))
    host.refresh_from_db()
    assert (host.max_concurrent, host.base_url) == (7, SECOND_SOCKET)
    entry = AuditEntry.objects.get(action="hosts_update")
    assert entry.detail["fields"] == ["max_concurrent"]


def test_the_admin_refuses_to_delete_a_host_that_still_has_servers(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    make_server(local_host)
    owner_client.post(f"/admin/containers/dockerhost/{local_host.pk}/delete/", {"post": "yes"})
    assert DockerHost.objects.filter(pk=local_host.pk).exists()


def test_the_admin_shows_a_server_read_only_and_ignores_a_posted_refused_option(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    server = make_server(local_host)
    change = f"/admin/containers/vpnserver/{server.pk}/change/"
    assert owner_client.get(change).status_code == 200
    response = owner_client.post(
        change, {"name": server.name, "options": '{"privileged": true}', "image": "busybox", "port": 1}
    )
    assert response.status_code == 403
    server.refresh_from_db()
    assert (server.options, server.image) == ({}, TEST_IMAGE)
    assert owner_client.get("/admin/containers/vpnserver/add/").status_code == 403


@pytest.mark.docker
def test_deleting_a_server_in_the_admin_removes_its_container_first_and_audits_it(
    owner_client: Client, local_host: DockerHost, make_server: Callable[..., VpnServer]
) -> None:
    server = make_server(local_host)
    servers_create_batch(servers=[server])
    server.refresh_from_db()
    assert server.container_id
    response = owner_client.post(f"/admin/containers/vpnserver/{server.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not VpnServer.objects.filter(pk=server.pk).exists()
    engine = docker_client_for(settings.DOCKER_HOST)
    try:
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(server.container_id)
    finally:
        engine.close()
    assert AuditEntry.objects.filter(action="servers_delete", object_ids=[server.pk]).count() == 1


def test_deleting_a_server_whose_engine_does_not_answer_keeps_it_and_says_why(
    owner_client: Client, make_server: Callable[..., VpnServer], tmp_path: Path, settings: Any
) -> None:
    gone = f"unix://{tmp_path}/no-engine.sock"
    settings.DOCKER_LOCAL_SOCKETS = [*settings.DOCKER_LOCAL_SOCKETS, gone]
    host = DockerHost.objects.create(name="gone", base_url=gone, network_mode="none")
    server = make_server(host)
    response = owner_client.post(f"/admin/containers/vpnserver/{server.pk}/delete/", {"post": "yes"}, follow=True)
    assert VpnServer.objects.filter(pk=server.pk).exists()
    page = response.content.decode()
    assert f"Server {server.name} was kept: its container could not be removed" in page
    assert "deleted successfully" not in page


@pytest.mark.docker
def test_extra_fields_posted_to_the_server_page_are_ignored(owner_client: Client, local_host: DockerHost) -> None:
    response = owner_client.post(
        "/containers/new/",
        {
            "host": local_host.pk,
            "name": "vpn-extra",
            "protocol": "wireguard",
            "image": TEST_IMAGE,
            "port": 4433,
            # None of these is a field of the form: the page must not let them through.
            "options": '{"privileged": true}',
            "wg_private_key": "posted-private-key",
            "container_id": "abc",
            "desired_state": "running",
            "is_superuser": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    server = VpnServer.objects.get(name="vpn-extra")
    assert (server.options, server.wg_private_key, server.container_id) == ({}, "", "")
    assert server.desired_state == "stopped"


def test_extra_fields_posted_to_the_hosts_page_are_ignored(owner_client: Client) -> None:
    response = owner_client.post(
        "/containers/hosts/",
        {**_admin_host_form(), "engine_version": "forged", "enabled": "", "last_error": "x", "is_superuser": "on"},
    )
    assert response.status_code == 302
    host = DockerHost.objects.get(name="second")
    assert host.enabled is True and host.last_error == "" and host.engine_version != "forged"


# --- a host's own policy narrows the installation's -------------------------------------


def test_a_hosts_own_data_directories_narrow_the_installations(data_root: Path) -> None:
    host = DockerHost(name="narrow", base_url=settings.DOCKER_HOST, bind_roots=f"{data_root}/vpn-1")
    assert create_policy_errors({"binds": [f"{data_root}/vpn-1/conf:/etc/vpn"]}, host=host) == []
    other = create_policy_errors({"binds": [f"{data_root}/escape-free:/data"]}, host=host)
    assert other == [
        f"binds: bind {data_root}/escape-free is outside this host's directories for server data "
        f"({data_root}/vpn-1): refused."
    ]


def test_a_hosts_own_image_sources_narrow_the_installations(settings: Any) -> None:
    settings.CONTAINERS_IMAGE_PREFIXES = ["vpnadmin-test/"]
    host = DockerHost(name="narrow", base_url="unix:///var/run/docker.sock", image_prefixes="vpnadmin-test/wireguard")
    assert image_errors("vpnadmin-test/wireguard:latest", host=host) == []
    assert image_errors("vpnadmin-test/busybox:latest", host=host) == [
        "image vpnadmin-test/busybox:latest is not from this host's image sources (vpnadmin-test/wireguard): refused"
    ]


def test_the_hosts_page_refuses_a_host_policy_wider_than_the_installations(
    owner_client: Client, data_root: Path
) -> None:
    response = owner_client.post(
        "/containers/hosts/",
        _admin_host_form(
            bind_roots=f"{data_root}/vpn-1\n/\n{data_root}/../outside", image_prefixes="busybox\nvpnadmin/"
        ),
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "/ is not under the installation&#x27;s directories for server data" in page
    assert f"{data_root}/../outside is not under the installation" in page
    assert "busybox is not within the installation&#x27;s image sources" in page
    assert f"{data_root}/vpn-1 is not under" not in page and "vpnadmin/ is not within" not in page
    assert not DockerHost.objects.filter(name="second").exists()


@pytest.mark.docker
def test_a_data_directory_swapped_for_a_symlink_after_creation_is_refused_at_start(
    local_host: DockerHost, make_server: Callable[..., VpnServer], data_root: Path
) -> None:
    server = make_server(local_host, options={"binds": [f"{data_root}/vpn-1:/data"]})
    created = servers_create_batch(servers=[server]).results[0]
    assert created.outcome == "done", created.message
    # Whoever can write under the data root replaces the directory with a way out.
    (data_root / "vpn-1").rmdir()
    (data_root / "vpn-1").symlink_to("/etc")
    started = servers_start_batch(servers=VpnServer.objects.filter(pk=server.pk)).results[0]
    assert started.outcome == "failed"
    assert "refused by the creation policy at start" in started.message
    assert f"bind {data_root}/vpn-1 (resolves to /etc) is outside" in started.message
    engine = docker_client_for(settings.DOCKER_HOST)
    try:
        server.refresh_from_db()
        assert engine.containers.get(server.container_id).status == "created"
    finally:
        engine.close()
