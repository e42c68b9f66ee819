"""Secrets at rest: tokens in every column that holds one, blind indexes, rotation, a wrong key, a dump."""

from __future__ import annotations

import importlib
import io
import subprocess
import uuid
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from django.test import Client, override_settings

from containers.models import DockerHost, VpnServer
from containers.services import servers_create
from users import services
from users.credentials import uuid_index, uuid_index_candidates
from users.models import VpnUser
from vpnadmin.crypto import TOKEN_PREFIX, fingerprint
from vpnadmin.models import AuditEntry

pytestmark = pytest.mark.django_db

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@pytest.fixture
def key_a(settings: Any) -> str:
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_A]
    settings.VPNADMIN_ENCRYPTION_KEYS_SOURCE = "VPNADMIN_ENCRYPTION_KEYS"
    return KEY_A


def _three_users() -> dict[str, VpnUser]:
    result = services.users_create_batch(
        actor=None,
        rows=[
            {"username": "vl-one", "protocol": "vless"},
            {"username": "ss-one", "protocol": "shadowsocks"},
            {"username": "wg-one", "protocol": "wireguard"},
        ],
    )
    assert result.ok, result.errors
    return {user.protocol: user for user in VpnUser.objects.all()}


def _raw(pk: int) -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credential_uuid, credential_password, wg_private_key, wg_public_key, credential_uuid_index "
            "FROM users_vpnuser WHERE id = %s",
            [pk],
        )
        names = [column.name for column in cursor.description]
        return dict(zip(names, cursor.fetchone(), strict=True))


def test_the_batch_create_writes_only_tokens_for_each_protocols_secret(key_a: str) -> None:
    users = _three_users()
    vless, ss, wg = users["vless"], users["shadowsocks"], users["wireguard"]
    raw = _raw(vless.pk)
    assert raw["credential_uuid"].startswith(TOKEN_PREFIX) and str(vless.credential_uuid) not in raw["credential_uuid"]
    assert raw["credential_uuid_index"] == uuid_index(vless.credential_uuid)
    assert isinstance(vless.credential_uuid, uuid.UUID)
    raw = _raw(ss.pk)
    assert raw["credential_password"].startswith(TOKEN_PREFIX) and raw["credential_password"] != ss.credential_password
    assert raw["credential_uuid"] is None and raw["credential_uuid_index"] is None
    raw = _raw(wg.pk)
    assert raw["wg_private_key"].startswith(TOKEN_PREFIX) and raw["wg_private_key"] != wg.wg_private_key
    # The public key is public (every peer's config holds it): stored as is.
    assert raw["wg_public_key"] == wg.wg_public_key and len(wg.wg_private_key) == 44


def test_a_protocol_change_writes_new_credentials_as_tokens_through_the_temporary_table(key_a: str) -> None:
    users = _three_users()
    result = services.users_update_batch(actor=None, changes={users["shadowsocks"].pk: {"protocol": "vless"}})
    assert result.ok, result.errors
    user = VpnUser.objects.get(pk=users["shadowsocks"].pk)
    raw = _raw(user.pk)
    assert raw["credential_uuid"].startswith(TOKEN_PREFIX)
    assert raw["credential_uuid_index"] == uuid_index(user.credential_uuid)
    assert raw["credential_password"] == "" and user.credential_password == ""


def test_a_uuid_is_found_through_its_blind_index_and_cannot_repeat(key_a: str) -> None:
    vless = _three_users()["vless"]
    found = VpnUser.objects.filter(credential_uuid_index__in=uuid_index_candidates(vless.credential_uuid))
    assert list(found) == [vless]
    other = VpnUser.objects.exclude(pk=vless.pk).first()
    assert other is not None
    with pytest.raises(IntegrityError), transaction.atomic():
        VpnUser.objects.filter(pk=other.pk).update(credential_uuid_index=uuid_index(vless.credential_uuid))


def test_filtering_an_encrypted_field_by_its_value_is_refused_with_the_reason(key_a: str) -> None:
    with pytest.raises(FieldError, match="credential_password is encrypted: look it up through its blind-index"):
        list(VpnUser.objects.filter(credential_password="hunter2"))
    # Empty or not is a question the ciphertext can answer.
    assert VpnUser.objects.filter(credential_password="").count() == 0


