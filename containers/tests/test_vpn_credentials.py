"""A server's users read for an apply: credentials opened in one pass, only the ones its kind
carries, and through the worker's bounded cache (which forgets everything when the key set
changes)."""

# The data-plane fixtures live in vpn_fixtures (imported below): test arguments shadow them by design.
# ruff: noqa: F811

from __future__ import annotations

import base64
from typing import Any

import pytest
from cryptography.fernet import Fernet

from containers.kinds import kind_for
from containers.models import DockerHost, VpnServer
from containers.services import servers_create
from containers.sync import CREDENTIALS, desired_users
from containers.tests.vpn_fixtures import IMAGES, vpn_host  # noqa: F401 - fixture
from users.models import VpnUser
from users.services import users_create_batch
from vpnadmin.crypto import DecryptionError, PlaintextCache, decrypt, decrypt_many, encrypt

pytestmark = pytest.mark.django_db

KEY_OLD = Fernet.generate_key().decode()
KEY_NEW = Fernet.generate_key().decode()


@pytest.fixture
def old_key(settings: Any) -> None:
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_OLD]


def _server(host: DockerHost, protocol: str, port: int) -> VpnServer:
    kind = kind_for(protocol)
    options = {"cap_add": list(kind.cap_add), "devices": [f"{d}:{d}" for d in kind.devices]}
    return servers_create(  # a database row only: reading its users needs no container
        actor=None,
        host=host,
        name=f"cred-{protocol[:2]}-{port}",
        protocol=protocol,
        image=IMAGES[protocol],
        port=port,
        options={key: value for key, value in options.items() if value},
    )


def _users(server: VpnServer, count: int) -> list[VpnUser]:
    rows = [
        {"username": f"{server.protocol[:2]}{i}", "protocol": server.protocol, "server_id": server.pk}
        for i in range(count)
    ]
    result = users_create_batch(actor=None, rows=rows)
    assert result.ok, result.errors
    return list(VpnUser.objects.filter(server=server).order_by("pk"))


def test_many_tokens_open_exactly_as_one_at_a_time_does(old_key: None, settings: Any) -> None:
    values = ["", "x", "é" * 40, "a" * 15, "b" * 16, "c" * 17, "0f8c1b8e-2b7c-4bde-9d0e-3a3a4a8d6b11"]
    tokens = [encrypt(value) if value else "" for value in values]
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_NEW, KEY_OLD]  # mid-rotation: both keys open
    tokens.append(encrypt("under the new key"))

    assert decrypt_many(tokens) == [decrypt(token) if token else "" for token in tokens]
    assert decrypt_many(tokens)[-1] == "under the new key"


def test_a_tampered_token_is_refused_like_a_single_decrypt_refuses_it(old_key: None) -> None:
    data = bytearray(base64.urlsafe_b64decode(encrypt("secret")))
    data[30] ^= 1  # one bit of the ciphertext
    tampered = base64.urlsafe_b64encode(bytes(data)).decode()

    with pytest.raises(DecryptionError):
        decrypt_many([encrypt("fine"), tampered])


def test_the_cache_opens_a_token_once_and_forgets_everything_when_a_key_is_dropped(
    old_key: None, settings: Any
) -> None:
    cache = PlaintextCache(10)
    tokens = [encrypt(f"value {i}") for i in range(3)]

    assert decrypt_many(tokens, cache=cache) == ["value 0", "value 1", "value 2"]
    assert decrypt_many(tokens, cache=cache) == ["value 0", "value 1", "value 2"]
    assert (cache.misses, cache.hits) == (3, 3)

    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_NEW]  # the old key dropped: its tokens must not open
    with pytest.raises(DecryptionError):
        decrypt_many(tokens[:1], cache=cache)
    assert len(cache) == 0


def test_the_cache_keeps_no_more_than_its_bound(old_key: None) -> None:
    cache = PlaintextCache(2)
    decrypt_many([encrypt(f"value {i}") for i in range(5)], cache=cache)

    assert len(cache) == 2


def test_a_vless_server_reads_its_users_uuids_and_a_steady_reapply_opens_only_the_changed_one(
    vpn_host: DockerHost,
) -> None:
    server = _server(vpn_host, "vless", 45_010)
    users = _users(server, 5)
    CREDENTIALS.clear()

    entries = desired_users(server)
    assert [(e.pk, e.uuid, e.password) for e in entries] == [(u.pk, str(u.credential_uuid), "") for u in users]

    VpnUser.objects.filter(pk=users[0].pk).update(credential_uuid=users[0].credential_uuid)  # a new token
    misses = CREDENTIALS.misses
    assert [e.uuid for e in desired_users(server)] == [str(u.credential_uuid) for u in users]
    assert CREDENTIALS.misses - misses == 1


def test_a_shadowsocks_server_reads_passwords_and_a_wireguard_server_opens_nothing(vpn_host: DockerHost) -> None:
    shadowsocks = _server(vpn_host, "shadowsocks", 45_020)
    wireguard = _server(vpn_host, "wireguard", 45_030)
    ss_users = _users(shadowsocks, 3)
    _users(wireguard, 3)
    CREDENTIALS.clear()

    assert [(e.password, e.uuid) for e in desired_users(shadowsocks)] == [(u.credential_password, "") for u in ss_users]
    misses = CREDENTIALS.misses
    assert all(e.uuid == e.password == "" for e in desired_users(wireguard))
    assert CREDENTIALS.misses == misses
