"""Credentials encrypted at rest: token columns, the UUID's blind index, existing rows encrypted.

The data step runs in batches (one transaction each) with the keys configured now
(VPNADMIN_ENCRYPTION_KEYS, or var/encryption_keys); rows already holding a token are
left as they are, so the migration can be re-run after an interruption. Reversing it
decrypts back to plaintext columns.
"""

from django.db import migrations, models

import vpnadmin.crypto


def _columns():
    return [c for c in vpnadmin.crypto.ENCRYPTED_COLUMNS if c.table == "users_vpnuser"]


def encrypt_existing(apps, schema_editor):
    only = f"left(%s::text, 6) <> '{vpnadmin.crypto.TOKEN_PREFIX}'"
    for target in _columns():
        column = schema_editor.connection.ops.quote_name(target.column)
        vpnadmin.crypto.rewrite_column(
            schema_editor.connection, target, vpnadmin.crypto.encrypt_plaintext, only=only % column
        )


def decrypt_existing(apps, schema_editor):
    for target in _columns():
        vpnadmin.crypto.rewrite_column(
            schema_editor.connection,
            vpnadmin.crypto.EncryptedColumn(target.table, target.column),
            vpnadmin.crypto.decrypt_token,
        )


class Migration(migrations.Migration):
    # Batches commit one by one: an interrupted run keeps what it encrypted.
    atomic = False

    dependencies = [
        ("users", "0003_user_data_plane"),
    ]

    operations = [
        migrations.AlterField(
            model_name="vpnuser",
            name="credential_uuid",
            field=vpnadmin.crypto.EncryptedUUIDField(blank=True, editable=False, null=True),
        ),
        migrations.AlterField(
            model_name="vpnuser",
            name="credential_password",
            field=vpnadmin.crypto.EncryptedTextField(blank=True, editable=False),
        ),
        migrations.AlterField(
            model_name="vpnuser",
            name="wg_private_key",
            field=vpnadmin.crypto.EncryptedTextField(blank=True, editable=False),
        ),
        migrations.AddField(
            model_name="vpnuser",
            name="credential_uuid_index",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing, elidable=False),
        migrations.AlterField(
            model_name="vpnuser",
            name="credential_uuid_index",
            field=models.CharField(blank=True, editable=False, max_length=64, null=True, unique=True),
        ),
        migrations.AddConstraint(
            model_name="vpnuser",
            constraint=models.UniqueConstraint(
                condition=models.Q(("wg_public_key", ""), _negated=True),
                fields=("wg_public_key",),
                name="vpnuser_wg_public_key_unique",
            ),
        ),
    ]