def test_a_servers_environment_and_wireguard_key_are_tokens_in_the_table(key_a: str) -> None:
    host = DockerHost.objects.create(name="local", base_url="unix:///var/run/docker.sock", network_mode="none")
    server = servers_create(
        actor=None,
        host=host,
        name="wg-1",
        protocol="wireguard",
        image="vpnadmin-test/wireguard:latest",
        port=51820,
        environment={"API_TOKEN": "env-secret-3f9a"},
    )
    VpnServer.objects.filter(pk=server.pk).update(wg_private_key="server-private-key-7c1d")
    with connection.cursor() as cursor:
        cursor.execute("SELECT environment, wg_private_key FROM containers_vpnserver WHERE id = %s", [server.pk])
        environment, private = cursor.fetchone()
    assert environment.startswith(TOKEN_PREFIX) and "env-secret" not in environment
    assert private.startswith(TOKEN_PREFIX)
    server.refresh_from_db()
    assert server.environment == {"API_TOKEN": "env-secret-3f9a"}
    assert server.wg_private_key == "server-private-key-7c1d"


def test_rotatekeys_re_encrypts_every_row_under_the_new_key_with_progress(key_a: str, settings: Any) -> None:
    users = _three_users()
    before = {pk: _raw(pk) for pk in (u.pk for u in users.values())}
    plain = {u.pk: (u.credential_uuid, u.credential_password, u.wg_private_key) for u in users.values()}
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    out = io.StringIO()
    call_command("rotatekeys", "--batch-size", "1", stdout=out)
    text = out.getvalue()
    assert f"Re-encrypting under key {fingerprint(KEY_B)}" in text
    assert "users_vpnuser.credential_uuid: 1 of 1 rows" in text
    assert "users_vpnuser.wg_private_key: 1 of 1 rows" in text
    assert "Rewrote 3 secrets" in text
    # The old key can go now: everything opens with the new one alone.
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_B]
    for pk, (uid, password, private) in plain.items():
        user = VpnUser.objects.get(pk=pk)
        assert (user.credential_uuid, user.credential_password, user.wg_private_key) == (uid, password, private)
        after = _raw(pk)
        for column in ("credential_uuid", "credential_password", "wg_private_key"):
            assert (after[column] or "") == "" or after[column] != before[pk][column]
    assert _raw(users["vless"].pk)["credential_uuid_index"] == uuid_index(users["vless"].credential_uuid)
    assert AuditEntry.objects.filter(action="secrets_rotate", count=3).exists()


def test_a_wrong_key_after_rotation_is_a_clear_503_naming_the_key_set_not_a_500(
    key_a: str, settings: Any, owner_client: Client
) -> None:
    user = _three_users()["shadowsocks"]
    # The operator dropped the old key before running rotatekeys.
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_B]
    response = owner_client.post(f"/users/{user.pk}/credentials/")
    assert response.status_code == 503
    page = response.content.decode()
    assert f"the key set [{fingerprint(KEY_B)}] from VPNADMIN_ENCRYPTION_KEYS" in page
    assert "rotatekeys" in page and KEY_B not in page and "Traceback" not in page
    with pytest.raises(CommandError, match=rf"key set \[{fingerprint(KEY_B)}\]"):
        call_command("rotatekeys", stdout=io.StringIO())


def test_the_data_migration_encrypts_plaintext_rows_once(key_a: str) -> None:
    plain_uuid = str(uuid.uuid4())
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users_vpnuser (username, email, protocol, credential_uuid, credential_password, "
            "wg_private_key, wg_public_key, is_active, used_traffic, reset_strategy, note, created_at, updated_at) "
            "VALUES ('old-vl', '', 'vless', %s, '', '', '', true, 0, 'none', '', now(), now()), "
            "('old-ss', '', 'shadowsocks', NULL, 'plain-password-1', '', '', true, 0, 'none', '', now(), now()) "
            "RETURNING id",
            [plain_uuid],
        )
        vl, ss = (row[0] for row in cursor.fetchall())
    migration = importlib.import_module("users.migrations.0004_credentials_encrypted")
    with connection.schema_editor() as editor:
        migration.encrypt_existing(None, editor)
    first = _raw(vl), _raw(ss)
    assert first[0]["credential_uuid"].startswith(TOKEN_PREFIX) and first[1]["credential_password"].startswith(
        TOKEN_PREFIX
    )
    assert first[0]["credential_uuid_index"] == uuid_index(plain_uuid)
    assert str(VpnUser.objects.get(pk=vl).credential_uuid) == plain_uuid
    assert VpnUser.objects.get(pk=ss).credential_password == "plain-password-1"
    with connection.schema_editor() as editor:
        migration.encrypt_existing(None, editor)  # re-run after an interruption: tokens stay as they are
    assert (_raw(vl), _raw(ss)) == first


