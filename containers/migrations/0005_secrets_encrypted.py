"""Server secrets encrypted at rest (environment, WireGuard private key); host networking opt-in.

Existing rows are encrypted in batches with the keys configured now; tokens are left
as they are (re-runnable). Reversing decrypts back to plaintext columns.
"""

from django.db import migrations, models

import vpnadmin.crypto


def _columns():
    return [c for c in vpnadmin.crypto.ENCRYPTED_COLUMNS if c.table == "containers_vpnserver"]


def encrypt_existing(apps, schema_editor):
    only = f"left(%s::text, 6) <> '{vpnadmin.crypto.TOKEN_PREFIX}'"
    for target in _columns():
        column = schema_editor.connection.ops.quote_name(target.column)
        vpnadmin.crypto.rewrite_column(
            schema_editor.connection, target, vpnadmin.crypto.encrypt_plaintext, only=only % column
        )


def decrypt_existing(apps, schema_editor):
    for target in _columns():
        vpnadmin.crypto.rewrite_column(schema_editor.connection, target, vpnadmin.crypto.decrypt_token)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("containers", "0004_server_data_plane"),
    ]

    operations = [
        migrations.AddField(
            model_name="dockerhost",
            name="allow_host_network",
            field=models.BooleanField(
                default=False,
                help_text="Lets this host's containers share the host's network stack (test hosts, no bridge).",
                verbose_name="allow host networking",
            ),
        ),
        migrations.AlterField(
            model_name="vpnserver",
            name="environment",
            field=vpnadmin.crypto.EncryptedJSONField(blank=True, default=dict),
        ),
        migrations.AlterField(
            model_name="vpnserver",
            name="wg_private_key",
            field=vpnadmin.crypto.EncryptedTextField(blank=True, editable=False, verbose_name="WireGuard private key"),
        ),
        migrations.RunPython(encrypt_existing, decrypt_existing, elidable=False),
    ]