@pytest.mark.django_db(transaction=True)
def test_a_pg_dump_of_the_database_holds_no_plaintext_secret(key_a: str) -> None:
    users = _three_users()
    host = DockerHost.objects.create(name="local", base_url="unix:///var/run/docker.sock", network_mode="none")
    server = servers_create(
        actor=None,
        host=host,
        name="wg-dump",
        protocol="wireguard",
        image="vpnadmin-test/wireguard:latest",
        port=51821,
        environment={"API_TOKEN": "dump-env-secret-51c2"},
    )
    VpnServer.objects.filter(pk=server.pk).update(wg_private_key="dump-server-private-9e0a")
    secrets = [
        str(users["vless"].credential_uuid),
        users["vless"].credential_uuid.hex,
        users["shadowsocks"].credential_password,
        users["wireguard"].wg_private_key,
        "dump-env-secret-51c2",
        "dump-server-private-9e0a",
    ]
    settings_dict = connection.settings_dict
    dump = subprocess.run(
        [
            "pg_dump",
            "--host",
            settings_dict["HOST"] or "127.0.0.1",
            "--port",
            str(settings_dict["PORT"] or 5432),
            "--username",
            settings_dict["USER"] or "postgres",
            "--no-password",
            settings_dict["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    assert users["wireguard"].wg_public_key in dump  # the dump holds the rows
    assert "vl-one" in dump
    leaked = [secret for secret in secrets if secret in dump]
    assert leaked == []


def test_an_anonymous_caller_hitting_an_unreadable_secret_learns_nothing_about_the_keys(key_a: str) -> None:
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from vpnadmin.crypto import DecryptionError, DecryptionErrorMiddleware, decrypt, encrypt

    token = encrypt("subscription secret")
    request = RequestFactory().get("/sub/some-token/")
    request.user = AnonymousUser()
    with override_settings(VPNADMIN_ENCRYPTION_KEYS=[KEY_B]):
        with pytest.raises(DecryptionError) as error:
            decrypt(token)
        response = DecryptionErrorMiddleware(lambda r: HttpResponse())(request)
        answer = DecryptionErrorMiddleware(lambda r: HttpResponse()).process_exception(request, error.value)
    assert response.status_code == 200
    assert answer is not None and answer.status_code == 503
    page = answer.content.decode()
    assert "cannot be read right now" in page
    assert fingerprint(KEY_B) not in page and "VPNADMIN_ENCRYPTION_KEYS" not in page


def test_rotation_leaves_a_row_that_a_request_rewrote_meanwhile_as_the_request_wrote_it(
    key_a: str, settings: Any
) -> None:
    from vpnadmin.crypto import ENCRYPTED_COLUMNS, reencrypt, rewrite_column

    user = _three_users()["shadowsocks"]
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    def rotate_while_a_request_writes(old: str) -> str:
        # A page saves this row between the batch's read and its write.
        VpnUser.objects.filter(pk=user.pk).update(credential_password="set-by-a-request")
        return reencrypt(old)

    target = next(c for c in ENCRYPTED_COLUMNS if c.column == "credential_password")
    assert rewrite_column(connection, target, rotate_while_a_request_writes) == 0
    # The request wrote under the newest key: the row needs no rotation and opens without the old key.
    settings.VPNADMIN_ENCRYPTION_KEYS = [KEY_B]
    assert VpnUser.objects.get(pk=user.pk).credential_password == "set-by-a-request"


def test_the_servers_data_migration_encrypts_a_plaintext_environment_and_key_once(key_a: str) -> None:
    host = DockerHost.objects.create(name="local", base_url="unix:///var/run/docker.sock", network_mode="none")
    server = servers_create(
        actor=None, host=host, name="old-wg", protocol="wireguard", image="vpnadmin-test/wireguard", port=51822
    )
    with connection.cursor() as cursor:  # as a row stood before encryption
        cursor.execute(
            "UPDATE containers_vpnserver SET environment = %s, wg_private_key = %s WHERE id = %s",
            ['{"API_TOKEN": "old-env-secret"}', "old-server-private", server.pk],
        )
    migration = importlib.import_module("containers.migrations.0005_secrets_encrypted")
    for _ in range(2):  # a second run (after an interruption) changes nothing more
        with connection.schema_editor() as editor:
            migration.encrypt_existing(None, editor)
        with connection.cursor() as cursor:
            cursor.execute("SELECT environment, wg_private_key FROM containers_vpnserver WHERE id = %s", [server.pk])
            environment, private = cursor.fetchone()
        assert environment.startswith(TOKEN_PREFIX) and private.startswith(TOKEN_PREFIX)
    server.refresh_from_db()
    assert (server.environment, server.wg_private_key) == ({"API_TOKEN": "old-env-secret"}, "old-server-private")
